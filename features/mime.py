"""MIME structure by byte offsets: find the leaf parts of a message, decode and re-encode bodies.

The standard library's email package reads each part's header block; the part boundaries are
found in the original bytes, so a part we do not change can be copied byte for byte.
"""
from __future__ import annotations

import binascii
import codecs
import re
from dataclasses import dataclass
from email.message import Message

MAX_DEPTH = 40
_NOT_MIME = frozenset({"unicode_escape", "raw_unicode_escape", "idna", "punycode", "undefined",
                       "mbcs", "oem"})
_SEALED = frozenset({"multipart/signed", "multipart/encrypted"})
_WANTED = re.compile(
    rb"(?im)^(content-type|content-transfer-encoding|content-disposition)[ \t]*:"
    rb"([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)"
)


def _headers(block: bytes) -> Message:
    """The three MIME fields of a header block in an email Message (the full parser is slow)."""
    msg = Message()
    for m in _WANTED.finditer(block):
        value = re.sub(rb"\r?\n(?=[ \t])", b"", m.group(2)).strip()
        msg[m.group(1).decode("ascii")] = value.decode("ascii", "surrogateescape")
    return msg


@dataclass
class Leaf:
    """A non-multipart part: where its header block and body are in the raw message."""

    header_start: int
    body_start: int
    end: int
    content_type: str
    charset: str | None
    cte: str
    attachment: bool


class MimeError(ValueError):
    """A part that cannot be decoded or re-encoded; the message goes out unchanged there."""


def header_end(raw: bytes | bytearray, start: int = 0, end: int | None = None) -> tuple[int, int]:
    """Where the header block of the part raw[start:end] ends: (fields, body).

    raw[start:fields] is the header fields, each with its line end; raw[fields:body] is the
    empty line (CRLF or LF) that ends them; the body starts at body. A part that starts with
    an empty line has no fields; a part without an empty line is all header: (end, end).
    The one definition of "the header block" for features and relay alike.
    """
    end = len(raw) if end is None else end
    for nl in (b"\r\n", b"\n"):
        if raw.startswith(nl, start, end):
            return start, start + len(nl)
    # The empty line starts at the first LF followed by another line end; searched for with
    # find() (a regular expression looks at every byte in turn). The CRLF search comes first
    # and bounds the LF one: mail from SMTP has CRLF line ends and a header block of a few KB.
    crlf = raw.find(b"\n\r\n", start, end)
    lf = raw.find(b"\n\n", start, end if crlf < 0 else crlf + 2)
    first = crlf if lf < 0 else lf
    if first < 0:
        return end, end
    return first + 1, first + (2 if first == lf else 3)


def leaves(raw: bytes) -> tuple[list[Leaf], list[str]]:
    """Every leaf part of the message in order, and warnings about structure we could not read."""
    found: list[Leaf] = []
    warnings: list[str] = []
    _walk(raw, 0, len(raw), 0, found, warnings)
    return found, warnings


