"""The hostile shapes against a real `manage.py render` process: a crash is no exception.

Each run is a child process under resource limits (address space, CPU); it must exit 0, print
the message and a warning that names the limit, within the time bound.
"""
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .corpus import HOSTILE

ROOT = Path(__file__).resolve().parents[2]
MEMORY = 3 * 1024**3  # address space: the interpreter, Django and the inliner's thread stacks
SECONDS = 60


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    data = tmp_path_factory.mktemp("render-site")
    env = {**os.environ, "DATA_DIR": str(data), "DATABASE_URL": f"sqlite:///{data / 'db.sqlite3'}",
           "SECRET_KEY": "hostile-test-key", "DJANGO_SETTINGS_MODULE": "smtpeter_site.settings"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    code = ("from django.contrib.auth.models import User\n"
            "from credentials.services import create_login\n"
            "u = User.objects.create_user('owner')\n"
            "login, _ = create_login(u, features=['clicktracking', 'openstracking',"
            " 'inlinecss'])\n"
            "print(login.username)\n")
    out = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env,
                         check=True, capture_output=True, text=True).stdout
    return env, out.split()[-1]


def _limits():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))
    resource.setrlimit(resource.RLIMIT_CPU, (SECONDS, SECONDS))


@pytest.mark.parametrize("shape", sorted(HOSTILE))
def test_render_survives_every_hostile_shape_within_bounds(site, shape):
    env, login = site
    raw = HOSTILE[shape]()
    started = time.monotonic()
    done = subprocess.run([sys.executable, "manage.py", "render", "--login", login], cwd=ROOT,
                          env=env, input=raw, capture_output=True, timeout=SECONDS * 2,
                          preexec_fn=_limits)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert elapsed < SECONDS
    assert b"/t/c/" in done.stdout  # the link is still tracked
    if shape != "deep-nesting-stray-ends":  # fools the quick count: inlined on the big stack
        assert b"CSS not inlined, over a limit" in done.stderr, done.stderr[-2000:]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert usage.ru_maxrss < 1024 * 1024  # KiB: no child ever held a gigabyte
