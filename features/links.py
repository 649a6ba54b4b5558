"""Find and rewrite links and images in HTML and plain text by splicing, never re-serialising.

The scanner is a handful of regular expressions over the original text: only the changed
attribute values (and a removed data-notrack attribute, and the inserted pixel) differ in the
output; every other character is the input's. Links inside MSO conditional comments (VML
buttons for Outlook) are scanned like any other markup.
"""
from __future__ import annotations

import html
import html.entities
import re
from typing import NamedTuple

CLICK = "click"
OPEN = "open"


class Slot:
    """Where a per-recipient tracking URL goes: kind CLICK or OPEN, index into the link lists.

    escape_html: the URL goes into HTML (escaped); bare: into an unquoted attribute value.
    """

    __slots__ = ("kind", "index", "escape_html", "bare")

    def __init__(self, kind: str, index: int, escape_html: bool = True, bare: bool = False):
        self.kind = kind
        self.index = index
        self.escape_html = escape_html
        self.bare = bare

    def __repr__(self) -> str:
        return f"Slot({self.kind!r}, {self.index})"


class Change(NamedTuple):
    """One thing a render did, for the preview page: kind and the URL (or part) it concerns."""

    kind: str
    detail: str = ""


# Any case scheme, a host; nothing else is ever rewritten.
_TRACKABLE = re.compile(r"https?://[^\s/?#\\]+", re.I)
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{%|%\}|\*\||\|\*|%%|\[\[|\]\]|<%|%>|\$\{")

# A tag's inside. An unclosed quote or tag runs to the end of the text (as in the HTML
# tokenizer), so every tag match ends at ">" or at the end: no attempt rescans the rest of the
# text, and hostile markup ("<a " a million times) stays linear.
_TAG_BODY = r"""(?:[^>"']++|"[^"]*+(?:"|\Z)|'[^']*+(?:'|\Z))*+"""
# One match per interesting token: the leading group skips text and uninteresting tags inside
# the regex engine. "stray" and "eof" make every attempt succeed, so scanning stays linear.
_TAGS = re.compile(
    r"""
    (?:[^<]++
      | <(?!(?:a|area|img)[\s/>]|v:|/(?:a|body)\s*>|/v:|!--
           |(?:script|style|textarea|title|xmp)[\s/>])
         (?:[a-z!?/]""" + _TAG_BODY + r"""(?:>|\Z))?+
    )*+
    (?:
      (?P<cond><!--\[if[^\]>]*\]>)
    | (?P<comment><!--(?:-?>|.*?-->|.*\Z))
    | (?P<raw><(?P<rawname>script|style|textarea|title|xmp)(?=[\s/>])""" + _TAG_BODY + r"""
         (?:>.*?(?:</(?P=rawname)\s*>|\Z)|\Z))
    | <(?P<name>a|area|img|v:[a-z0-9_-]+)(?=[\s/>])(?P<attrs>""" + _TAG_BODY + r""")(?:>|\Z)
    | </(?P<end>a|body|v:[a-z0-9_-]+)\s*>
    | (?P<stray><)
    | (?P<eof>\Z)
    )
    """,
    re.I | re.S | re.X,
)
_ATTR = re.compile(
    r"""(?P<name>[^\s"'>/=][^\s"'>/=]*)(?:\s*=\s*(?P<value>"[^"]*"|'[^']*'|[^\s>]+))?"""
)
_NOT_AMP = re.compile(r"&(?!amp;)")
# A character reference as html.unescape finds them (same pattern as the standard library's).
_CHARREF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")
# The legacy named references browsers accept without a ";" (html5 spec's table).
_LEGACY = frozenset(k for k in html.entities.html5 if not k.endswith(";"))
_URL_WHITESPACE = re.compile(r"[\t\n\r]")
_STRIP_TAGS = re.compile(r"<[^>]*+(?:>|\Z)")  # an unclosed "<" runs to the end: linear
_SPACE = re.compile(r"\s+")
_LABEL_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.I)
_LABEL_HOST = re.compile(
    r"(?:www\.)?(?:[^\W_](?:[\w-]*[^\W_])?\.)+[^\W\d_]{2,63}\.?(?::\d{1,5})?(?:[/?#]\S*)?", re.I
)
_TEXT_URL = re.compile(r"https?://[^\s<>\"'`{}|\\^\[\]]+", re.I)
_TRAILING_PUNCT = ".,;:!?'\")"
_NON_SPACE = re.compile(r"\S*")


def trackable(url: str) -> bool:
    """True for an absolute http(s) URL with a host and no template placeholder in it."""
    return bool(_TRACKABLE.match(url)) and not _PLACEHOLDER.search(url)


def looks_like_url(label: str) -> bool:
    """The preventscam rule: visible text that is a URL or a host name (any case, path optional)."""
    label = label.strip()
    # Length bound first: the host pattern backtracks quadratically on long runs of letters.
    if not label or len(label) > 2048 or " " in label:
        return False
    return bool(_LABEL_URL.fullmatch(label) or _LABEL_HOST.fullmatch(label))


