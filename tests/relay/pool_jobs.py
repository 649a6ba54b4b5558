"""Jobs for the render pool tests: they run in the pool's processes, so they live in a module
the processes can import."""
import os
import signal
import time


def echo(value):
    return value, os.getpid()


def segfault(value):
    os.kill(os.getpid(), signal.SIGSEGV)  # what css-inline's stack overflow does
    return value


def hang(seconds):
    time.sleep(seconds)
    return seconds


def raises(value):
    raise ValueError(f"bad {value}")