def _walk(raw: bytes, start: int, end: int, depth: int, found: list[Leaf], warnings: list[str],
          default_type: str = "text/plain"):
    body = header_end(raw, start, end)[1]
    try:
        headers = _headers(raw[start:body])
        headers.set_default_type(default_type)
        ctype = headers.get_content_type()
        charset = headers.get_content_charset()
        cte = str(headers.get("content-transfer-encoding", "7bit")).strip().lower()
        disposition = headers.get_content_disposition()
        boundary = headers.get_boundary() if ctype.startswith("multipart/") else None
    except Exception as exc:  # email raises many kinds on hostile headers
        warnings.append(f"part at byte {start}: unreadable headers ({type(exc).__name__})")
        return
    if ctype in _SEALED:
        # S/MIME and OpenPGP sign or encrypt the exact bytes of what is inside: one changed
        # link breaks the signature the reader's client checks.
        warnings.append(f"part at byte {start}: {ctype} left alone (a change would break it)")
        return
    if ctype.startswith("multipart/"):
        if depth >= MAX_DEPTH:
            warnings.append(f"part at byte {start}: nested deeper than {MAX_DEPTH}, left alone")
            return
        if not boundary:
            warnings.append(f"part at byte {start}: multipart without boundary, left alone")
            return
        # A literal first character lets the regex engine search fast; the \n is the one that
        # ends the previous line (the header block's blank line ends with one too).
        delim = re.compile(
            rb"\n--" + re.escape(boundary.encode("utf-8", "surrogateescape"))
            + rb"(--)?[ \t]*(?=\r?\n|\Z)"
        )
        # RFC 2046: parts of a digest without a Content-Type are messages.
        child_type = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
        child_start = None
        closed = False
        for m in delim.finditer(raw, body - 1, end):
            line_start = m.start() + 1
            if child_start is not None:
                child_end = line_start - (2 if raw[line_start - 2 : line_start] == b"\r\n" else 1)
                _walk(raw, child_start, max(child_end, child_start), depth + 1, found, warnings,
                      child_type)
            if m.group(1):
                closed = True
                break
            nl = raw.find(b"\n", m.end(), end)
            child_start = end if nl < 0 else nl + 1
        if child_start is None:
            warnings.append(f"part at byte {start}: boundary never found, left alone")
        elif not closed:
            warnings.append(f"part at byte {start}: multipart not closed")
            _walk(raw, child_start, end, depth + 1, found, warnings, child_type)
        return
    found.append(
        Leaf(start, body, end, ctype, charset, cte, disposition == "attachment")
    )


def decode_body(data: bytes, cte: str) -> bytes:
    """Bytes of a body under its transfer encoding; MimeError for encodings we cannot undo."""
    if cte in ("7bit", "8bit", "binary", ""):
        return data
    if cte == "quoted-printable":
        return binascii.a2b_qp(data)
    if cte == "base64":
        try:
            return binascii.a2b_base64(data.translate(None, b" \t\r\n"), strict_mode=True)
        except binascii.Error as exc:
            raise MimeError(f"bad base64 ({exc})") from None
    raise MimeError(f"unknown transfer encoding {cte!r}")


def newline_of(data: bytes) -> bytes:
    return b"\r\n" if b"\r\n" in data or b"\n" not in data else b"\n"


