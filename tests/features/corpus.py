"""Test messages and helpers to look inside rendered ones."""
from __future__ import annotations

import base64
import binascii
import re
from email import message_from_bytes, policy

from features.links import PIXEL_AFTER, PIXEL_BEFORE
from features.render import Prepared, RenderContext
from features.tokens import CLICK, OPEN, derive_key, read_token

ALL = dict(clicktracking=True, openstracking=True, preventscam=True, bouncetracking=True,
           inlinecss=True)
TRACKING = dict(clicktracking=True, openstracking=True)
KEY = derive_key("corpus-secret", "tracking")
CTX = RenderContext(
    message_id=1234, recipient_id=5678, mail_from="sender@example.com",
    tracking_base_url="https://t.example/t/", tracking_key=KEY,
    verp_key=derive_key("corpus-secret", "verp"), bounce_domain="bounces.example",
    recipient="rcpt@example.org",
)
TRACK_URL = re.compile(r"https://t\.example/t/([co])/([A-Za-z0-9_-]+)")


def encode(text: str, charset: str, cte: str, nl: str = "\r\n") -> bytes:
    data = text.replace("\n", nl).encode(charset)
    if cte == "quoted-printable":
        # b2a_qp writes a 77-octet line where a space at column 75 becomes "=20": cut such
        # lines, or the tests blame the renderer for input it left untouched.
        qp = binascii.b2a_qp(data, istext=True)
        return re.sub(rb"[^\r\n]{77,}", lambda m: _qp_cut(m, nl.encode()), qp)
    if cte == "base64":
        return base64.encodebytes(data).replace(b"\n", nl.encode())
    return data


def _qp_cut(m: re.Match, nl: bytes) -> bytes:
    line, out = m.group(0), []
    while len(line) > 76:
        cut = 75 - (line[74:75] == b"=") - 2 * (line[73:74] == b"=")  # not inside "=XX"
        out.append(line[:cut] + b"=" + nl)
        line = line[cut:]
    return b"".join(out) + line


def part(ctype: str, body: bytes, charset: str | None = None, cte: str | None = None,
         extra: str = "") -> bytes:
    head = f"Content-Type: {ctype}" + (f"; charset={charset}" if charset else "") + "\r\n"
    if cte:
        head += f"Content-Transfer-Encoding: {cte}\r\n"
    return (head + extra).encode() + b"\r\n" + body


def multipart(subtype: str, boundary: str, *parts: bytes, params: str = "") -> bytes:
    out = f'Content-Type: multipart/{subtype}; boundary="{boundary}"{params}\r\n\r\n'.encode()
    out += b"This is a multi-part message in MIME format.\r\n"
    for p in parts:
        out += f"--{boundary}\r\n".encode() + p + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def message(body_part: bytes, headers: str = "") -> bytes:
    return (
        "From: Sender <sender@example.com>\r\nTo: rcpt@example.org\r\nSubject: test\r\n"
        "Date: Tue, 24 Nov 2026 03:00:00 +0000\r\nMessage-ID: <m1@example.com>\r\n"
        f"{headers}MIME-Version: 1.0\r\n"
    ).encode() + body_part


def parts_of(raw: bytes) -> list:
    return [p for p in message_from_bytes(raw, policy=policy.compat32).walk()
            if not p.is_multipart()]


def decoded(p) -> str:
    data = p.get_payload(decode=True)
    return data.decode(p.get_content_charset() or "us-ascii")


def resolve(text: str, prepared: Prepared, escape: bool = True) -> str:
    """text with every tracking URL replaced by the URL it stands for, and the pixel removed.

    Tokens are checked: each must be genuine and name this message and recipient.
    """
    import html as html_mod

    pixel = re.compile(re.escape(PIXEL_BEFORE) + r"https://t\.example/t/o/[A-Za-z0-9_-]+"
                       + re.escape(PIXEL_AFTER))
    text = pixel.sub("", text)

    def back(m: re.Match) -> str:
        kind = CLICK if m.group(1) == "c" else OPEN
        ids = read_token(KEY, kind, m.group(2))
        assert ids is not None and ids[:2] == (CTX.message_id, CTX.recipient_id)
        url = (prepared.links if kind == CLICK else prepared.images)[ids[2]]
        return html_mod.escape(url, quote=True) if escape else url

    return TRACK_URL.sub(back, text)


def lines_ok(raw: bytes) -> None:
    """Every line at most 998 octets; every line of a QP or base64 part at most 76."""
    assert all(len(line) <= 998 for line in raw.split(b"\n"))
    for p in parts_of(raw):
        if p.get("content-transfer-encoding", "").lower() in ("quoted-printable", "base64"):
            body = p.get_payload(decode=False)
            assert all(len(line.rstrip("\r")) <= 76 for line in body.split("\n")), body


# Hostile HTML shapes (issue 8). Each once crashed the renderer's process or multiplied a part.
def deep_nesting(levels: int = 12_000, tag: str = "div", close: bool = True) -> str:
    """A <style> block and levels nested elements around one link: css-inline 0.24 walked this
    tree recursively and overflowed the C stack (SIGSEGV) past about 10,000 levels."""
    inner = '<a href="https://example.com/deep">deep</a>'
    closing = f"</{tag}>\r\n" * levels if close else ""
    return ("<html><head><style>a { color: red; }</style></head><body>"
            + f"<{tag}>\r\n" * levels + inner + closing + "</body></html>")


def css_bomb(elements: int = 20_000, properties: int = 150, length: int = 50) -> str:
    """One "*" rule of many long custom properties over many empty elements: 189 KB of this
    grew to 182 MB inlined (1.4 GB of memory)."""
    declarations = ";".join(f"--p{i}:" + "x" * (length - len(f"--p{i}:"))
                            for i in range(properties))
    return (f'<html><head><style>*{{{declarations}}}</style></head><body>'
            '<a href="https://example.com/bomb">bomb</a>' + "<b></b>" * elements
            + "</body></html>")


def html_message(html: str) -> bytes:
    return message(part("text/html", html.encode(), "utf-8", "8bit"))


HOSTILE = {
    "deep-nesting": lambda: html_message(deep_nesting()),
    "deep-nesting-unclosed": lambda: html_message(deep_nesting(19_000, close=False)),
    # a naive count reads these flat: only the thread's stack stands between them and a crash
    "deep-nesting-stray-ends": lambda: html_message(
        deep_nesting(9_900, tag="div></x", close=False)),
    "deep-tables": lambda: html_message(deep_nesting(4_000, tag="table><td", close=False)),
    "css-bomb": lambda: html_message(css_bomb()),
    "css-bomb-big": lambda: html_message(css_bomb(elements=75_000)),
}
