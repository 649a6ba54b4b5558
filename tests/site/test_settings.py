"""Settings at startup, run as an operator would: a fresh process with its own environment."""
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_python(tmp_path, code: str, **env_overrides) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DJANGO_", "SECRET_KEY", "DATA_DIR"))}
    env.update({"DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "smtpeter_site.settings",
                **env_overrides})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


# An audit hook sees every auditable step of the process (opens, chmods, imports...); at each
# one after the key file exists, it notes the file's mode. A file created with the default
# umask and tightened afterwards shows 0644 at the chmod step.
WATCH_KEY_MODE = """
    import os, sys
    os.umask(0o022)
    path = os.path.join(os.environ["DATA_DIR"], "secret_key")
    seen, busy = set(), [False]

    def hook(event, args):
        if busy[0]:
            return
        busy[0] = True
        try:
            seen.add(oct(os.stat(path).st_mode & 0o777))
        except FileNotFoundError:
            pass
        finally:
            busy[0] = False

    sys.addaudithook(hook)
    from smtpeter_site import settings
    print(sorted(seen), len(settings.SECRET_KEY))
"""


def test_the_generated_key_file_is_never_readable_by_others(tmp_path):
    result = run_python(tmp_path, WATCH_KEY_MODE)
    assert result.returncode == 0, result.stderr
    modes, length = result.stdout.split("] ")
    assert modes + "]" == "['0o600']", result.stdout
    assert int(length) >= 50
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600


def test_an_existing_key_file_is_reused(tmp_path):
    (tmp_path / "secret_key").write_text("theirs-" + "k" * 50 + "\n")
    code = "from smtpeter_site import settings; print(settings.SECRET_KEY)"
    first = run_python(tmp_path, code)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "theirs-" + "k" * 50


def test_a_generated_key_is_kept_across_restarts(tmp_path):
    code = "from smtpeter_site import settings; print(settings.SECRET_KEY)"
    first, second = run_python(tmp_path, code), run_python(tmp_path, code)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout and len(first.stdout.strip()) >= 50
    assert (tmp_path / "secret_key").read_text().strip() == first.stdout.strip()


def test_an_empty_key_file_is_refused_by_name(tmp_path):
    # What a crash between creating the file and writing the key would leave.
    (tmp_path / "secret_key").write_text("")
    result = run_python(tmp_path, "from smtpeter_site import settings")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "secret_key" in result.stderr


def run_check(tmp_path, **env_overrides) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATA_DIR"))}
    env.update({"DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "smtpeter_site.settings",
                **env_overrides})
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name, value", [
    ("SMTP_TLS_PORTS", "abc"),
    ("SMTP_STARTTLS_PORTS", "587,70000"),
    ("SMTP_MX_PORTS", "25;26"),
    ("CSS_INLINER", "bogus"),
    ("SIGNIN_MAX_FAILURES", "five"),
    ("SIGNIN_MAX_FAILURES", "0"),
    ("SMTP_IDLE_TIMEOUT", "soon"),
    # 0 would close every session right after its greeting, or fail every TLS handshake
    # (asyncio: "ssl_handshake_timeout should be a positive number") with a traceback.
    ("SMTP_IDLE_TIMEOUT", "0"),
    ("SMTP_TLS_HANDSHAKE_TIMEOUT", "0"),
    ("SMTP_AUTH_CACHE_TTL", "nan"),
    ("CONN_MAX_AGE", "1.5"),
    ("DEBUG", "ture"),
    ("SECURE_SSL_REDIRECT", "yes please"),
    ("LOG_LEVEL", "LOUD"),
    ("SMTP_EVENT_LOOP", "trio"),
    ("TRACKING_BASE_URL", "https://tr\u00e4ck.example.com/t/"),
    ("TRACKING_BASE_URL", "/t/"),
    ("TRACKING_BASE_URL", "ftp://track.example.com/"),
    ("TRACKING_BASE_URL", "https://track.example.com/t?x=1"),
    ("SITE_URL", "mail.example.com"),
])
def test_a_bad_value_stops_startup_naming_the_variable(tmp_path, name, value):
    result = run_check(tmp_path, **{name: value})
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"smtpeter: configuration error: {name}={value!r} is not valid: expected"), out
    # One line, not a traceback (nor a bare ValueError from int() deep in settings.py).
    assert "Traceback" not in out and "ValueError" not in out, out


def test_good_values_are_read(tmp_path):
    code = """
        from django.conf import settings
        print(settings.SMTP_TLS_PORTS, settings.SMTP_STARTTLS_PORTS, settings.SMTP_MX_PORTS,
              settings.CSS_INLINER, settings.LOG_LEVEL, settings.DEBUG,
              settings.SMTP_IDLE_TIMEOUT, settings.SIGNIN_MAX_FAILURES,
              settings.TRACKING_BASE_URL, settings.SITE_URL, settings.SMTP_EVENT_LOOP)
    """
    result = run_python(tmp_path, code, SECRET_KEY="x" * 50, SMTP_TLS_PORTS="",
                        SMTP_STARTTLS_PORTS=" 587 , 2525", SMTP_MX_PORTS="25,",
                        CSS_INLINER="premailer", LOG_LEVEL="warning", DEBUG="On",
                        SMTP_IDLE_TIMEOUT="2.5", SIGNIN_MAX_FAILURES="7",
                        TRACKING_BASE_URL="https://xn--trck-loa.example.com/t",
                        SITE_URL="https://mail.example.com/", SMTP_EVENT_LOOP="asyncio")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "[587,", "2525]", "[25]", "premailer", "WARNING",
                                     "True", "2.5", "7", "https://xn--trck-loa.example.com/t/",
                                     "https://mail.example.com", "asyncio"]


def test_the_css_inliner_choices_are_the_ones_the_inliner_knows():
    from django.core.exceptions import ImproperlyConfigured

    from features.inline import INLINERS
    from smtpeter_site.envvars import env_choice

    class Env:
        def __init__(self, value):
            self.value = value

        def str(self, name, default=None):
            return self.value

    for name in INLINERS:
        assert env_choice(Env(name), "CSS_INLINER", "css-inline", list(INLINERS)) == name
    settings_text = (ROOT / "smtpeter_site" / "settings.py").read_text()
    assert f'"CSS_INLINER", "css-inline", {list(INLINERS)!r}'.replace("'", '"') in settings_text
    with pytest.raises(ImproperlyConfigured, match="CSS_INLINER='x' is not valid"):
        env_choice(Env("x"), "CSS_INLINER", "css-inline", list(INLINERS))
