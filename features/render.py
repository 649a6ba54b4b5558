"""Render a message for one recipient: the five features applied, everything else left alone.

Two steps, because delivery renders the same message for many recipients:
`prepare(raw, features)` parses, decodes, inlines CSS and finds the links once per message;
`Prepared.for_recipient(context)` only signs tokens and re-encodes the changed parts.
`render()` does both. Neither raises: a part that cannot be handled goes out unchanged and the
result says why in `warnings`.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from functools import cached_property

from . import links as linkmod
from . import mime
from .inline import InlineLimit, has_style, inline_css
from .links import CLICK, Change, Slot
from .overrides import strip_smtpeter_headers
from .tokens import CLICK as CLICK_KIND
from .tokens import OPEN as OPEN_KIND
from .tokens import max_token_length, tokens, url_checks, verp_address

_BLANK_LINE = re.compile(rb"\r?\n\Z")
_ROUND_TRIPS = frozenset({
    "utf-8", "ascii", "iso8859-1", "iso8859-15", "cp1252", "cp1251", "cp1250", "koi8-r",
})
_UNQUOTABLE = re.compile(rb"[\s\"'=<>`]")


def _ref(p: Slot) -> tuple[str, int, bool]:
    """Which per-recipient URL list a Slot takes its URL from ("c", "t" or "o"), and where."""
    if p.kind == CLICK:
        return ("c" if p.escape_html else "t"), p.index, p.bare
    return "o", p.index, p.bare


def _quoted(url: bytes) -> bytes:
    # An unquoted attribute value cannot hold these; a tracking base URL might.
    return b'"' + url + b'"' if _UNQUOTABLE.search(url) else url


@dataclass(frozen=True)
class RenderContext:
    """Per-recipient values: ids for the tokens, where tracking URLs point, the keys."""

    message_id: int
    recipient_id: int
    mail_from: str = ""
    tracking_base_url: str = "http://127.0.0.1:8000/t/"
    tracking_key: bytes = b""
    verp_key: bytes = b""
    bounce_domain: str = "bounces.localhost"
    recipient: str = ""


@dataclass
class Rendered:
    message: bytes
    envelope_sender: str
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Body:
    """A changed body: [text, Slot, text, ..., Slot, text], encoded per recipient."""

    pieces: list
    codec: str
    cte: str
    newline: bytes
    trailing: bytes
    # The texts end their lines with LF alone, to be sent with newline (CRLF).
    lf_lines: bool = False
    # The texts already in charset and transfer encoding, when splicing URLs into the encoded
    # form gives the same decoded text (QP: each URL on a line of its own, between soft
    # line breaks).
    encoded: list[bytes] | None = None
    refs: list[tuple[str, int, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.refs = [_ref(p) for p in self.pieces[1::2]]

    def compile(self, data: bytes) -> None:
        """Pre-encode; data is the texts joined with a NUL where each Slot goes, encoded."""
        if self.cte == "base64":
            return
        # Encode the texts once with a NUL where each URL goes, then cut at the NULs. Valid
        # only where NUL is one byte of its own (ASCII-compatible charsets) and the text has
        # none of its own.
        slots = len(self.pieces) // 2
        if data.count(b"\0") != slots or "\0x".encode(self.codec) != b"\0x":
            return
        if self.cte == "quoted-printable":
            chunks = mime.qp_encode_slots(data, self.newline, self.lf_lines)
        else:
            if self.lf_lines:
                data = data.replace(b"\n", self.newline)
            chunks = data.split(b"\0")
        if len(chunks) == slots + 1:
            self.encoded = chunks

    def render(self, urls: dict[str, list[bytes]]) -> bytes:
        """The body with each Slot's URL from urls (see Prepared._urls), fully encoded."""
        if self.encoded is not None:
            return self._splice(urls)
        out = [self.pieces[0]]
        for (lid, index, bare), text in zip(self.refs, self.pieces[2::2], strict=True):
            url = _quoted(urls[lid][index]) if bare else urls[lid][index]
            out.append(url.decode("ascii"))
            out.append(text)
        data = "".join(out).encode(self.codec)
        if self.lf_lines:
            data = data.replace(b"\n", self.newline)
        return mime.encode_body(data, self.cte, self.newline, self.trailing)

    def _splice(self, urls: dict[str, list[bytes]]) -> bytes:
        qp = self.cte == "quoted-printable"
        newline = self.newline
        encoded = self.encoded
        out = [encoded[0]]
        for (lid, index, bare), after in zip(self.refs, encoded[1:], strict=True):
            data = urls[lid][index]
            if bare:
                data = _quoted(data)
            if qp:
                data = mime.qp_slot(data, newline, bool(after))
            out.append(data)
            out.append(after)
        return b"".join(out)


