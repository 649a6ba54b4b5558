"""Table tests of the link rules: which hrefs and srcs are rewritten, preventscam, notrack, MSO."""
import pytest

from features.links import Slot, looks_like_url, rewrite_html, rewrite_text, trackable


def rewrite(html, clicks=True, opens=False, preventscam=False):
    """(output with slots shown as {C0} / {O1}, links, images, change kinds)."""
    links, images, changes = [], [""], []
    pieces = rewrite_html(html, links, images, changes, clicks=clicks, opens=opens,
                          preventscam=preventscam)
    if pieces is None:
        return html, links, images, [c.kind for c in changes]
    out = "".join(
        p if isinstance(p, str) else "{{{}{}}}".format("C" if p.kind == "click" else "O", p.index)
        for p in pieces
    )
    return out, links, images, [c.kind for c in changes]


@pytest.mark.parametrize("href", [
    "http://example.com/", "https://example.com/a?b=c", "HTTPS://EXAMPLE.COM/", "HtTp://x.org",
    " https://example.com/padded ", "https://example.com/%E2%82%AC", "https://例え.jp/パス",
    "https://example.com/a(b)c", "https://example.com/it's", "https://user@example.com:8443/x",
])
def test_absolute_http_links_are_rewritten(href):
    quote = '"' if "'" in href else "'"
    html = f"<p><a href={quote}{href}{quote}>go</a></p>"
    out, links, _, _ = rewrite(html)
    assert out == f"<p><a href={quote}{{C0}}{quote}>go</a></p>"
    assert links == [href.strip()]


@pytest.mark.parametrize("href", [
    "mailto:a@example.com", "tel:+3112345678", "sms:+3112345678", "#top", "/relative/path",
    "relative.html", "javascript:alert(1)", "data:text/html,hi", "{{ unsubscribe_url }}",
    "https://example.com/?u={{ user_id }}", "*|ARCHIVE|*", "%%view_online%%", "ftp://example.com/",
    "http://", "https:///nohost", "//example.com/protocol-relative", "",
])
def test_other_links_are_left_alone(href):
    html = f'<a href="{href}">x</a>'
    assert rewrite(html) == (html, [], [""], [])


def test_entities_are_decoded_once_and_never_double_escaped():
    out, links, _, _ = rewrite('<a href="https://x.com/?a=1&amp;b=2&#38;c=3&amp;amp;d">x</a>')
    assert links == ["https://x.com/?a=1&b=2&c=3&amp;d"]
    assert out == '<a href="{C0}">x</a>'


def test_tabs_and_newlines_inside_a_url_are_dropped_as_browsers_do():
    out, links, _, _ = rewrite('<a href="https://example.com/very/\r\n  long?\ta=1">x</a>')
    assert links == ["https://example.com/very/  long?a=1"] and out == '<a href="{C0}">x</a>'


def test_everything_outside_the_value_is_untouched():
    html = ('<!DOCTYPE html>\n<A  CLASS=btn\tHREF = "https://x.com/"  data-x=\'1\'>Go &rarr;</A>'
            "<a href=https://y.com/path?q=1 title=t>y</a><img src='https://i.example/a.png'>")
    out, links, images, _ = rewrite(html, opens=True)
    assert out == ('<!DOCTYPE html>\n<A  CLASS=btn\tHREF = "{C0}"  data-x=\'1\'>Go &rarr;</A>'
                   "<a href={C1} title=t>y</a><img src='{O1}'>"
                   '<img src="{O0}" width="1" height="1" alt="" '
                   'style="display:block;border:0;width:1px;height:1px">')
    assert links == ["https://x.com/", "https://y.com/path?q=1"]
    assert images == ["", "https://i.example/a.png"]


def test_an_unquoted_value_gets_quotes_only_when_the_url_needs_them():
    from features.render import prepare

    from .corpus import CTX, message, part

    raw = message(part("text/html", b"<a href=https://x.com/>x</a>", "utf-8"))
    out = prepare(raw, {"clicktracking": True}).for_recipient(CTX).message
    assert b"<a href=https://t.example/t/c/" in out
    odd = CTX.__class__(**{**CTX.__dict__, "tracking_base_url": "https://t.example/t?x=1/"})
    out = prepare(raw, {"clicktracking": True}).for_recipient(odd).message
    assert b'<a href="https://t.example/t?x=1/c/' in out


