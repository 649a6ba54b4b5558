"""Settings at startup, run as an operator would: a fresh process with its own environment."""
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

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