@dataclass
class Prepared:
    """The costly per-message half of a render; for_recipient() is the cheap half."""

    features: dict[str, bool]
    segments: list  # bytes and _Body, in message order
    links: list[str] = field(default_factory=list)  # click index -> URL
    images: list[str] = field(default_factory=lambda: [""])  # open index -> URL ("" = pixel)
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    original: bytes = b""  # what goes out if rendering fails
    _checks: dict = field(default_factory=dict, repr=False)

    def for_recipient(self, context: RenderContext) -> Rendered:
        """The message for one recipient; never raises (falls back to the message unchanged)."""
        try:
            return Rendered(
                self._message(context), envelope_sender(self.features, context),
                list(self.warnings),
            )
        except Exception as exc:
            return Rendered(
                self.original, context.mail_from,
                [*self.warnings, f"render failed, message unchanged ({type(exc).__name__})"],
            )

    def _url_checks(self, key: bytes, kind: bytes) -> list[bytes]:
        # The same for every recipient of the message: computed for the first, then kept.
        checks = self._checks.get((key, kind))
        if checks is None:
            checks = url_checks(key, self.links if kind == CLICK_KIND else self.images)
            self._checks = {(key, kind): checks, **self._checks}
        return checks

    @cached_property
    def _kinds(self) -> frozenset[str]:
        # Which URL lists the bodies take from: the same for every recipient.
        return frozenset(lid for s in self.segments if s.__class__ is _Body for lid, _, _ in s.refs)

    def _urls(self, context: RenderContext) -> dict[str, list[bytes]]:
        """This recipient's tracking URLs: "c" clicks in HTML, "t" in text, "o" opens."""
        kinds = self._kinds
        key, mid, rid = context.tracking_key, context.message_id, context.recipient_id
        base = context.tracking_base_url
        urls: dict[str, list[bytes]] = {}
        if "c" in kinds or "t" in kinds:
            made = tokens(key, CLICK_KIND, mid, rid, self._url_checks(key, CLICK_KIND))
            if "c" in kinds:
                prefix = html.escape(base + "c/", quote=True).encode("ascii")
                urls["c"] = [prefix + t for t in made]
            if "t" in kinds:
                prefix = (base + "c/").encode("ascii")
                urls["t"] = [prefix + t for t in made]
        if "o" in kinds:
            made = tokens(key, OPEN_KIND, mid, rid, self._url_checks(key, OPEN_KIND))
            prefix = html.escape(base + "o/", quote=True).encode("ascii")
            urls["o"] = [prefix + t for t in made]
        return urls

    def _message(self, context: RenderContext) -> bytes:
        if len(self.segments) == 1 and self.segments[0].__class__ is bytes:
            return self.segments[0]
        urls = self._urls(context)
        return b"".join(
            s if s.__class__ is bytes else s.render(urls) for s in self.segments
        )


def envelope_sender(features: dict[str, bool], context: RenderContext) -> str:
    """The VERP address with bouncetracking (except for the null sender), else the original."""
    if features.get("bouncetracking") and context.mail_from:
        return verp_address(
            context.verp_key, context.message_id, context.recipient_id, context.bounce_domain
        )
    return context.mail_from


def prepare(raw: bytes, features: dict[str, bool], inliner: str = "css-inline",
            tracking_base_url: str = "http://127.0.0.1:8000/t/") -> Prepared:
    """Parse and transform a message once; tracking_base_url only bounds line lengths."""
    try:
        return _prepare(raw, dict(features or {}), inliner, tracking_base_url)
    except Exception as exc:  # never raise: the message goes out as submitted
        raw = bytes(raw) if isinstance(raw, bytes | bytearray | memoryview) else b""
        prepared = Prepared(dict(features or {}), [raw], original=raw)
        prepared.warnings.append(f"message left unchanged: {type(exc).__name__}: {exc}"[:300])
        return prepared