def test_area_and_first_href_only():
    out, links, _, _ = rewrite('<map><area shape=rect href="https://a.example/" href="https://b/">'
                               "</map>")
    assert out == '<map><area shape=rect href="{C0}" href="https://b/"></map>'
    assert links == ["https://a.example/"]


def test_data_notrack_is_left_alone_and_the_attribute_removed():
    html = ('<a data-notrack href="https://x.com/">x</a> <a href="https://y.com/" DATA-NOTRACK="">'
            'y</a><img data-notrack src="https://i/a.png">')
    out, links, images, kinds = rewrite(html, opens=True)
    assert out.startswith('<a href="https://x.com/">x</a> <a href="https://y.com/">y</a>'
                          '<img src="https://i/a.png">')
    assert links == [] and images == [""]
    assert kinds.count("notrack") == 3


def test_data_notrack_is_removed_whichever_tracking_rewrites_the_part():
    html = '<a data-notrack href="https://x.com/">x</a><img data-notrack src="https://i/a.png">'
    for clicks, opens in [(True, False), (False, True)]:
        out, links, images, _ = rewrite(html, clicks=clicks, opens=opens)
        assert out.startswith('<a href="https://x.com/">x</a><img src="https://i/a.png">')
        assert links == [] and images == [""]


def test_mso_conditional_vml_buttons_are_tracked():
    html = ('<!--[if mso]><v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" '
            'href="https://x.com/cta?a=1&amp;b=2" style="height:40px"><w:anchorlock/>'
            "<center>Buy now</center></v:roundrect><![endif]-->"
            '<!--[if !mso]><!--><a href="https://x.com/cta?a=1&amp;b=2">Buy now</a>'
            "<!--<![endif]-->")
    out, links, _, _ = rewrite(html)
    assert 'href="{C0}"' in out and 'href="{C1}"' in out
    assert links == ["https://x.com/cta?a=1&b=2"] * 2
    assert out.replace("{C0}", "https://x.com/cta?a=1&amp;b=2").replace(
        "{C1}", "https://x.com/cta?a=1&amp;b=2") == html


def test_comments_scripts_and_attribute_values_hide_links():
    html = ('<!-- <a href="https://hidden.example/">x</a> --><script>var a=\'<a href="https://s/">'
            "'</script><style>a[href=\"https://c/\"]{}</style>"
            '<div title="<a href=\'https://t/\'>"></div><textarea><a href="https://ta/"></textarea>')
    assert rewrite(html) == (html, [], [""], [])


def test_pixel_goes_before_the_last_body_end_or_at_the_end():
    out, _, _, kinds = rewrite("<html><body><p>hi</p></BODY></html>\r\n", clicks=False, opens=True)
    assert out.startswith('<html><body><p>hi</p><img src="{O0}" width="1" height="1" alt=""')
    assert out.endswith("</BODY></html>\r\n") and kinds == ["pixel"]
    out, _, _, _ = rewrite("<p>fragment</p>\n", clicks=False, opens=True)
    assert out.startswith('<p>fragment</p><img src="{O0}"') and out.endswith(">\n")
    # A </body> inside an Outlook-only conditional is a comment to every other reader: the
    # pixel goes before the real one, or at the end, never where only Outlook would load it.
    out, _, _, _ = rewrite("<body><p>x</p><!--[if mso]></body><![endif]--></body>",
                           clicks=False, opens=True)
    assert out.startswith("<body><p>x</p><!--[if mso]></body><![endif]--><img src=")
    assert out.endswith("></body>")
    out, _, _, _ = rewrite("<body><p>x</p><!--[if mso]></body></html><![endif]-->",
                           clicks=False, opens=True)
    assert out.startswith("<body><p>x</p><!--[if mso]></body></html><![endif]--><img src=")
    # A downlevel-revealed block is shown to everyone but Outlook: its </body> counts.
    out, _, _, _ = rewrite("<!--[if !mso]><!--><p>x</p></body><!--<![endif]-->\n",
                           clicks=False, opens=True)
    assert out.startswith('<!--[if !mso]><!--><p>x</p><img src="{O0}"')
    # For every reader but Outlook the conditional is a comment that ends at the first -->,
    # however it is spelled: "<!--[if !mso]><!-- -->" (Stripo and others) reveals what follows
    # to them, so the </body> after its block counts even with no mso block later.
    head = "<head><!--[if !mso]><!-- --><link rel=stylesheet href=f.css><!--<![endif]--></head>"
    out, _, _, _ = rewrite(head + "<body><p>x</p></body></html>", clicks=False, opens=True)
    assert out.startswith(head + '<body><p>x</p><img src="{O0}"')
    assert out.endswith("></body></html>")
    # A comment inside an mso block ends the block for browsers: its </body> is theirs too.
    out, _, _, _ = rewrite("<body><!--[if mso]><!-- x --></body><![endif]-->\n",
                           clicks=False, opens=True)
    assert out.startswith('<body><!--[if mso]><!-- x --><img src="{O0}"')
    # Text cut off inside a tag: the pixel goes before that tag, not into it.
    out, _, _, _ = rewrite('<p>cut</p><p class="x', clicks=False, opens=True)
    assert out.startswith('<p>cut</p><img src="{O0}"') and out.endswith('><p class="x')