def visible_text(markup: str) -> str:
    """Text a reader sees: tags stripped, entities decoded, whitespace collapsed."""
    if "<" not in markup and "&" not in markup:
        return " ".join(markup.split())
    return _SPACE.sub(" ", html.unescape(_STRIP_TAGS.sub("", markup))).strip()


def _attr_pattern(name: str) -> re.Pattern:
    # What _ATTR.finditer() would find first under this name, in one match: the other
    # attributes and the characters between them skipped as _ATTR tokenises them (possessive,
    # so a tag without the attribute fails in linear time). The name's case is spelled out:
    # re.I would also take "ſrc" (long s) for "src", which str.lower() does not.
    word = "".join(f"[{c}{c.upper()}]" if c.isalpha() else re.escape(c) for c in name)
    return re.compile(
        r"""(?:[\s"'>/=]|(?!""" + word + r"""(?:[\s"'>/=]|\Z))[^\s"'>/=]+"""
        r"""(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]+))?)*+"""
        r"""(?P<name>""" + word + r""")(?=[\s"'>/=]|\Z)"""
        r"""(?:\s*=\s*(?P<value>"[^"]*"|'[^']*'|[^\s>]+))?"""
    )


_ATTR_NAMED = {name: _attr_pattern(name) for name in ("href", "src")}


def _attr(attrs: str, offset: int, wanted: str) -> tuple[int, int, str] | None:
    """(start, end, raw value) of the first attribute called wanted, scanning no further."""
    m = _ATTR_NAMED[wanted].match(attrs)
    if m is None:
        return None
    value = m.group("value")
    if value is None:
        start, end = m.span("name")
        return offset + start, offset + end, ""
    start, end = m.span("value")
    return offset + start, offset + end, value


def _attr_charref(m: re.Match) -> str:
    ref = m.group(1)
    if ref[0] == "#":
        return html.unescape(m.group(0))
    if ref[-1] == ";" and ref in html.entities.html5:
        return html.entities.html5[ref]
    # In an attribute value a named reference without ";" followed by "=" or a letter or digit
    # is no reference (HTML spec, "named character reference state"): "?a=1&copy=2" keeps
    # its "&copy" in every browser, and so must the URL we record.
    for k in range(min(len(ref), 32), 1, -1):
        if ref[:k] in _LEGACY:
            nxt = ref[k : k + 1]
            if nxt == "=" or nxt.isascii() and nxt.isalnum():
                return m.group(0)
            return html.entities.html5[ref[:k]] + ref[k:]
    return m.group(0)


def unescape_attr(value: str) -> str:
    """An attribute value with its character references decoded the way browsers do."""
    return _CHARREF.sub(_attr_charref, value)


def _unquote(raw: str) -> str:
    if raw[:1] in "\"'" and raw[-1:] == raw[:1] and len(raw) >= 2:
        raw = raw[1:-1]
    if "&" in raw:
        # &amp; is nearly the only entity in URLs; replacing it is unescape, only faster.
        raw = unescape_attr(raw) if _NOT_AMP.search(raw) else raw.replace("&amp;", "&")
    raw = raw.strip()
    if "\n" in raw or "\r" in raw or "\t" in raw:  # browsers drop these inside URLs too
        raw = _URL_WHITESPACE.sub("", raw)
    return raw


def _with_space_before(text: str, start: int, end: int) -> tuple[int, int]:
    # Remove the attribute and the whitespace before it, so `<a data-notrack href=..>` stays tidy.
    while start > 0 and text[start - 1] in " \t\r\n":
        start -= 1
    return start, end