def encode_body(data: bytes, cte: str, newline: bytes, trailing: bytes) -> bytes:
    """data under transfer encoding cte: QP lines <= 76, base64 lines of 76."""
    if cte == "quoted-printable":
        return qp_encode(data, newline)
    if cte == "base64":
        encoded = binascii.b2a_base64(data, newline=False)
        lines = [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
        return newline.join(lines) + trailing
    return data


def codec_name(charset: str | None) -> str:
    """Python codec for a MIME charset (us-ascii when none is declared); MimeError if unknown."""
    name = (charset or "us-ascii").strip().strip('"').lower()
    try:
        info = codecs.lookup(name)
    except LookupError:
        raise MimeError(f"unknown charset {name!r}") from None
    # Python's codec registry also holds bytes-to-bytes transforms (base64, zlib, rot13 ...)
    # and Python-only text codecs; a MIME charset is none of them.
    if not getattr(info, "_is_text_encoding", True) or info.name.replace("-", "_") in _NOT_MIME:
        raise MimeError(f"unknown charset {name!r}")
    return info.name


def qp_encode_slots(data: bytes, newline: bytes, lf_lines: bool = False) -> list[bytes]:
    """qp_encode(data) cut where each NUL byte of data was: the texts between slots, each
    ready to be joined with qp_slot(value) in between (what a render does per recipient).

    A text before a slot ends with a soft line break unless it ends a line already; a text
    after a slot that starts with a lone "." spells it "=2E".
    """
    soft = b"=" + newline
    # Each NUL is "=00" on a line of at most 76; a soft break in its place keeps the line that
    # short and ends it before the slot (where a line starts, none is needed).
    chunks = qp_encode(data, newline, lf_lines).split(b"=00")
    last = chunks.pop()
    chunks = [c + soft if c and not c.endswith(newline) else c for c in chunks]
    chunks.append(last)
    # After a slot's soft break a text starts a line; a lone "." there would end an SMTP DATA
    # at a relay that forgot to dot-stuff, so spell it as b2a_qp does.
    for i in range(1, len(chunks)):
        chunk = chunks[i]
        if chunk[:1] == b"." and (len(chunk) == 1 or chunk[1:1 + len(newline)] == newline):
            chunks[i] = b"=2E" + chunk[1:]
    return chunks


def qp_slot(value: bytes, newline: bytes, followed: bool) -> bytes:
    """value (ASCII, a tracking URL) as it goes between two texts of qp_encode_slots: encoded
    where it must be, and ended with a soft line break when a text follows on its line."""
    # A tracking URL is QP-safe as it is unless it holds "=" or is very long.
    if len(value) > 76 or b"=" in value:
        value = qp_encode(value, newline)
    if not followed:
        return value
    # The soft break's "=" must fit too: a line of 76 is cut first.
    return value + b"=" + newline if len(value) < 76 else qp_soft_break(value, newline)


def qp_soft_break(encoded: bytes, newline: bytes) -> bytes:
    """encoded (quoted-printable) followed by a soft line break, keeping lines <= 76."""
    if not encoded or encoded.endswith(b"\n"):
        return encoded
    start = encoded.rfind(b"\n") + 1
    line = encoded[start:]
    if len(line) <= 75:
        return encoded + b"=" + newline
    cut = 75
    if line[cut - 1 : cut] == b"=":  # never split an =XX escape
        cut -= 1
    elif line[cut - 2 : cut - 1] == b"=":
        cut -= 2
    return encoded[:start] + line[:cut] + b"=" + newline + line[cut:] + b"=" + newline


def qp_encode(data: bytes, newline: bytes, lf_lines: bool = False) -> bytes:
    """Quoted-printable, lines <= 76, hard line breaks where data has the part's newline.

    A CR or LF that is not part of the part's own line ending stays encoded (=0D, =0A), so
    the decoded bytes are exactly data. lf_lines: data ends its lines with LF alone and is
    to be read as if each were newline (what an inliner hands back for a CRLF part).
    """
    fast = _qp_mostly_ascii(data, newline, lf_lines)
    if fast is not None:
        return fast
    if lf_lines and newline != b"\n":
        data = data.replace(b"\n", newline)
    encode = binascii.b2a_qp
    if newline == b"\n":
        bare = b"\r" in data
    else:
        pairs = data.count(b"\r\n")
        bare = data.count(b"\n") != pairs or data.count(b"\r") != pairs
    if not bare:  # every CR and LF is the part's own line ending: one call does it
        out = encode(data, quotetabs=False, istext=True, header=False)
    elif newline not in data:
        out = encode(data, quotetabs=False, istext=False, header=False)
    else:
        out = newline.join(
            [encode(line, quotetabs=False, istext=False, header=False)
             for line in data.split(newline)]
        )
    if newline == b"\r\n" and b"=\n" in out:
        out = out.replace(b"=\n", b"=\r\n")  # b2a_qp's soft breaks are bare LF
    # b2a_qp lets a line run to 77 in some cases (a tab or an escaped CR/LF near the cut):
    # cut those again.
    lines = out.split(newline)
    if any(len(line) > 76 for line in lines):
        soft = b"=" + newline
        out = newline.join([line if len(line) <= 76 else _recut(line, soft) for line in lines])
    return out


def _recut(line: bytes, soft: bytes) -> bytes:
    # A final "=" is a soft line break (an escape always has two characters after its "=").
    if line.endswith(b"="):
        return soft.join(_QP_CHUNK.findall(line[:-1])) + b"="
    return soft.join(_QP_CHUNK.findall(line))


# Bytes quoted-printable leaves as they are (anywhere but at a line end); "=" is not one.
_QP_LITERAL = bytes(b for b in range(0x20, 0x7F) if b != 0x3D) + b"\t\r\n"
# Up to 75 encoded bytes that do not end inside an =XX escape ("=" always starts one).
_QP_CHUNK = re.compile(rb".{1,75}(?<!=)(?<!=.)", re.S)
_WHITESPACE = (b" ", b"\t")


def _qp_mostly_ascii(data: bytes, newline: bytes, lf_lines: bool = False) -> bytes | None:
    """qp_encode for text with few kinds of byte to escape and no bare CR or LF, else None.

    binascii.b2a_qp looks at every byte in turn; here bytes methods escape each kind of byte
    at once and only lines over 76 are cut (measured: bench/README.md, render).
    """
    source = b"\n" if lf_lines else newline
    kinds = set(data.translate(None, _QP_LITERAL))
    if len(kinds) > 8:  # non-ASCII text: leave it to binascii
        return None
    out = data
    if 0x3D in kinds:  # first: the other escapes bring their own "="
        out = out.replace(b"=", b"=3D")
        kinds.discard(0x3D)
    for byte in kinds:
        out = out.replace(bytes((byte,)), b"=%02X" % byte)
    lines = out.split(source)
    # Every CR and LF must be part of a line end (newline): a bare one needs its own escape.
    ends = len(lines) - 1
    if out.count(b"\n") != ends or out.count(b"\r") != (ends if source == b"\r\n" else 0):
        return None
    soft = b"=" + newline
    return newline.join([
        line if len(line) <= 76 and not line.endswith(_WHITESPACE) and line != b"."
        else _qp_line(line, soft)
        for line in lines
    ])


def _qp_line(line: bytes, soft: bytes) -> bytes:
    if line == b".":  # as b2a_qp does: a lone "." ends an SMTP DATA that forgot to dot-stuff
        return b"=2E"
    # A space or tab at the end of a line would be lost in transport: escape it.
    if line.endswith(_WHITESPACE):
        line = line[:-1] + (b"=20" if line[-1] == 0x20 else b"=09")
    if len(line) <= 76:
        return line
    chunks = _QP_CHUNK.findall(line)
    if chunks[-1] == b".":  # the cut left the line's final "." alone on a line of its own
        chunks[-1] = b"=2E"
    return soft.join(chunks)


def longest_line(data: bytes) -> int:
    return max(map(len, data.split(b"\n"))) if data else 0


_CT_FIELD = re.compile(rb"(?im)^content-type[ \t]*:(?:[^\r\n]*)(?:\r?\n[ \t][^\r\n]*)*")
_CTE_FIELD = re.compile(
    rb"(?im)^content-transfer-encoding[ \t]*:(?:[^\r\n]*)(?:\r?\n[ \t][^\r\n]*)*"
)
_CHARSET_PARAM = re.compile(rb"""(?i)(;\s*charset\s*=\s*)("[^"]*"|[^;\s]*)""")


def set_charset(header: bytes, charset: str) -> bytes:
    """The header block with the Content-Type charset parameter set (added if missing)."""
    value = charset.encode("ascii")
    m = _CT_FIELD.search(header)
    if not m:
        return _add_field(header, b"Content-Type: text/plain; charset=" + value)
    field = m.group(0)
    if _CHARSET_PARAM.search(field):
        new = _CHARSET_PARAM.sub(lambda p: p.group(1) + value, field, count=1)
    else:
        new = field.rstrip() + b"; charset=" + value
    return header[: m.start()] + new + header[m.end() :]


def set_cte(header: bytes, cte: str) -> bytes:
    """The header block with Content-Transfer-Encoding set to cte (added if missing)."""
    line = b"Content-Transfer-Encoding: " + cte.encode("ascii")
    m = _CTE_FIELD.search(header)
    if not m:
        return _add_field(header, line)
    return header[: m.start()] + line + header[m.end() :]


def _add_field(header: bytes, field: bytes) -> bytes:
    nl = newline_of(header)
    if not header:
        return field + nl
    if header.endswith(b"\n"):
        return header + field + nl
    return header + nl + field