def test_images_only_with_openstracking_links_only_with_clicktracking():
    html = '<a href="https://x/">x</a><img src="https://i/a.png">'
    out, links, images, _ = rewrite(html, clicks=False, opens=True)
    assert links == [] and images == ["", "https://i/a.png"] and 'href="https://x/"' in out
    out, links, images, _ = rewrite(html, clicks=True, opens=False)
    assert links == ["https://x/"] and images == [""] and "src=\"https://i/a.png\"" in out


# The preventscam rule: visible text that is a URL or host name keeps its link untracked.
@pytest.mark.parametrize("label, kept", [
    ("https://example.com/path", True), ("http://example.com", True), ("example.com", True),
    ("www.example.com", True), ("WWW.EXAMPLE.COM", True), ("Example.Com/Path?x=1", True),
    ("example.com/", True), ("sub.domain.example.co.uk", True), ("HTTPS://EXAMPLE.COM/", True),
    ("example.com:8080/x", True), ("bücher.de", True), ("ftp://files.example.com", True),
    ("Click here", False), ("Read more", False), ("example", False), ("", False),
    ("www", False), ("example.com and more", False), ("Visit example.com", False),
    ("1.5 million", False), ("v2.0", False),
])
def test_preventscam_label_rule(label, kept):
    assert looks_like_url(label) is kept


@pytest.mark.parametrize("inner, kept", [
    ("https://other.example/", True),  # kept whether or not it matches the href
    ("<b>www.Example.com</b>", True),
    ("  example.com/\n ", True),
    ("example&#46;com", True),
    ("<img src='x.png' alt='example.com'>", False),
    ("Click <b>here</b>", False),
])
def test_preventscam_on_links(inner, kept):
    html = f'<a href="https://example.com/">{inner}</a>'
    out, links, _, kinds = rewrite(html, preventscam=True)
    assert (out == html) is kept
    assert kinds == (["kept"] if kept else ["link"])
    out, links, _, _ = rewrite(html, preventscam=False)
    assert links == ["https://example.com/"]


def test_long_labels_are_no_urls_and_cost_nothing():
    assert looks_like_url("a" * 100_000) is False
    assert looks_like_url("example.com/" + "a" * 3000) is False


def test_trackable():
    assert trackable("https://a.b/") and trackable("HTTP://A")
    assert not trackable("https://a/{{x}}") and not trackable("mailto:x@y")


def test_plain_text_urls():
    links, changes = [], []
    text = ("See https://example.com/a?b=c&d=e. Also (https://example.com/wiki/Foo_(bar)) and\r\n"
            "<https://example.org/x>, mailto:a@b.c, http://{{placeholder}}/x\r\n")
    pieces = rewrite_text(text, links, changes)
    assert links == ["https://example.com/a?b=c&d=e", "https://example.com/wiki/Foo_(bar)",
                     "https://example.org/x"]
    shown = "".join(p if isinstance(p, str) else f"{{C{p.index}}}" for p in pieces)
    assert shown == ("See {C0}. Also ({C1}) and\r\n<{C2}>, mailto:a@b.c, "
                     "http://{{placeholder}}/x\r\n")
    assert all(not p.escape_html for p in pieces if isinstance(p, Slot))
    assert rewrite_text("no links here", [], []) is None


@pytest.mark.parametrize("junk", ["<a ", '<a href="', "<p title='", "<", "<!--", "<img src=x "])
def test_unterminated_markup_is_left_alone(junk):
    # Also the shape that once made the scanner quadratic: every "<a " rescanned the rest.
    html = '<a href="https://x.com/">x</a>' + junk * 20000
    out, links, _, _ = rewrite(html)
    assert links == ["https://x.com/"]
    assert out == '<a href="{C0}">x</a>' + junk * 20000