def _prepare(raw: bytes, features: dict[str, bool], inliner: str, base_url: str) -> Prepared:
    raw = strip_smtpeter_headers(bytes(raw))
    prepared = Prepared(features, [], original=raw)
    clicks = bool(features.get("clicktracking"))
    opens = bool(features.get("openstracking"))
    scam = bool(features.get("preventscam"))
    css = bool(features.get("inlinecss"))
    if not (clicks or opens or css):
        prepared.segments = [raw]
        return prepared
    parts, warnings = mime.leaves(raw)
    prepared.warnings.extend(warnings)
    # Longest URL a Slot can become, for the 998-octet line check.
    worst = len(html.escape(base_url, quote=True)) + 4 + max_token_length()
    pos = 0
    for leaf in parts:
        is_html = leaf.content_type == "text/html"
        is_text = leaf.content_type == "text/plain"
        if leaf.attachment or not (is_html and (clicks or opens or css)
                                   or is_text and clicks and not scam):
            continue
        try:
            result = _transform(raw, leaf, is_html, clicks, opens, scam, css, inliner,
                                prepared, worst)
        except (mime.MimeError, UnicodeError, ValueError, LookupError) as exc:
            prepared.warnings.append(f"part at byte {leaf.header_start} left unchanged: {exc}")
            continue
        if result is None:
            continue
        header, body = result
        prepared.segments.append(raw[pos:leaf.header_start] + header)
        prepared.segments.append(body)
        pos = leaf.end
    prepared.segments.append(raw[pos:])
    prepared.segments = [s for s in prepared.segments if not isinstance(s, bytes) or s]
    if not prepared.segments:
        prepared.segments = [b""]
    return prepared


def _decode(body: bytes, leaf: mime.Leaf) -> tuple[bytes, str, str]:
    """(decoded bytes, codec, text) of a leaf's body; raises MimeError or UnicodeError."""
    codec = mime.codec_name(leaf.charset)
    data = mime.decode_body(body, leaf.cte)
    try:
        text = data.decode(codec)
    except UnicodeDecodeError:
        if leaf.charset is not None:
            raise mime.MimeError(f"body is not valid {leaf.charset}") from None
        codec = "utf-8"  # undeclared charset: 8-bit text in the wild is nearly always UTF-8
        text = data.decode(codec)
    # UTF-8 and the one-byte charsets always round-trip; the multibyte ones may not.
    if codec not in _ROUND_TRIPS and text.encode(codec) != data:
        raise mime.MimeError(f"{codec} does not round-trip, cannot re-encode faithfully")
    return data, codec, text


def _tracked_leaves(raw: bytes, features: dict[str, bool]):
    """The leaves prepare() transforms, with their kind: (leaf, is_html)."""
    clicks = bool(features.get("clicktracking"))
    opens = bool(features.get("openstracking"))
    scam = bool(features.get("preventscam"))
    css = bool(features.get("inlinecss"))
    parts, warnings = mime.leaves(raw)
    for leaf in parts:
        is_html = leaf.content_type == "text/html"
        is_text = leaf.content_type == "text/plain"
        if leaf.attachment or not (is_html and (clicks or opens or css)
                                   or is_text and clicks and not scam):
            continue
        yield leaf, is_html


def link_lists(raw: bytes, features: dict[str, bool]) -> tuple[list[str], list[str]]:
    """The click and open URL lists prepare() makes, found by the scanner alone.

    No CSS inlining, no re-encoding: what the tracking endpoints look a token's index up in.
    The inliners change no href or src and keep the elements in order, so the indexes are the
    rendered ones (tests/features/test_properties.py checks it); where markup is moved all the
    same, the URL check inside the token turns the click into a 404, never another link.
    """
    links: list[str] = []
    images: list[str] = [""]
    features = features or {}
    clicks = bool(features.get("clicktracking"))
    opens = bool(features.get("openstracking"))
    if not (clicks or opens):
        return links, images
    raw = strip_smtpeter_headers(bytes(raw))
    for leaf, is_html in _tracked_leaves(raw, features):
        try:
            text = _decode(raw[leaf.body_start:leaf.end], leaf)[2]
        except (mime.MimeError, UnicodeError, ValueError, LookupError):
            continue
        if is_html:
            linkmod.rewrite_html(text, links, images, [], clicks=clicks, opens=opens,
                                 preventscam=bool(features.get("preventscam")))
        else:
            linkmod.rewrite_text(text, links, [])
    return links, images


