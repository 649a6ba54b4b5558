"""The log format: one prefix (time, level, logger) on every line, so that a record of several
lines (delivery writes a batch of per-recipient outcome lines in one record, one write) reads
and greps exactly like one record per line."""
from __future__ import annotations

import logging


class EveryLineFormatter(logging.Formatter):
    """logging.Formatter that repeats the prefix on each line of the message (not of an
    exception's traceback, which stays one block under its first line)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        message = record.message
        if "\n" not in message:
            return super().formatMessage(record)
        lines = []
        for line in message.split("\n"):
            record.message = line
            lines.append(super().formatMessage(record))
        record.message = message
        return "\n".join(lines)