class _Scan:
    def __init__(self, text, links, images, changes, clicks, opens, preventscam):
        self.text = text
        self.links = links
        self.images = images
        self.changes = changes
        self.clicks = clicks
        self.opens = opens
        self.preventscam = preventscam
        self.edits: list[tuple[int, int, list]] = []

    def value_edit(self, span: tuple[int, int, str], kind: str, index: int) -> None:
        start, end, raw = span
        if raw[:1] in "\"'":
            self.edits.append((start, end, [raw[0], Slot(kind, index), raw[0]]))
        else:  # unquoted stays unquoted: tracking URLs hold no space, quote, = or >
            self.edits.append((start, end, [Slot(kind, index, bare=True)]))

    def remove_notrack(self, attrs_text: str, offset: int) -> bool:
        for m in _ATTR.finditer(attrs_text):
            if m.group("name").lower() == "data-notrack":
                begin, end = _with_space_before(self.text, offset + m.start(), offset + m.end())
                self.edits.append((begin, end, []))
                return True
        return False

    def link(self, span, url: str, markup: str | None) -> None:
        if self.preventscam and markup is not None and looks_like_url(visible_text(markup)):
            self.changes.append(Change("kept", url))
            return
        self.links.append(url)
        self.value_edit(span, CLICK, len(self.links) - 1)
        self.changes.append(Change("link", url))

    def run(self) -> list | None:
        text = self.text
        pending_a = None  # (span, url, text start)
        pending_v: dict[str, tuple] = {}
        body_end = -1
        for m in _TAGS.finditer(text):
            group = m.lastgroup
            if group == "attrs":
                if m.end() == len(text) and not text.endswith(">"):
                    continue  # a tag cut off by the end of the text is no tag (HTML drops it)
                lname = m.group("name").lower()
                offset, attrs_end = m.span("attrs")
                attrs_text = text[offset:attrs_end]
                notrack = "data-notrack" in attrs_text.lower()
                if lname == "img":
                    src = _attr(attrs_text, offset, "src")
                    if notrack and self.remove_notrack(attrs_text, offset):
                        self.changes.append(Change("notrack", _unquote(src[2]) if src else ""))
                        continue
                    if not self.opens:
                        continue
                    if src and trackable(url := _unquote(src[2])):
                        self.images.append(url)
                        self.value_edit(src, OPEN, len(self.images) - 1)
                        self.changes.append(Change("image", url))
                    continue
                if lname == "a" and pending_a is not None:
                    tag_start = m.start("name") - 1
                    self.link(pending_a[0], pending_a[1], text[pending_a[2] : tag_start])
                    pending_a = None
                href = _attr(attrs_text, offset, "href")
                if notrack and self.remove_notrack(attrs_text, offset):
                    self.changes.append(Change("notrack", _unquote(href[2]) if href else ""))
                    continue
                if not self.clicks:
                    continue
                if not href or not trackable(url := _unquote(href[2])):
                    continue
                if lname == "a":
                    pending_a = (href, url, m.end())
                elif lname == "area" or attrs_text.rstrip().endswith("/"):
                    self.link(href, url, None)
                else:
                    pending_v[lname] = (href, url, m.end())
                continue
            if group != "end":
                continue
            lend = m.group("end").lower()
            tag_start = m.start("end") - 2
            if lend == "a":
                if pending_a is not None:
                    self.link(pending_a[0], pending_a[1], text[pending_a[2] : tag_start])
                    pending_a = None
            elif lend == "body":
                body_end = tag_start
            elif lend in pending_v:
                href, url, start = pending_v.pop(lend)
                self.link(href, url, text[start:tag_start])
        if pending_a is not None:
            self.link(pending_a[0], pending_a[1], text[pending_a[2] :])
        for href, url, start in pending_v.values():
            self.link(href, url, text[start:])
        if self.opens:
            at = body_end if body_end >= 0 else len(text.rstrip())
            self.edits.append((at, at, [PIXEL_BEFORE, Slot(OPEN, 0), PIXEL_AFTER]))
            self.changes.append(Change("pixel"))
        if not self.edits:
            return None
        self.edits.sort(key=lambda e: (e[0], e[1]))
        out: list = []
        pos = 0
        for start, end, replacement in self.edits:
            if start < pos:  # overlapping edits cannot happen with one match per tag; be safe
                continue
            out.append(text[pos:start])
            out.extend(replacement)
            pos = end
        out.append(text[pos:])
        return _coalesce(out)


def _coalesce(pieces: list) -> list:
    """Adjacent strings joined, empty ones dropped."""
    out: list = []
    for p in pieces:
        if p.__class__ is str:
            if not p:
                continue
            if out and out[-1].__class__ is str:
                out[-1] += p
                continue
        out.append(p)
    return out


PIXEL_BEFORE = '<img src="'
PIXEL_AFTER = '" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">'


def rewrite_html(
    text: str,
    links: list[str],
    images: list[str],
    changes: list[Change],
    *,
    clicks: bool,
    opens: bool,
    preventscam: bool,
) -> list | None:
    """Pieces (str and Slot) of text with its links and images made trackable, None if unchanged.

    Found URLs are appended to links / images, whose positions are the Slots' indexes (image
    indexes start at 1; 0 is the inserted pixel).
    """
    return _Scan(text, links, images, changes, clicks, opens, preventscam).run()


def rewrite_text(text: str, links: list[str], changes: list[Change]) -> list | None:
    """Pieces of a text/plain body with every http(s) URL made trackable, None if there is none."""
    out: list = []
    pos = 0
    for m in _TEXT_URL.finditer(text):
        url = m.group(0)
        while url and url[-1] in _TRAILING_PUNCT:
            if url[-1] == ")" and url.count("(") >= url.count(")"):
                break
            url = url[:-1]
        if not trackable(url):
            continue
        # _TEXT_URL stops at "{", "|", "[" ...: a URL running on into a placeholder
        # ("?u={{ id }}", "*|ID|*") is the template's, and tracking its head would cut it off.
        if _PLACEHOLDER.search(_NON_SPACE.match(text, m.start()).group(0)):
            continue
        links.append(url)
        changes.append(Change("text-link", url))
        out.append(text[pos : m.start()])
        out.append(Slot(CLICK, len(links) - 1, escape_html=False))
        pos = m.start() + len(url)
    if not out:
        return None
    out.append(text[pos:])
    return [p for p in out if p != ""]
