"""The commands of docs/deployment.md, run: the unit files pass `systemd-analyze verify`, the
web unit's gunicorn command line answers /healthz (503 without its database) and honours the
proxy settings, `check --deploy` passes with deploy/smtpeter.env.example, `migrate` runs
while runsmtp takes mail, the backup command of the database in use makes a backup that
reads back, and on PostgreSQL the restore command (into a database of its own) and `migrate`
after it work, and the guide's `ALTER TABLE` for autovacuum applies."""
import json
import os
import re
import shlex
import signal
import smtplib
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

from relay.models import Message

from .conftest import ACCEPT_ROLES, SERVER_ENV
from .smtp_helpers import HOST, ROOT, Server, database_url, free_port, require_tool

pytestmark = pytest.mark.django_db(transaction=True)
DEPLOY = ROOT / "deploy"
UNITS = ["smtpeter-web.service", "smtpeter-smtp@.service", "smtpeter-prune.service",
         "smtpeter-prune.timer"]


def installed(text: str) -> str:
    """A unit as installed from this checkout: /opt/smtpeter is ROOT."""
    return text.replace("/opt/smtpeter", str(ROOT))


def example_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_ALLOW",))}
    for line in (DEPLOY / "smtpeter.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    env.update({"DATABASE_URL": database_url(), "DATA_DIR": os.environ.get("DATA_DIR", "/tmp"),
                "ALLOWED_HOSTS": "mail.example.com,127.0.0.1", "PYTHONUNBUFFERED": "1",
                **extra})
    return env


