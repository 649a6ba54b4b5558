"""`make run` (scripts/rundev.py): the web app and runsmtp see the same listener settings."""
import importlib.util
import json
import os
import subprocess
import sys

from .smtp_helpers import ROOT


def _rundev():
    spec = importlib.util.spec_from_file_location("rundev", ROOT / "scripts" / "rundev.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_both_processes_get_the_development_listeners_in_their_environment():
    env = _rundev().dev_env({"PATH": "/bin", "SMTP_TLS_PORTS": "465"})
    assert env["PATH"] == "/bin"
    assert (env["SMTP_BIND"], env["SMTP_HOSTNAME"]) == ("127.0.0.1", "127.0.0.1")
    assert (env["SMTP_TLS_PORTS"], env["SMTP_STARTTLS_PORTS"], env["SMTP_MX_PORTS"]) == (
        "2465", "2587", "2025")
    # Nothing leaves a development machine: sent mail goes to the Outbox.
    assert env["DELIVERY_MODE"] == "capture"
    assert _rundev().dev_env({"DELIVERY_MODE": "mx"})["DELIVERY_MODE"] == "mx"


def test_connect_page_snippets_under_the_rundev_environment_name_its_ports():
    env = _rundev().dev_env({k: v for k, v in os.environ.items() if not k.startswith("SMTP_")})
    code = (
        "import json; from django.conf import settings; from credentials.snippets import "
        "snippets, ports; print(json.dumps({'ports': ports(), 'bind': settings.SMTP_BIND, "
        "'mx': settings.SMTP_MX_PORTS, 'snippets': {s.slug: s.code for s in snippets('u')}}))"
    )
    out = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", code],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    seen = json.loads(out.strip().splitlines()[-1])  # shell may print a banner first
    assert seen["ports"] == {"tls": [2465], "starttls": [2587]}
    assert (seen["bind"], seen["mx"]) == ("127.0.0.1", [2025])
    swaks = seen["snippets"]["swaks"]
    assert "--server 127.0.0.1 --port 2587 --tls" in swaks
    assert "--server 127.0.0.1 --port 2465 --tls-on-connect" in swaks
    assert '"127.0.0.1", 2465' in seen["snippets"]["smtplib"]
    assert "localhost" not in json.dumps(seen["snippets"])
