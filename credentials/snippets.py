"""What a customer needs to send through smtpeter: ports and ready-to-paste client settings.

Snippets carry the login's username and a placeholder for the password: the password is
shown only once, at creation or reset, and never again.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

PASSWORD_PLACEHOLDER = "YOUR-LOGIN-PASSWORD"
USERNAME_PLACEHOLDER = "YOUR-LOGIN-USERNAME"


@dataclass(frozen=True)
class Snippet:
    slug: str
    title: str
    intro: str
    code: str


def ports() -> dict[str, list[int]]:
    return {"tls": list(settings.SMTP_TLS_PORTS), "starttls": list(settings.SMTP_STARTTLS_PORTS)}


def submission_port(prefer_implicit_tls: bool) -> tuple[int, bool] | None:
    """(port, implicit TLS) for a snippet: the first port of the preferred kind, else the first
    of the other kind; None when the relay listens on no submission port at all."""
    tls = [(p, True) for p in settings.SMTP_TLS_PORTS]
    starttls = [(p, False) for p in settings.SMTP_STARTTLS_PORTS]
    choices = tls + starttls if prefer_implicit_tls else starttls + tls
    return choices[0] if choices else None


def _swaks(host: str, user: str) -> str:
    lines = []
    if settings.SMTP_STARTTLS_PORTS:
        lines += [
            f"# STARTTLS on port {settings.SMTP_STARTTLS_PORTS[0]}",
            f"swaks --server {host} --port {settings.SMTP_STARTTLS_PORTS[0]} --tls \\",
            f"  --auth LOGIN --auth-user {user} --auth-password '{PASSWORD_PLACEHOLDER}' \\",
            "  --from you@example.com --to someone@example.org",
        ]
    if settings.SMTP_TLS_PORTS:
        if lines:
            lines.append("")
        lines += [
            f"# TLS from the first byte on port {settings.SMTP_TLS_PORTS[0]}",
            f"swaks --server {host} --port {settings.SMTP_TLS_PORTS[0]} --tls-on-connect \\",
            f"  --auth PLAIN --auth-user {user} --auth-password '{PASSWORD_PLACEHOLDER}' \\",
            "  --from you@example.com --to someone@example.org",
        ]
    return "\n".join(lines)


def _smtplib(host: str, user: str, port: int, implicit_tls: bool) -> str:
    if implicit_tls:
        connect = f'with smtplib.SMTP_SSL("{host}", {port}) as smtp:'
        starttls = []
    else:
        connect = f'with smtplib.SMTP("{host}", {port}) as smtp:'
        starttls = ["    smtp.starttls()"]
    return "\n".join([
        "import smtplib",
        "from email.message import EmailMessage",
        "",
        "msg = EmailMessage()",
        'msg["From"] = "you@example.com"',
        'msg["To"] = "someone@example.org"',
        'msg["Subject"] = "Hello through smtpeter"',
        'msg.set_content("It works.")',
        "",
        connect,
        *starttls,
        f'    smtp.login("{user}", "{PASSWORD_PLACEHOLDER}")',
        "    smtp.send_message(msg)",
    ])


def _postfix(host: str, user: str, port: int, implicit_tls: bool) -> tuple[str, str]:
    relay = f"[{host}]:{port}"
    wrapper = ["smtp_tls_wrappermode = yes"] if implicit_tls else []
    main_cf = "\n".join([
        "# /etc/postfix/main.cf",
        f"relayhost = {relay}",
        "smtp_sasl_auth_enable = yes",
        "smtp_sasl_password_maps = hash:/etc/postfix/sasl_passwd",
        "smtp_sasl_security_options = noanonymous",
        "smtp_tls_security_level = encrypt",
        *wrapper,
    ])
    sasl = "\n".join([
        "# /etc/postfix/sasl_passwd, then:",
        "#   chmod 600 /etc/postfix/sasl_passwd && postmap /etc/postfix/sasl_passwd",
        "#   systemctl reload postfix",
        f"{relay} {user}:{PASSWORD_PLACEHOLDER}",
    ])
    return main_cf, sasl


def _thunderbird(host: str, user: str, port: int, implicit_tls: bool) -> str:
    security = "SSL/TLS" if implicit_tls else "STARTTLS"
    return "\n".join([
        "Settings → Account Settings → Outgoing Server (SMTP) → Add…",
        f"Server Name:              {host}",
        f"Port:                     {port}",
        f"Connection security:      {security}",
        "Authentication method:    Normal password",
        f"User Name:                {user}",
        f"Password (when asked):    {PASSWORD_PLACEHOLDER}",
    ])


def snippets(username: str | None) -> list[Snippet]:
    """Client settings for the given login username (or a placeholder), host from settings;
    none when the relay has no submission port (SMTP_TLS_PORTS and SMTP_STARTTLS_PORTS empty)."""
    implicit, starttls = submission_port(True), submission_port(False)
    if implicit is None or starttls is None:
        return []
    host = settings.SMTP_HOSTNAME
    user = username or USERNAME_PLACEHOLDER
    # Clients with both kinds take implicit TLS; Postfix's relayhost is simplest with STARTTLS.
    main_cf, sasl = _postfix(host, user, *starttls)
    return [
        Snippet("swaks", "swaks (command line test)",
                "Send a test message from a shell.", _swaks(host, user)),
        Snippet("smtplib", "Python smtplib",
                "From any Python program, standard library only.",
                _smtplib(host, user, *implicit)),
        Snippet("postfix-main", "Postfix relayhost: main.cf",
                "Let a Postfix server hand all its outgoing mail to smtpeter.", main_cf),
        Snippet("postfix-sasl", "Postfix relayhost: sasl_passwd",
                "The credentials file main.cf points to.", sasl),
        Snippet("thunderbird", "Thunderbird",
                "An outgoing server for a mail client.", _thunderbird(host, user, *implicit)),
    ]
