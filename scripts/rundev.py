"""`make run`: the web app and runsmtp side by side for development; Ctrl-C stops both.

Delivery runs in capture mode (DELIVERY_MODE=capture): sent mail is stored as it would have
been delivered, for the Outbox, and nothing leaves the machine.

The SMTP listeners use unprivileged ports on 127.0.0.1: 2465 (TLS), 2587 (STARTTLS), 2025 (mx).
Both processes get them in their environment (SMTP_BIND, SMTP_*_PORTS, SMTP_HOSTNAME), so the
web app's Connect page names the ports runsmtp really listens on.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB = "127.0.0.1:8000"
BIND, TLS_PORT, STARTTLS_PORT, MX_PORT = "127.0.0.1", 2465, 2587, 2025


def dev_env(base: dict[str, str]) -> dict[str, str]:
    """The environment of both child processes: ``base`` with the development listeners."""
    return dict(
        base,
        DEBUG=base.get("DEBUG", "true"),
        SMTP_BIND=BIND,
        SMTP_TLS_PORTS=str(TLS_PORT),
        SMTP_STARTTLS_PORTS=str(STARTTLS_PORT),
        SMTP_MX_PORTS=str(MX_PORT),
        SMTP_HOSTNAME=BIND,
        DELIVERY_MODE=base.get("DELIVERY_MODE", "capture"),
    )


def main() -> int:
    python = sys.executable
    manage = str(ROOT / "manage.py")
    env = dev_env(dict(os.environ))
    procs = [
        subprocess.Popen([python, manage, "runserver", WEB], cwd=ROOT, env=env),
        # runsmtp reads its listeners from the same settings as the web app.
        # DEBUG would make Django keep every SQL query of the queue writer in memory.
        subprocess.Popen([python, manage, "runsmtp"], cwd=ROOT, env=dict(env, DEBUG="false")),
    ]
    print(f"""
smtpeter is starting:
  web app      http://{WEB}/
  SMTP         {BIND}:{TLS_PORT} (TLS)   {BIND}:{STARTTLS_PORT} (STARTTLS)   {BIND}:{MX_PORT} (mx)
  certificate  self-signed (manage.py maketlscert); clients need -k / --tls-verify off

Sign in at http://{WEB}/ with the admin account, create a login under Logins (its password
is shown once; or: .venv/bin/python manage.py createlogin --owner admin --features
clicktracking,openstracking), then send a message with a link in it:
  swaks --server {BIND}:{STARTTLS_PORT} --tls --auth PLAIN --auth-user USERNAME \\
        --auth-password PASSWORD --from you@example.com --to someone@example.org \\
        --add-header "Content-Type: text/html" \\
        --body '<p><a href="https://example.com/">a link</a></p>'
  (or --server {BIND}:{TLS_PORT} --tlsc for TLS from the first byte)
Delivery captures mail instead of sending it (DELIVERY_MODE=capture): open
  http://{WEB}/outbox/ to see it as it would have been delivered, and click its tracked link.
Ctrl-C stops both.
""", flush=True)

    requested = []

    def stop(*_):
        requested.append(True)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # the children get the terminal's SIGINT themselves
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.2)
    finally:
        crashed = not requested
        stop()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
    if crashed:
        print("a process exited on its own; stopped the other one", file=sys.stderr)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