def test_a_tag_cut_off_by_the_end_is_no_link():
    assert rewrite('<p>x</p><a href="https://x.com/"') == (
        '<p>x</p><a href="https://x.com/"', [], [""], [])


@pytest.mark.parametrize("href, url", [
    # Legacy entity names without ";" before "=" or a letter/digit are no references in an
    # attribute value (HTML spec): browsers follow "&para=1", not "¶=1".
    ("https://x.com/?a=1&para=2&times=3&copy=4", "https://x.com/?a=1&para=2&times=3&copy=4"),
    ("https://x.com/?a=1&amp;para=2", "https://x.com/?a=1&para=2"),
    ("https://x.com/?lang=en&notit;", "https://x.com/?lang=en&notit;"),
    ("https://x.com/?a&copyx", "https://x.com/?a&copyx"),
    ("https://x.com/?a&copy-x", "https://x.com/?a\u00a9-x"),
    ("https://x.com/&#x2F;a&#47;b", "https://x.com//a/b"),
    ("https:&#x2F;&#x2F;x.com/?q=&lt;", "https://x.com/?q=<"),
])
def test_entities_in_hrefs_are_decoded_as_browsers_decode_attribute_values(href, url):
    out, links, _, _ = rewrite(f'<a href="{href}">x</a>')
    assert links == [url] and out == '<a href="{C0}">x</a>'


@pytest.mark.parametrize("text", [
    "Your page: https://example.com/?u={{ user_id }} bye",
    "Your page: https://example.com/?u={{user_id}}",
    "Archive: https://example.com/a/*|ARCHIVE_ID|*/",
    "See <https://example.com/?id=[[id]]>.",
    "Go https://example.com/%%id%%",
])
def test_plain_text_urls_running_into_placeholders_are_left_whole(text):
    links = []
    assert rewrite_text(text, links, []) is None and links == []
    # The same text next to a plain URL: only the plain one is tracked.
    pieces = rewrite_text(text + " and https://example.org/x", links, [])
    assert links == ["https://example.org/x"] and pieces[0] == text + " and "


def test_links_and_images_past_the_limits_go_out_untracked():
    from features.links import MAX_TRACKED, MAX_URL

    many = "".join(f'<a href="https://x.com/{i}">l{i}</a><img src="https://i.com/{i}.png">'
                   for i in range(MAX_TRACKED + 5))
    out, links, images, kinds = rewrite(many, opens=True)
    assert links == [f"https://x.com/{i}" for i in range(MAX_TRACKED)]
    assert images == [""] + [f"https://i.com/{i}.png" for i in range(MAX_TRACKED)]
    assert kinds.count("untracked") == 10
    assert out.endswith(f'<a href="https://x.com/{MAX_TRACKED + 4}">l{MAX_TRACKED + 4}</a>'
                        f'<img src="https://i.com/{MAX_TRACKED + 4}.png">'
                        '<img src="{O0}" width="1" height="1" alt="" '
                        'style="display:block;border:0;width:1px;height:1px">')
    long_url = "https://x.com/" + "a" * MAX_URL
    html = f'<a href="{long_url}">x</a> <a href="https://x.com/ok">y</a>'
    assert rewrite(html) == ('<a href="' + long_url + '">x</a> <a href="{C0}">y</a>',
                             ["https://x.com/ok"], [""], ["untracked", "link"])
    text = " ".join(f"https://x.com/{i}" for i in range(MAX_TRACKED + 1))
    links = []
    pieces = rewrite_text(text, links, [])
    assert len(links) == MAX_TRACKED and pieces[-1] == f" https://x.com/{MAX_TRACKED}"


def test_a_render_says_when_links_were_left_untracked():
    from features.links import MAX_TRACKED
    from features.render import prepare

    from .corpus import CTX, decoded, message, part, parts_of

    html = "".join(f'<a href="https://x.com/{i}">l</a>' for i in range(MAX_TRACKED + 2))
    prepared = prepare(message(part("text/html", html.encode(), "utf-8")),
                       {"clicktracking": True})
    out = prepared.for_recipient(CTX)
    assert len(prepared.links) == MAX_TRACKED
    assert any("2 link(s) or image(s) left untracked" in w for w in out.warnings)
    (p,) = parts_of(out.message)
    body = decoded(p)
    assert body.count('<a href="https://t.example/t/c/') == MAX_TRACKED
    assert body.endswith(f'<a href="https://x.com/{MAX_TRACKED}">l</a>'
                         f'<a href="https://x.com/{MAX_TRACKED + 1}">l</a>')
