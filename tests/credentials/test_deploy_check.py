"""`manage.py check --deploy` is clean with production settings, run as an operator would."""
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_check(tmp_path, **overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DEBUG"))}
    env.update({
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "mail.example.com",
        "SITE_URL": "https://mail.example.com",
        "BOUNCE_DOMAIN": "bounces.example.com",
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


def test_check_deploy_warns_about_development_addresses(tmp_path):
    # The defaults: a development install's addresses, fine with DEBUG, wrong in production.
    result = run_check(tmp_path, SITE_URL="http://127.0.0.1:8000",
                       BOUNCE_DOMAIN="bounces.localhost")
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "smtpeter.W001" in out and "SITE_URL is 'http://127.0.0.1:8000'" in out
    assert "smtpeter.W002" in out  # TRACKING_BASE_URL follows SITE_URL
    assert "smtpeter.W003" in out and "bounces.localhost" in out


@pytest.mark.parametrize("tracking", ["http://localhost/t/", "https://[::1]:8443/t/",
                                      "http://app.localhost/t/", "http://0.0.0.0/t/"])
def test_check_deploy_warns_about_a_local_tracking_base_url(tmp_path, tracking):
    result = run_check(tmp_path, TRACKING_BASE_URL=tracking)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "smtpeter.W002" in out
    assert "smtpeter.W001" not in out and "smtpeter.W003" not in out


def test_development_addresses_are_fine_with_debug(tmp_path):
    result = run_check(tmp_path, DEBUG="true", SITE_URL="http://127.0.0.1:8000",
                       BOUNCE_DOMAIN="bounces.localhost")
    assert "smtpeter.W00" not in result.stdout + result.stderr
