"""Find and rewrite links and images in HTML and plain text by splicing, never re-serialising.

The scanner is a handful of regular expressions over the original text: only the changed
attribute values (and a removed data-notrack attribute, and the inserted pixel) differ in the
output; every other character is the input's. Links inside MSO conditional comments (VML
buttons for Outlook) are scanned like any other markup.
"""
from __future__ import annotations

import html
import html.entities
import operator
import re
from typing import NamedTuple

CLICK = "click"
OPEN = "open"
# Past these a link or image goes out as it is (change "untracked", a warning on the render):
# they bound the per-recipient work and the click endpoint's cached link lists for hostile or
# generated messages. Real newsletters hold tens of links, and URLs of a few hundred characters.
MAX_TRACKED = 1000  # links per message, and images per message
MAX_URL = 8192  # characters of one URL


class Slot(NamedTuple):
    """Where a per-recipient tracking URL goes: kind CLICK or OPEN, index into the link lists.

    escape_html: the URL goes into HTML (escaped); bare: into an unquoted attribute value.
    """

    kind: str
    index: int
    escape_html: bool = True
    bare: bool = False


class Change(NamedTuple):
    """One thing a render did, for the preview page: kind and the URL (or part) it concerns."""

    kind: str
    detail: str = ""


# Template placeholders ({{ }}, {% %}, *| |*, %%, [[ ]], <% %>, ${): a URL holding one is
# filled in later by someone else's template engine and is never rewritten.
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{%|%\}|\*\||\|\*|%%|\[\[|\]\]|<%|%>|\$\{")
# What is tracked, in one pass: any case http(s) scheme, a host, then only characters that
# start no _PLACEHOLDER pair.
_TRACKABLE_URL = re.compile(
    r"""https?://(?=[^\s/?#\\])
    (?:[^{}%*|\[\]<$]++|\{(?![{%])|\}(?!\})|%(?![}%>])|\*(?!\|)|\|(?!\*)|\[(?!\[)|\](?!\])
      |<(?!%)|\$(?!\{))*+""",
    re.I | re.X,
)

# A tag's inside. An unclosed quote or tag runs to the end of the text (as in the HTML
# tokenizer), so every tag match ends at ">" or at the end: no attempt rescans the rest of the
# text, and hostile markup ("<a " a million times) stays linear.
_TAG_BODY = r"""(?:[^>"']++|"[^"]*+(?:"|\Z)|'[^']*+(?:'|\Z))*+"""
# One match per interesting token: the leading group skips text and uninteresting tags inside
# the regex engine. "stray" and "eof" make every attempt succeed, so scanning stays linear.
# Each kind of tag has groups of its own, so m.lastgroup says what was found without any
# Python string work. An <a> whose label holds no markup ("<a href=..>Read more</a>", the
# common case) is one match up to its end tag: lastgroup "label".
_TAGS = re.compile(
    r"""
    (?:[^<]++
      | <(?!(?:a|area|img)[\s/>]|v:|/(?:a|body)\s*>|/v:|!--
           |(?:script|style|textarea|title|xmp)[\s/>])
         (?:[a-z!?/]""" + _TAG_BODY + r"""(?:>|\Z))?+
    )*+
    (?:
      <a(?=[\s/>])(?P<a>""" + _TAG_BODY + r""")(?:>(?:(?P<label>[^<]*+)</a\s*>)?|\Z)
    | <img(?=[\s/>])(?P<img>""" + _TAG_BODY + r""")(?:>|\Z)
    | (?P<enda></a\s*>)
    | (?P<cond><!--\[if[^\]>]*\]>)
    | (?P<comment><!--(?:-?>|.*?-->|.*\Z))
    | (?P<raw><(?P<rawname>script|style|textarea|title|xmp)(?=[\s/>])""" + _TAG_BODY + r"""
         (?:>.*?(?:</(?P=rawname)\s*>|\Z)|\Z))
    | <(?P<name>area|v:[a-z0-9_-]+)(?=[\s/>])(?P<attrs>""" + _TAG_BODY + r""")(?:>|\Z)
    | (?P<endbody></body\s*>)
    | </(?P<endv>v:[a-z0-9_-]+)\s*>
    | (?P<stray><)
    | (?P<eof>\Z)
    )
    """,
    re.I | re.S | re.X,
)
_ATTR = re.compile(
    r"""(?P<name>[^\s"'>/=][^\s"'>/=]*)(?:\s*=\s*(?P<value>"[^"]*"|'[^']*'|[^\s>]+))?"""
)
# A character reference as html.unescape finds them (same pattern as the standard library's).
_CHARREF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")
# The legacy named references browsers accept without a ";" (html5 spec's table).
_LEGACY = frozenset(k for k in html.entities.html5 if not k.endswith(";"))
_URL_WHITESPACE = re.compile(r"[\t\n\r]")
_COMMENT_END = re.compile(r"--!?>")
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
    return _TRACKABLE_URL.fullmatch(url) is not None


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


def _attr(text: str, start: int, end: int, wanted: str) -> tuple[int, int, str] | None:
    """(start, end, raw value) of the first attribute called wanted in text[start:end]."""
    m = _ATTR_NAMED[wanted].match(text, start, end)
    if m is None:
        return None
    value = m.group("value")
    if value is None:
        start, end = m.span("name")
        return start, end, ""
    start, end = m.span("value")
    return start, end, value


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
        if raw.count("&") == raw.count("&amp;"):
            raw = raw.replace("&amp;", "&")
        else:
            raw = unescape_attr(raw)
    raw = raw.strip()
    if "\n" in raw or "\r" in raw or "\t" in raw:  # browsers drop these inside URLs too
        raw = _URL_WHITESPACE.sub("", raw)
    return raw


_new = tuple.__new__  # builds a NamedTuple without its Python-level __new__: 5x faster
_SPAN = operator.itemgetter(0, 1)
PIXEL_BEFORE = '<img src="'
PIXEL_AFTER = '" width="1" height="1" alt="" style="display:block;border:0;width:1px;height:1px">'
_PIXEL = _new(Slot, (OPEN, 0, True, False))


def _url_label(markup: str) -> bool:
    """looks_like_url(visible_text(markup)), with a shortcut for labels without markup."""
    if "<" not in markup and "&" not in markup:
        words = markup.split()
        return len(words) == 1 and looks_like_url(words[0])
    return looks_like_url(visible_text(markup))


def _tracked_value(text: str, start: int, end: int, wanted: str, enabled: bool, edits: list,
                   changes: list) -> tuple[tuple[int, int, str], str] | None:
    """(value span, URL) of the tag's href or src when it is to be tracked, else None.

    A data-notrack attribute is removed here (and the tag left alone).
    """
    span = _attr(text, start, end, wanted)
    if _take_notrack(text, start, end, span, edits, changes) or not enabled or span is None:
        return None
    url = _unquote(span[2])
    return None if _TRACKABLE_URL.fullmatch(url) is None else (span, url)


def _take_notrack(text: str, start: int, end: int, value: tuple | None, edits: list,
                  changes: list) -> bool:
    """Remove the tag's data-notrack attribute (and the space before it); False if none."""
    if "data-notrack" not in text[start:end].lower():
        return False
    for m in _ATTR.finditer(text, start, end):
        if m.group("name").lower() == "data-notrack":
            begin = m.start()
            while begin > 0 and text[begin - 1] in " \t\r\n":
                begin -= 1
            edits.append((begin, m.end(), ""))
            changes.append(_new(Change, ("notrack", _unquote(value[2]) if value else "")))
            return True
    return False


def _scan(text: str, links: list, images: list, changes: list, clicks: bool, opens: bool,
          preventscam: bool) -> list | None:
    edits: list[tuple[int, int, object]] = []
    size = len(text)
    cut_off = not text.endswith(">")
    pending_a = None  # (value span, url, label start) of an <a> whose end is still ahead
    pending_v: dict[str, tuple] = {}
    body_end = -1
    # Where the comment a conditional opens ends for every reader but Outlook: at the first
    # "-->" (or "--!>") after it, whether that is <![endif]-->, <!--> or some inner comment.
    cond_end = -1

    def link(span: tuple[int, int, str], url: str, markup: str | None) -> None:
        if preventscam and markup is not None and _url_label(markup):
            changes.append(_new(Change, ("kept", url)))
            return
        if len(links) >= MAX_TRACKED or len(url) > MAX_URL:
            changes.append(_new(Change, ("untracked", url)))
            return
        links.append(url)
        edits.append(_value_edit(span, CLICK, len(links) - 1))
        changes.append(_new(Change, ("link", url)))

    for m in _TAGS.finditer(text):
        group = m.lastgroup
        if group == "label" or group == "a" or group == "attrs":
            if cut_off and m.end() == size and group != "label":
                continue  # a tag cut off by the end of the text is no tag (HTML drops it)
            if group == "attrs":
                offset, attrs_end = m.span("attrs")
                lname = m.group("name").lower()
            else:
                offset, attrs_end = m.span("a")
                lname = "a"
                if pending_a is not None:
                    link(pending_a[0], pending_a[1], text[pending_a[2] : m.start("a") - 2])
                    pending_a = None
            found = _tracked_value(text, offset, attrs_end, "href", clicks, edits, changes)
            if found is None:
                continue
            href, url = found
            if group == "label":
                link(href, url, m.group("label"))
            elif lname == "a":
                pending_a = (href, url, m.end())
            elif lname == "area" or text[offset:attrs_end].rstrip().endswith("/"):
                link(href, url, None)
            else:
                pending_v[lname] = (href, url, m.end())
        elif group == "img":
            if cut_off and m.end() == size:
                continue
            offset, attrs_end = m.span("img")
            found = _tracked_value(text, offset, attrs_end, "src", opens, edits, changes)
            if found is None:
                continue
            src, url = found
            # images[0] is the pixel: MAX_TRACKED images besides it
            if len(images) > MAX_TRACKED or len(url) > MAX_URL:
                changes.append(_new(Change, ("untracked", url)))
            else:
                images.append(url)
                edits.append(_value_edit(src, OPEN, len(images) - 1))
                changes.append(_new(Change, ("image", url)))
        elif group == "enda":
            if pending_a is not None:
                link(pending_a[0], pending_a[1], text[pending_a[2] : m.start("enda")])
                pending_a = None
        elif group == "endbody":
            if m.start("endbody") >= cond_end:  # Outlook's own </body> is a comment to others
                body_end = m.start("endbody")
        elif group == "cond":
            # <!--[if mso]> hides what follows from all but Outlook up to the first -->;
            # <!--[if !mso]><!--> (a "downlevel-revealed" block) shows it to everyone else.
            # Searched again only past the last end found: linear however many conditionals.
            if cond_end < m.end():
                end = _COMMENT_END.search(text, m.end())
                cond_end = size if end is None else end.end()
        elif group == "endv":
            lend = m.group("endv").lower()
            if lend in pending_v:
                href, url, start = pending_v.pop(lend)
                link(href, url, text[start : m.start("endv") - 2])
    if pending_a is not None:
        link(pending_a[0], pending_a[1], text[pending_a[2] :])
    for href, url, start in pending_v.values():
        link(href, url, text[start:])
    if opens:
        at = body_end if body_end >= 0 else len(text.rstrip())
        if body_end < 0 and cut_off and text.rfind("<") > text.rfind(">"):
            at = text.rfind("<")  # not inside a tag the end of the text cut off
        edits.append((at, at, _PIXEL))
        changes.append(_new(Change, ("pixel", "")))
    if not edits:
        return None
    return _splice(text, edits)


def _value_edit(span: tuple[int, int, str], kind: str, index: int) -> tuple[int, int, Slot]:
    start, end, raw = span
    if raw[:1] in "\"'" and len(raw) >= 2:  # the quotes stay, the value between them goes
        return start + 1, end - 1, _new(Slot, (kind, index, True, False))
    # Unquoted stays unquoted: tracking URLs hold no space, quote, = or > (see render._url).
    return start, end, _new(Slot, (kind, index, True, True))


def _splice(text: str, edits: list) -> list:
    """Pieces text, Slot, text, ..., text: each edit's span replaced (texts may be empty)."""
    edits.sort(key=_SPAN)  # in text order; an <img> inside an <a> was found first
    out: list = []
    before: list[str] = []  # text since the last Slot, joined once
    pos = 0
    for start, end, replacement in edits:
        if start < pos:  # overlapping edits cannot happen with one match per tag; be safe
            continue
        before.append(text[pos:start])
        pos = end
        if replacement is _PIXEL:
            before.append(PIXEL_BEFORE)
        elif replacement.__class__ is not Slot:
            continue  # a removal
        out.append("".join(before))
        out.append(replacement)
        before = [PIXEL_AFTER] if replacement is _PIXEL else []
    before.append(text[pos:])
    out.append("".join(before))
    return out


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
    """[text, Slot, text, ..., Slot, text] with links and images made trackable, None if unchanged.

    Texts and Slots alternate, starting and ending with a text (which may be empty).

    Found URLs are appended to links / images, whose positions are the Slots' indexes (image
    indexes start at 1; 0 is the inserted pixel).
    """
    return _scan(text, links, images, changes, clicks, opens, preventscam)


def rewrite_text(text: str, links: list[str], changes: list[Change]) -> list | None:
    """[text, Slot, ..., text] for a text/plain body with its http(s) URLs made trackable.

    None if there is none.
    """
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
        if len(links) >= MAX_TRACKED or len(url) > MAX_URL:
            changes.append(Change("untracked", url))
            continue
        links.append(url)
        changes.append(Change("text-link", url))
        out.append(text[pos : m.start()])
        out.append(Slot(CLICK, len(links) - 1, escape_html=False))
        pos = m.start() + len(url)
    if not out:
        return None
    out.append(text[pos:])
    return out
