"""Both CSS inliners pass the same fidelity tests (css-inline by default, premailer on request)."""
import http.server
import threading

import pytest

from features.inline import InlineLimit, inline_css
from features.render import prepare

from .corpus import (
    CTX,
    css_bomb,
    decoded,
    deep_nesting,
    encode,
    html_message,
    message,
    part,
    parts_of,
)

INLINERS = ["css-inline", "premailer"]
DOC = (
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
    '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
    '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
    "<style>p { color: red; } td.cell { padding: 4px; } "
    "@media only screen and (max-width: 600px) { td.cell { padding: 1px !important; } }</style>"
    "</head>\n<body>\n<table><tr><td class=\"cell\"><p>Hello {{ first_name }} *|FNAME|*</p>\n"
    '<a href="https://example.com/?u={{ user_id }}&amp;x=1">templated</a>\n'
    '<a href="https://example.com/?a=1&amp;b=2">real</a>\n'
    '<img src="https://img.example/s.png" width="1" height="1" alt="">\n'
    '<!--[if mso]><v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" '
    'href="https://example.com/vml" style="height:40px"><center>Go</center></v:roundrect>'
    "<![endif]--></td></tr></table></body></html>"
)


@pytest.mark.parametrize("inliner", INLINERS)
def test_rules_are_inlined_and_media_queries_kept(inliner):
    out = inline_css(DOC, inliner)
    assert 'style="color' in out and "red" in out
    assert "@media only screen and (max-width: 600px)" in out.replace(":600px", ": 600px")
    assert "!important" in out  # mobile overrides keep working
    assert "<style" in out


@pytest.mark.parametrize("inliner", INLINERS)
def test_doctype_mso_comments_and_placeholders_are_kept(inliner):
    out = inline_css(DOC, inliner)
    assert out.startswith(DOC.split("\n")[0])
    assert "<!--[if mso]>" in out and "<![endif]-->" in out
    assert 'href="https://example.com/vml"' in out
    assert "{{ first_name }}" in out and "*|FNAME|*" in out
    assert "?u={{ user_id }}&amp;x=1" in out
    assert 'height="1"' in out


@pytest.mark.parametrize("inliner", INLINERS)
def test_render_with_inlining_tracks_what_the_inliner_kept(inliner):
    raw = message(part("text/html", DOC.encode(), "utf-8", "8bit"))
    prepared = prepare(raw, {"inlinecss": True, "clicktracking": True, "openstracking": True},
                       inliner=inliner)
    out = prepared.for_recipient(CTX)
    assert out.warnings == []
    # Entities decoded once; the templated link is left for the sender's own system.
    assert prepared.links == ["https://example.com/?a=1&b=2", "https://example.com/vml"]
    assert prepared.images == ["", "https://img.example/s.png"]
    (p,) = parts_of(out.message)
    assert "?u={{ user_id }}&amp;x=1" in decoded(p)
    assert [c.kind for c in prepared.changes][0] == "css"


@pytest.mark.parametrize("inliner", INLINERS)
def test_inlined_parts_keep_crlf_line_ends_and_plain_quoted_printable(inliner):
    html = ("<html><head><style>p{color:red}</style></head>\n<body>\n<p>a\nb</p>\n"
            "</body></html>\n")
    raw = message(part("text/html", encode(html, "utf-8", "quoted-printable"), "utf-8",
                       "quoted-printable"))
    out = prepare(raw, {"inlinecss": True}, inliner=inliner).for_recipient(CTX).message
    (p,) = parts_of(out)
    text = decoded(p)
    assert "\r\n<body>\r\n" in text and "\n" not in text.replace("\r\n", "")
    assert b"=0A" not in out and b"=0D" not in out


@pytest.mark.parametrize("inliner", INLINERS)
def test_no_style_element_means_no_change(inliner):
    raw = message(part("text/html", b"<p>no styles here, &nbsp;</p>", "us-ascii", "7bit"))
    assert prepare(raw, {"inlinecss": True}, inliner=inliner).for_recipient(CTX).message == raw


@pytest.mark.parametrize("inliner", INLINERS)
def test_local_files_are_never_read(inliner, tmp_path):
    secret = tmp_path / "secret.css"
    secret.write_text("p { color: #5ec7e7; }")
    html = (f'<html><head><link rel="stylesheet" href="{secret}">'
            f'<link rel="stylesheet" href="file://{secret}">'
            f'<style>@import url("file://{secret}"); @import "{secret}"; a {{ color: red; }}'
            "</style></head><body><p>x</p><a>y</a></body></html>")
    out = inline_css(html, inliner)
    assert "5ec7e7" not in out and "red" in out


