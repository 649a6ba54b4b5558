"""CSS inlining: css-inline by default, premailer on request (CSS_INLINER=premailer).

Both keep @media and other at-rules in a <style> element, keep `!important`, keep MSO
conditional comments and template placeholders, and never fetch a stylesheet or any URL.

Hostile markup is refused before an inliner sees it (InlineLimit, naming the limit): too many
tags, elements nested too deep, rules that would multiply the part's size; and an output over
the size bound is thrown away. css-inline walks its tree recursively in native code, where
running out of stack kills the process: it runs on a thread of its own with a stack sized for
the deepest tree MAX_TAGS tags can build.
"""
from __future__ import annotations

import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import css_inline

from .htmlscan import growth, scan, style_text, tags

INLINERS = ("css-inline", "premailer")
_STYLE = re.compile(r"<style[\s>]", re.I)
_DOCTYPE = re.compile(r"\s*<!doctype[^>]*>", re.I)
# Bounded lengths keep this linear on hostile input ("{{" a million times).
_PLACEHOLDER = re.compile(
    r"\{\{[^{}]{0,200}\}\}|\{%[^%]{0,200}%\}|\*\|[^|]{0,100}\|\*|%%[^%\s]{0,100}%%"
)
_CSS_INLINE = css_inline.CSSInliner(
    keep_at_rules=True, load_remote_stylesheets=False, keep_link_tags=True
)
# premailer turns these CSS properties into HTML attributes (height="1" becomes "auto" ...):
# leave the markup's own attributes alone.
_BASIC_ATTRIBUTES = ["width", "height", "bgcolor", "align", "valign", "background"]

# Real newsletters nest 10-40 levels (tables in tables); past these an inliner is not run.
MAX_DEPTH = 1000
# premailer's parser (libxml2) silently drops everything nested deeper than 256 levels.
PREMAILER_MAX_DEPTH = 200
# Start and end tags in a part: a tree is at most a few levels deeper than it has tags (the
# parser's implied and reopened elements), so this bounds the stack css-inline can need.
MAX_TAGS = 20_000
# Inlining may grow a part to GROWTH_RATIO times its size (or MIN_OUTPUT), never past
# MAX_OUTPUT characters. Real newsletters grow by a third or less.
GROWTH_RATIO = 10
MIN_OUTPUT = 1024 * 1024
MAX_OUTPUT = 32 * 1024 * 1024
# Not run at all when the rules could grow the part past this (or its output bound).
MAX_PREDICTED = 16 * 1024 * 1024
# css-inline's recursive serializer takes under 1 KiB of stack per level: 2 KiB a level for
# 4 levels a tag, plus the thread's own use.
_STACK_BYTES = MAX_TAGS * 4 * 2048 + 16 * 1024 * 1024
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


class InlineLimit(ValueError):
    """The part is over one of the inliner's limits; the message names it."""


def output_limit(size: int) -> int:
    """The most characters the inlined form of a part of size characters may have."""
    return min(max(size * GROWTH_RATIO, MIN_OUTPUT), MAX_OUTPUT)


def check_limits(html: str, inliner: str = "css-inline") -> None:
    """Raise InlineLimit when html is over a limit; cheap (one regex pass) for common markup."""
    max_depth = PREMAILER_MAX_DEPTH if inliner == "premailer" else MAX_DEPTH
    quick = tags(html)
    if quick.count > MAX_TAGS:
        if quick.depth > max_depth:
            raise InlineLimit(f"elements nested deeper than {max_depth:,} levels")
        raise InlineLimit(f"more than {MAX_TAGS:,} tags")
    elements, reopened = quick.starts + 8, 0
    if quick.depth > max_depth:
        # Unclosed <p>, <td> or <li> read deeper than they are: replay the parser's rules.
        full = scan(html, max_depth, 4 * MAX_TAGS)
        if full.depth > max_depth or not full.complete:
            raise InlineLimit(f"elements nested deeper than {max_depth:,} levels")
        elements, reopened = full.elements, full.reopened
    # Past the output bound the result is thrown away; past this it is not even made (the
    # memory would be spent first).
    budget = max(output_limit(len(html)), MAX_PREDICTED) - len(html)
    css = style_text(html, quick.names["style"])
    if growth(html, css, quick.names, elements, reopened, budget) > budget:
        raise InlineLimit(f"the style rules could grow the part past {budget + len(html):,} "
                          f"characters")


