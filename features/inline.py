"""CSS inlining: css-inline by default, premailer on request (CSS_INLINER=premailer).

Both keep @media and other at-rules in a <style> element, keep `!important`, keep MSO
conditional comments and template placeholders, and never fetch a stylesheet or any URL.
"""
from __future__ import annotations

import logging
import re

import css_inline

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

    protected = (_PLACEHOLDER.sub(save, html)
                 if "smtpeterph" not in html and _may_hold_placeholder(html) else html)
    out = _premailer(protected) if inliner == "premailer" else _CSS_INLINE.inline(protected)
    if saved:
        out = re.sub(r"smtpeterph(\d+)x", lambda m: saved[int(m.group(1))], out)
    # Both inliners rewrite or drop the doctype; it decides the rendering mode, so keep ours.
    doctype = _DOCTYPE.match(html)
    if doctype:
        theirs = _DOCTYPE.match(out)
        out = doctype.group(0) + (out[theirs.end() :] if theirs else "\n" + out)
    return out


def _may_hold_placeholder(html: str) -> bool:
    """False only when html has none of the pairs a placeholder starts with ({{ {% *| %%).

    The regex alone scans every character (~0.13 ms for 40 KB); str.find jumps between the
    few "{", "*" and "%" of a typical message. Past a bound, say yes: the regex is linear.
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