def _transform(raw: bytes, leaf: mime.Leaf, is_html: bool, clicks: bool, opens: bool,
               scam: bool, css: bool, inliner: str, prepared: Prepared, worst: int):
    """(new header block, _Body or bytes) for one leaf, or None when it stays as it is."""
    body = raw[leaf.body_start:leaf.end]
    data, codec, text = _decode(body, leaf)
    changes: list[Change] = []
    newline = mime.newline_of(body)
    lf_lines = False
    links = list(prepared.links)
    images = list(prepared.images)
    changed = False
    if is_html and css and has_style(text):
        try:
            crlf = "\r\n" in text
            # The inliners write LF line ends anyway. css-inline (html5ever) normalises CRLF
            # itself, faster than a replace() of ours; premailer (lxml) would keep the CRs.
            lf = text.replace("\r\n", "\n") if crlf and inliner == "premailer" else text
            inlined = inline_css(lf, inliner)
        except InlineLimit as exc:
            prepared.warnings.append(
                f"part at byte {leaf.header_start}: CSS not inlined, over a limit: {exc}"
            )
        except Exception as exc:
            prepared.warnings.append(
                f"part at byte {leaf.header_start}: CSS not inlined ({type(exc).__name__})"
            )
        else:
            # Both inliners write LF line ends; the part gets its own CRLF back (or
            # quoted-printable would spell every line end as =0A): when it is encoded where
            # CRLF is also the body's newline, else here. Line ends alone are no change.
            to_crlf = crlf and "\r" not in inlined
            if to_crlf:
                same = (len(inlined) + inlined.count("\n") == len(text)
                        and inlined.replace("\n", "\r\n") == text)
            else:
                same = inlined == text
            if not same:
                text, changed = inlined, True
                changes.append(Change("css", leaf.content_type))
                if to_crlf:
                    # The bytes' own "\n" can be joined with CRLF only where LF is one byte
                    # of its own (not in UTF-16/32).
                    if newline == b"\r\n" and "a\r\nb".encode(codec) == b"a\r\nb":
                        lf_lines = True
                    else:
                        text = inlined.replace("\n", "\r\n")
    if is_html:
        pieces = linkmod.rewrite_html(text, links, images, changes, clicks=clicks, opens=opens,
                                      preventscam=scam)
    else:
        pieces = linkmod.rewrite_text(text, links, changes)
    untracked = sum(1 for c in changes if c.kind == "untracked")
    if untracked:
        prepared.warnings.append(
            f"part at byte {leaf.header_start}: {untracked} link(s) or image(s) left untracked "
            f"(more than {linkmod.MAX_TRACKED} per message, or a URL over {linkmod.MAX_URL} "
            f"characters)"
        )
    if pieces is None:
        if not changed:
            prepared.changes.extend(changes)
            return None
        pieces = [text]
    header = raw[leaf.header_start:leaf.body_start]
    blank = _BLANK_LINE.search(header)
    fields, sep = (header[: blank.start()], header[blank.start():]) if blank else (header, b"")
    joined = "\0".join(pieces[0::2])  # one NUL where each Slot goes
    # Which charset and transfer encoding the new text can travel in.
    try:
        encoded = joined.encode(codec)
    except UnicodeEncodeError:
        codec = "utf-8"
        encoded = joined.encode(codec)
        fields = mime.set_charset(fields, "utf-8")
        prepared.warnings.append(
            f"part at byte {leaf.header_start}: new text not representable in "
            f"{leaf.charset or 'us-ascii'}, switched to utf-8"
        )
        changes.append(Change("charset", "utf-8"))
    cte = leaf.cte if leaf.cte in ("quoted-printable", "base64") else "7bit"
    if cte == "7bit":
        cr = 1 if lf_lines else 0  # LF-only lines get their CR back when sent: it counts
        too_long = mime.longest_line(encoded) + cr + worst * encoded.count(b"\0") > 998 and any(
            len(line) + cr + worst * line.count(b"\0") > 998 for line in encoded.split(b"\n")
        )
        # 8-bit text we put into a 7bit part forces QP; 8-bit text the sender already put
        # there is the sender's choice and goes out as it came.
        new_8bit = not encoded.isascii() and data.isascii()
        if too_long or (new_8bit and leaf.cte not in ("8bit", "binary")):
            cte = "quoted-printable"
            fields = mime.set_cte(fields, cte)
            reason = "a line over 998 octets" if too_long else "8-bit text in a 7bit part"
            prepared.warnings.append(
                f"part at byte {leaf.header_start}: {reason}, now quoted-printable"
            )
            changes.append(Change("encoding", cte))
        else:
            cte = leaf.cte
    trailing = body[len(body.rstrip(b"\r\n")):]
    part = _Body(pieces, codec, cte, newline, trailing, lf_lines)
    part.compile(encoded)
    prepared.links, prepared.images = links, images
    prepared.changes.extend(changes)
    if len(pieces) == 1:
        return fields + sep, part.render({})
    return fields + sep, part


def render(raw: bytes, features: dict[str, bool], context: RenderContext,
           inliner: str = "css-inline") -> Rendered:
    """The message as delivered to one recipient, its envelope sender and any warnings."""
    return prepare(raw, features, inliner, context.tracking_base_url).for_recipient(context)