@pytest.mark.parametrize("inliner", INLINERS)
def test_nothing_is_ever_fetched(inliner):
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            body = b"p { color: green; }"
            self.send_response(200)
            self.send_header("Content-Type", "text/css")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        html = (f'<html><head><link rel="stylesheet" href="{base}/a.css">'
                f'<style>@import url("{base}/b.css"); p {{ color: red; }}</style></head>'
                f'<body><p style="background: url({base}/c.png)">x</p></body></html>')
        out = inline_css(html, inliner)
    finally:
        server.shutdown()
        server.server_close()
    assert hits == []
    assert "green" not in out and "red" in out


def test_an_unknown_inliner_is_refused_and_render_says_so():
    with pytest.raises(ValueError):
        inline_css("<style>p{}</style>", "nope")
    raw = message(part("text/html", b"<style>p{color:red}</style><p>x</p>", "utf-8"))
    out = prepare(raw, {"inlinecss": True}, inliner="nope").for_recipient(CTX)
    assert out.message == raw and any("CSS not inlined" in w for w in out.warnings)


@pytest.mark.parametrize("html, expected", [
    ("<p>{{ name }}</p>", True), ("{% if x %}", True), ("*|FNAME|*", True), ("%%NAME%%", True),
    ("<style>p { color: red; width: 100%; }</style><p>5 * 3</p>", False),
    ("a {", True),  # a "{" at the very end: cannot rule it out, so the regex runs
    ("{ " * 600, True),  # past the bound the regex decides (it is linear)
])
def test_placeholder_prefilter_never_skips_a_placeholder(html, expected):
    from features.inline import _PLACEHOLDER, _may_hold_placeholder

    assert _may_hold_placeholder(html) is expected
    if _PLACEHOLDER.search(html):
        assert _may_hold_placeholder(html)


def test_deep_nesting_is_not_inlined_and_the_warning_names_the_limit():
    # 1,500 levels: css-inline copes, but the part is past the depth bound (real newsletters
    # nest a few dozen levels); the 12,000 levels crashed the process outright.
    raw = html_message(deep_nesting(1_500))
    out = prepare(raw, {"inlinecss": True}).for_recipient(CTX)
    assert out.message == raw
    assert any("CSS not inlined" in w and "1,000 levels" in w for w in out.warnings), out.warnings


def test_unclosed_paragraphs_and_cells_are_not_mistaken_for_depth():
    # Sloppy markup (no </p>, </td>, </li>) reads 3,000 deep to a naive count; it is flat.
    html = ("<style>p { color: red; }</style><table>"
            + "<tr><td><p>cell<li>item" * 1_000 + "</table>")
    out = inline_css(html)
    assert out.count('style="color: red;"') == 1_000


def test_the_deepest_tree_within_the_tag_limit_does_not_crash_the_process():
    # The quick depth count is fooled by stray end tags ("<div></x>": 9,900 real levels, 0 by
    # the count); css-inline then runs on its own thread, whose stack holds any tree that
    # MAX_TAGS tags can build. Run in a child process: a crash is no exception.
    import subprocess
    import sys

    code = ("from tests.features.corpus import deep_nesting\n"
            "from features.inline import inline_css\n"
            "out = inline_css(deep_nesting(9_900, tag='div></x', close=False))\n"
            "print(out.count('<div'))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["9900"]


def test_rules_that_would_multiply_the_part_are_not_even_run():
    # 3,000 elements x 150 properties of 50 characters: 22 MB from 24 KB.
    raw = html_message(css_bomb(elements=3_000))
    out = prepare(raw, {"inlinecss": True}).for_recipient(CTX)
    assert out.message == raw
    assert any("CSS not inlined" in w and "could grow the part past 16,777,216" in w
               for w in out.warnings), out.warnings


def test_an_inlined_part_over_the_output_bound_is_thrown_away():
    # 1,000 elements: 7 MB predicted (run), 7 MB made, over the 1 MiB a small part may reach.
    raw = html_message(css_bomb(elements=1_000))
    out = prepare(raw, {"inlinecss": True}).for_recipient(CTX)
    assert out.message == raw
    assert any("CSS not inlined" in w and "inlined part is over 1,048,576" in w
               for w in out.warnings), out.warnings


def test_premailer_never_drops_what_is_nested_past_its_parser_limit():
    # libxml2 silently drops everything below 256 levels: the link, and all that follows.
    with pytest.raises(InlineLimit, match="200 levels"):
        inline_css(deep_nesting(300), "premailer")
    assert "https://example.com/deep" in inline_css(deep_nesting(150), "premailer")


def test_a_real_newsletter_is_far_inside_every_limit():
    import sys
    from pathlib import Path

    from features.htmlscan import growth, style_text, tags
    from features.inline import MAX_DEPTH, MAX_PREDICTED

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from newsletters import newsletter

    for size, links, images in [(10, 30, 6), (40, 70, 14), (120, 150, 30)]:
        html = newsletter(size, links, images)
        found = tags(html)
        assert found.depth <= 20 < MAX_DEPTH
        css = style_text(html, found.names["style"])
        assert growth(html, css, found.names, found.starts + 8) < MAX_PREDICTED // 4
        assert len(inline_css(html)) < 1.5 * len(html)
