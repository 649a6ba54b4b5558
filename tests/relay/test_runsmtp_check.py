"""`manage.py runsmtp --check` for process supervisors, against a real runsmtp: 0 while every
listener greets with 220 and the database answers; 1 with the reason when a listener is gone,
the process is draining (421) or the database is unreachable."""
import signal
import subprocess
import sys

import pytest

from credentials import services

from .conftest import ACCEPT_ROLES, SERVER_ENV
from .smtp_helpers import ROOT, Server
from .test_graceful_stop import _authed, _wait_log

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server(tls_files, tmp_path):
    server = Server(cert=tls_files[0], key=tls_files[1], workdir=tmp_path, roles=ACCEPT_ROLES,
                    # An idle session must outlive the check's start-up (seconds under load):
                    # the one kept open below is what keeps the draining process alive.
                    env_extra={**SERVER_ENV, "SMTP_STOP_GRACE": "20",
                               "SMTP_IDLE_TIMEOUT": "60"}).start()
    yield server
    server.stop(signal.SIGKILL)


def check(server: Server, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "runsmtp", "--check", "--roles",
         ACCEPT_ROLES], cwd=ROOT, env={**server.env(), **env}, capture_output=True, text=True,
        timeout=60)


def test_check_passes_while_every_listener_greets(server):
    done = check(server)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ok database: ") and lines[0].endswith("migrations applied")
    assert lines[1].startswith("ok certificate: ")
    for port, role in ((server.tls_port, "tls"), (server.starttls_port, "starttls"),
                       (server.mx_port, "mx")):
        assert f"ok smtp 127.0.0.1:{port} ({role}): 220 relay.test" in done.stdout


def test_check_fails_when_the_process_is_gone_or_draining(server, alice):
    login, password = services.create_login(alice)
    client = _authed(server, login, password)  # keeps the draining process alive
    server.proc.send_signal(signal.SIGTERM)
    _wait_log(server, "runsmtp stopping")
    draining = check(server)
    assert draining.returncode == 1
    assert f"FAIL smtp 127.0.0.1:{server.starttls_port} (starttls): 421 4.3.2" in draining.stdout
    assert "3 check(s) failed" in draining.stderr and "Traceback" not in draining.stderr
    client.close()
    assert server.proc.wait(10) == 0
    gone = check(server)
    assert gone.returncode == 1
    assert f"FAIL smtp 127.0.0.1:{server.mx_port} (mx): no answer" in gone.stdout


def test_check_fails_when_the_database_is_unreachable(server):
    done = check(server, DATABASE_URL="postgres://postgres@127.0.0.1:1/nowhere")
    assert done.returncode == 1
    assert "FAIL database: OperationalError" in done.stdout
    assert "Traceback" not in done.stderr
