"""`manage.py check --deploy` is clean with production settings, run as an operator would."""
import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_check(tmp_path, **overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DEBUG"))}
    env.update({
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "mail.example.com",
        "DATA_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "smtpeter_site.settings",
        **overrides,
    })
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    result = run_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_catches_debug_in_production(tmp_path):
    # The same check fails when it should, so the clean run above means something.
    result = run_check(tmp_path, DEBUG="true")
    assert result.returncode != 0
    assert "security.W018" in result.stdout + result.stderr