def test_the_unit_files_verify(tmp_path):
    analyze = require_tool("systemd-analyze")
    for name in UNITS:
        (tmp_path / name).write_text(installed((DEPLOY / name).read_text()))
    # A template is verified as an instance of it.
    (tmp_path / "smtpeter-smtp@1.service").write_text(
        (tmp_path / "smtpeter-smtp@.service").read_text())
    names = [n for n in UNITS if n != "smtpeter-smtp@.service"] + ["smtpeter-smtp@1.service"]
    done = subprocess.run([analyze, "verify", "--man=no", *[f"./{n}" for n in names]],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    # Unknown keys are only warnings: none may be printed.
    assert done.returncode == 0 and done.stderr == "", done.stderr


def _exec_start(unit: str) -> list[str]:
    [line] = [x for x in (DEPLOY / unit).read_text().splitlines() if x.startswith("ExecStart=")]
    return shlex.split(installed(line.removeprefix("ExecStart=")))


def _get(port: int, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(f"http://{HOST}:{port}{path}",
                                     headers={"Host": "mail.example.com", **(headers or {})})
    try:
        with opener.open(request, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _gunicorn(tmp_path: Path, name: str, **env) -> tuple[subprocess.Popen, int]:
    port = free_port()
    command = [re.sub(r"127\.0\.0\.1:8000", f"{HOST}:{port}", part)
               for part in _exec_start("smtpeter-web.service")]
    assert command[0] == str(ROOT / ".venv/bin/gunicorn") and "--workers" in command
    command[0] = str(Path(sys.executable).parent / "gunicorn")  # this venv's
    log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - the process keeps it
    proc = subprocess.Popen(command, cwd=ROOT, env=example_env(**env), stdout=log,
                            stderr=subprocess.STDOUT)
    return proc, port


def _wait_http(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "gunicorn exited"
        try:
            _get(port, "/healthz")
            return
        except OSError:
            assert time.monotonic() < deadline, "gunicorn not answering after 60 s"
            time.sleep(0.2)


def test_the_web_unit_answers_healthz_and_honours_the_proxy_settings(tmp_path):
    require_tool("systemd-analyze")  # the unit file is what is tested; see the first test
    up, up_port = _gunicorn(tmp_path, "up")
    down, down_port = _gunicorn(tmp_path, "down",
                                DATABASE_URL="postgres://postgres@127.0.0.1:1/nowhere")
    try:
        _wait_http(up, up_port)
        _wait_http(down, down_port)
        status, _, body = _get(up_port, "/healthz")  # plain http: exempt from the redirect
        assert (status, json.loads(body)) == (200, {"status": "ok", "database": "ok"})
        status, _, body = _get(down_port, "/healthz")
        assert status == 503 and json.loads(body)["status"] == "error"
        # Without the proxy's header the app sends http to https; with it, it serves.
        status, headers, _ = _get(up_port, "/signin/")
        assert status == 301 and headers["Location"] == "https://mail.example.com/signin/"
        status, _, body = _get(up_port, "/signin/", {"X-Forwarded-Proto": "https"})
        assert status == 200 and b"Sign in" in body
        # The queue gauges need the token of the environment file.
        assert _get(up_port, "/metrics", {"X-Forwarded-Proto": "https"})[0] == 401
        token = example_env()["METRICS_TOKEN"]
        status, _, body = _get(up_port, "/metrics", {"X-Forwarded-Proto": "https",
                                                      "Authorization": f"Bearer {token}"})
        assert status == 200 and b"smtpeter_queue_depth" in body
    finally:
        for proc in (up, down):
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(40) == 0


def test_check_deploy_passes_with_the_example_environment():
    done = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level",
                           "WARNING"], cwd=ROOT, env=example_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_migrate_runs_while_runsmtp_takes_mail(tls_files, tmp_path, login):
    server = Server(cert=tls_files[0], key=tls_files[1], workdir=tmp_path, roles=ACCEPT_ROLES,
                    env_extra=SERVER_ENV).start()
    try:
        done = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT,
                              env=server.env(), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        with smtplib.SMTP_SSL(HOST, server.tls_port, context=server.client_context()) as s:
            s.login(login[0].username, login[1])
            s.sendmail("app@example.com", ["bob@example.org"], b"Subject: up\r\n\r\nx\r\n")
    finally:
        server.stop()
    assert Message.objects.count() == 1


def test_the_backup_command_of_the_database_in_use_reads_back(tmp_path, login):
    backup = tmp_path / "smtpeter.backup"
    settings = connection.settings_dict
    if connection.vendor == "postgresql":
        dump = require_tool("pg_dump")
        env = {**os.environ, "PGHOST": settings["HOST"] or HOST,
               "PGPORT": str(settings["PORT"] or 5432), "PGUSER": settings["USER"]}
        subprocess.run([dump, "--format=custom", f"--file={backup}", settings["NAME"]],
                       env=env, check=True, timeout=120)
        listing = subprocess.run([require_tool("pg_restore"), "--list", str(backup)],
                                 capture_output=True, text=True, check=True).stdout
        assert "TABLE DATA public credentials_login" in listing
        restore_and_migrate(backup, env)
    else:
        sqlite = require_tool("sqlite3")
        subprocess.run([sqlite, settings["NAME"], f".backup '{backup}'"], check=True,
                       timeout=120)
        check = subprocess.run([sqlite, str(backup), "PRAGMA integrity_check;",
                                "SELECT count(*) FROM credentials_login;"],
                               capture_output=True, text=True, check=True).stdout.split()
        assert check == ["ok", "1"]


def restore_and_migrate(backup: Path, env: dict) -> None:
    """The guide's restore: `pg_restore --clean --if-exists --dbname=…`, then `migrate`
    (nothing to apply), into a scratch database next to the test database."""
    settings = connection.settings_dict
    target = f"{settings['NAME']}_restore"
    subprocess.run([require_tool("dropdb"), "--if-exists", target], env=env, check=True)
    subprocess.run([require_tool("createdb"), target], env=env, check=True, timeout=60)
    try:
        subprocess.run([require_tool("pg_restore"), "--clean", "--if-exists",
                        f"--dbname={target}", str(backup)], env=env, check=True,
                       capture_output=True, timeout=120)
        url = f"postgres://{env['PGUSER']}@{env['PGHOST']}:{env['PGPORT']}/{target}"
        done = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT,
                              env={**os.environ, "DATABASE_URL": url}, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "No migrations to apply" in done.stdout, done.stdout
        count = subprocess.run([require_tool("psql"), "-tAc",
                                "SELECT count(*) FROM credentials_login", target], env=env,
                               capture_output=True, text=True, check=True).stdout.strip()
        assert count == "1"
    finally:
        subprocess.run([require_tool("dropdb"), "--if-exists", target], env=env, timeout=60)


def test_the_guides_postgresql_table_setting_applies():
    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL setting")
    guide = (ROOT / "docs" / "deployment.md").read_text()
    [statement] = re.findall(r"`(ALTER TABLE relay_recipient SET \([^`]*\);)`", guide)
    with connection.cursor() as cursor:
        cursor.execute(statement)
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'relay_recipient'")
        assert cursor.fetchone()[0] == ["autovacuum_vacuum_scale_factor=0.02"]