def has_style(html: str) -> bool:
    """True when there is a <style> element to inline (otherwise inlining is skipped)."""
    return bool(_STYLE.search(html))


def inline_css(html: str, inliner: str = "css-inline") -> str:
    """html with <style> rules copied into style attributes. Raises on markup it cannot handle."""
    if inliner not in INLINERS:
        raise ValueError(f"unknown CSS inliner {inliner!r}")
    # Placeholders ({{ x }}, *|X|*, ...) go through the inliner as opaque words: premailer
    # URL-encodes them inside attributes otherwise.
    saved: list[str] = []

    def save(m: re.Match) -> str:
        saved.append(m.group(0))
        return f"smtpeterph{len(saved) - 1}x"

    check_limits(html, inliner)
    protected = (_PLACEHOLDER.sub(save, html)
                 if "smtpeterph" not in html and _may_hold_placeholder(html) else html)
    out = _premailer(protected) if inliner == "premailer" else _css_inline(protected)
    if len(out) > output_limit(len(html)):
        raise InlineLimit(f"the inlined part is over {output_limit(len(html)):,} characters")
    if saved:
        out = re.sub(r"smtpeterph(\d+)x", lambda m: saved[int(m.group(1))], out)
    # Both inliners rewrite or drop the doctype; it decides the rendering mode, so keep ours.
    doctype = _DOCTYPE.match(html)
    if doctype:
        theirs = _DOCTYPE.match(out)
        out = doctype.group(0) + (out[theirs.end() :] if theirs else "\n" + out)
    return out


def _css_inline(html: str) -> str:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                # The stack size applies to threads started while it is set: only these.
                old = threading.stack_size(_STACK_BYTES)
                try:
                    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="css-inline")
                    pool.submit(int).result()  # start a thread now, with this stack
                finally:
                    threading.stack_size(old)
                _pool = pool
    return _pool.submit(_CSS_INLINE.inline, html).result()


def _may_hold_placeholder(html: str) -> bool:
    """False only when html has none of the pairs a placeholder starts with ({{ {% *| %%).

    The regex alone looks at every character; str.find jumps between the few "{", "*" and
    "%" of a typical message (measured: bench/README.md). Past a bound, say yes: the regex is
    linear.
    """
    budget = 500
    for first, seconds in (("{", "{%"), ("*", "|"), ("%", "%")):
        i = html.find(first)
        while i >= 0:
            if html[i + 1 : i + 2] in seconds:  # "" (the end) says yes too: safe
                return True
            budget -= 1
            if budget <= 0:
                return True
            i = html.find(first, i + 1)
    return False


def _no_fetch(url: str) -> tuple[None, str]:
    return None, ""  # an @import is left for the reader's mail client, never fetched by us


def _premailer(html: str) -> str:
    import cssutils.util  # imported on use: premailer pulls in lxml and cssutils
    from premailer import Premailer

    # premailer's allow_network covers <link>, but cssutils still fetches @import rules with
    # its module-level default fetcher; cssutils is used by nothing else here.
    cssutils.util._defaultFetcher = _no_fetch

    return Premailer(
        html,
        strip_important=False,
        preserve_handlebar_syntax=True,
        cssutils_logging_level=logging.CRITICAL,
        allow_network=False,
        allow_loading_external_files=False,
        disable_link_rewrites=True,
        disable_basic_attributes=_BASIC_ATTRIBUTES,
        disable_validation=True,
        remove_classes=False,
    ).transform()
