"""Property tests: render never raises, whatever the bytes, and changes nothing it should not."""
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from features import mime
from features.render import prepare, render

from .corpus import CTX, decoded, encode, lines_ok, message, multipart, part, parts_of, resolve
from .test_render import newsletter_mixed

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
FEATURES = st.fixed_dictionaries({
    name: st.booleans()
    for name in ("clicktracking", "openstracking", "preventscam", "bouncetracking", "inlinecss")
})


@SETTINGS
@given(raw=st.binary(max_size=3000), features=FEATURES)
def test_render_never_raises_on_random_bytes(raw, features):
    out = render(raw, features, CTX)
    assert isinstance(out.message, bytes) and isinstance(out.warnings, list)
    assert_no_crash(out.warnings)


def assert_no_crash(warnings: list[str]) -> None:
    """prepare() and for_recipient() catch everything; their catch-alls must never be needed.

    Hostile bytes get a warning about one part, never an exception that costs the whole message
    its tracking.
    """
    assert not [w for w in warnings
                if w.startswith(("message left unchanged", "render failed"))], warnings


SEEDS = [
    newsletter_mixed(),
    message(part("text/html", b'<html><body><a href="https://e.x/?a=1&amp;b=2">x</a>'
                 b"<style>p{color:red}</style></body></html>", "utf-8", "8bit")),
    message(multipart("alternative", "b", part("text/plain", b"go https://e.x/", "us-ascii"),
                      part("text/html", encode('<a href="https://e.x/">é</a>', "iso-8859-1",
                                               "quoted-printable"), "iso-8859-1",
                           "quoted-printable"))),
]


@st.composite
def mutated(draw):
    raw = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "dup"]))
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[at] = draw(st.integers(0, 255))
        elif op == "delete":
            del raw[at : at + draw(st.integers(1, 200))]
        elif op == "insert":
            raw[at:at] = draw(st.sampled_from([
                b"\r\n", b"\n--mix-b\r\n", b"--alt-b--", b"<a href=", b'"', b"=", b"=\r\n",
                b"<!--", b"-->", b"<!--[if mso]>", b"\xff\xfe", b"&amp;", b"\x00",
                b"Content-Type: multipart/mixed; boundary=z\r\n", b"charset=utf-16",
                b"charset=base64", b"charset=zlib", b"charset=\"x-unknown\"",
                b"Content-Transfer-Encoding: base64\r\n",
            ]))
        elif op == "truncate":
            del raw[at:]
        elif op == "dup":
            raw[at:at] = raw[at : at + draw(st.integers(1, 300))]
    return bytes(raw)


@SETTINGS
@given(raw=mutated(), features=FEATURES, inliner=st.sampled_from(["css-inline", "premailer"]))
def test_render_never_raises_on_mutated_messages(raw, features, inliner):
    prepared = prepare(raw, features, inliner)
    out = prepared.for_recipient(CTX)
    assert isinstance(out.message, bytes)
    assert_no_crash(out.warnings)
    # Parts that are neither rewritten HTML nor plain text leave as they came.
    leaves_in, _ = mime.leaves(raw)
    if not out.warnings:
        for leaf in leaves_in:
            if leaf.content_type not in ("text/html", "text/plain") and leaf.end > leaf.body_start:
                assert raw[leaf.header_start : leaf.end] in out.message


URL_PATH = st.text(alphabet="abcxyz0129/?=.-_~%", max_size=30)
FRAGMENTS = st.one_of(
    st.text(alphabet="abc xyz éü€\n\t", max_size=20),
    st.sampled_from([
        "&amp;", "&nbsp;", "&#233;", "&", "<", "<<", "< a", "<br/>", "<p class=x>", "</p>",
        "</a>", "<a>", "<img>", "<!-- c <a href='https://hidden/'> -->", "<!--[if mso]>",
        "<![endif]-->", "<!--[if !mso]><!-->", "<!--<![endif]-->", "<style>a{}</style>",
        "<script>if (a<b) {}</script>", "</body>", "<BODY>", "<title>x</title>",
        '<div title="<a href=x>">', "<v:roundrect>", "</v:roundrect>", "<area>",
    ]),
    st.builds(lambda p, q, label: f'<a href={q}https://example.com/{p}{q}>{label}</a>',
              URL_PATH, st.sampled_from(['"', "'", ""]).filter(lambda q: True),
              st.sampled_from(["go", "example.com", "https://x.org/", "<b>b</b>", ""])),
    st.builds(lambda p: f'<img src="http://img.example/{p}" alt="">', URL_PATH),
    st.builds(lambda p: f'<A HREF="HTTPS://EXAMPLE.COM/{p}" data-x=1>y</A>', URL_PATH),
    st.builds(lambda p: f'<v:roundrect href="https://vml.example/{p}">b</v:roundrect>', URL_PATH),
    st.builds(lambda p: f'<a href="mailto:{p}@x">m</a>', URL_PATH),
)


@SETTINGS
@given(
    fragments=st.lists(FRAGMENTS, max_size=25),
    charset=st.sampled_from(["utf-8", "windows-1252", "iso-8859-15"]),
    cte=st.sampled_from(["8bit", "quoted-printable", "base64"]),
    nl=st.sampled_from(["\r\n", "\n"]),
    clicks=st.booleans(), opens=st.booleans(), scam=st.booleans(),
)
def test_rendered_html_decodes_to_the_input_outside_the_rewritten_values(
    fragments, charset, cte, nl, clicks, opens, scam
):
    html = "".join(fragments)
    # Unquoted values end at whitespace; keep generated unquoted hrefs well-formed.
    text_part = part("text/plain", b"unchanged https://example.com/t", "us-ascii", "7bit")
    html_part = part("text/html", encode(html, charset, cte, nl), charset, cte)
    raw = message(multipart("alternative", "bb", text_part, html_part))
    if nl == "\n":
        raw = raw.replace(b"\r\n", b"\n")
    features = {"clicktracking": clicks, "openstracking": opens, "preventscam": scam}
    prepared = prepare(raw, features)
    out = prepared.for_recipient(CTX)
    if not (clicks or opens):
        assert out.message == raw and out.warnings == []
        return
    text, html_out = parts_of(out.message)
    assert resolve(decoded(html_out), prepared) == html.replace("\n", nl)
    assert html_out.get_content_charset() == charset
    if out.warnings:  # many links on one 8bit line: the one allowed change
        assert [w.split(": ", 1)[1] for w in out.warnings] == [
            "a line over 998 octets, now quoted-printable"]
        assert cte == "8bit" and html_out["Content-Transfer-Encoding"] == "quoted-printable"
    else:
        assert html_out["Content-Transfer-Encoding"] == cte
    sep = b"\r\n" if nl == "\r\n" else b"\n"
    if scam or not clicks:  # the text part is not to be changed: byte-identical
        assert text_part.replace(b"\r\n", sep) in out.message
    else:
        assert resolve(decoded(text), prepared, escape=False) == "unchanged https://example.com/t"
    lines_ok(out.message)


# Bytes that exercise every branch of quoted-printable encoding: "=", controls (NUL marks a
# URL's place), 8-bit, spaces and tabs at line ends, long runs that must be cut.
QP_BYTES = st.lists(st.sampled_from([
    b"a", b" ", b"\t", b"=", b"\0", b".", b"\x7f", b"\x01", b"\xc3\xa9", b"\xff", b"=00",
    b"x" * 74, b"y" * 80, b"\r\n", b"\n", b"\r", bytes(range(256)),
]), max_size=40).map(b"".join)


@SETTINGS
@given(data=QP_BYTES, newline=st.sampled_from([b"\r\n", b"\n"]), lf_lines=st.booleans())
def test_quoted_printable_decodes_to_its_input_in_lines_of_at_most_76(data, newline, lf_lines):
    import binascii

    if lf_lines:  # LF-only text to be sent with the part's newline (an inliner's output)
        data = data.replace(b"\r", b"")
        out = mime.qp_encode(data, newline, lf_lines=True)
        data = data.replace(b"\n", newline)
    else:
        out = mime.qp_encode(data, newline)
    assert binascii.a2b_qp(out) == data
    assert out.isascii()
    lines = out.split(newline)
    # Bare CRs and LFs (not the part's own line end) are escaped, never raw inside a line.
    assert all(len(line) <= 76 and b"\r" not in line and b"\n" not in line
               for line in lines), out
    assert not any(line.endswith((b" ", b"\t")) for line in lines), out
    assert b"." not in lines, out  # a lone dot would end an SMTP DATA that is not dot-stuffed


def _attr_reference(attrs: str, wanted: str):
    """The first attribute called wanted, by walking every attribute token (the slow way)."""
    from features.links import _ATTR

    for m in _ATTR.finditer(attrs):
        if m.group("name").lower() == wanted:
            if m.group("value") is None:
                return m.start(), m.end(), ""
            return m.start(2), m.end(2), m.group("value")
    return None


ATTR_TOKENS = st.lists(st.sampled_from([
    " ", "\t", "\n", "\u00a0", "\u2028", '"', "'", "=", "/", ">", "<", "href", "HREF", "hReF",
    "src", "SRC", "\u017frc", "hrefx", "xhref", "a", '="v"', "='v'", "=v", " = ", '"x y"',
    "data-notrack", "-",
]), max_size=16).map("".join)


@SETTINGS
@given(attrs=ATTR_TOKENS, wanted=st.sampled_from(["href", "src"]))
def test_attribute_lookup_matches_a_walk_over_every_attribute(attrs, wanted):
    from features.links import _attr

    expected = _attr_reference(attrs, wanted)
    if expected is not None:
        expected = (expected[0] + 3, expected[1] + 3, expected[2])
    # The lookup is bounded to the tag's attributes: what lies around them is never looked at.
    text = '<a ' + attrs + ' href="after" src="after">'
    assert _attr(text, 3, 3 + len(attrs), wanted) == expected


PLAIN_TOKENS = st.sampled_from([
    "https://e.x/a", "http://e.x/b?c=d&e=f", "https://e.x/" + "p" * 80, ".", ",", ")", " ",
    "\t", "\n", "=", "=00", "\x00", "\u00e9", "word", "x" * 74, "y" * 76, "z" * 150, "{{x}}",
])


@SETTINGS
@example(tokens=["https://e.x/a", " more"], cte="quoted-printable", nl="\r\n", url_length=76,
         ids=(1234, 5678))  # a tracking URL of exactly 76 with text after it
@example(tokens=["https://e.x/a", " ", "z" * 146, "."], cte="quoted-printable", nl="\n",
         url_length=60, ids=(1, 2))  # a long line whose cut leaves its final "." alone
@example(tokens=["x" * 74, " ", "\n"], cte="quoted-printable", nl="\r\n", url_length=72,
         ids=(0, 0))  # the input's own space at column 75 (b2a_qp made that line 77 octets)
@given(
    tokens=st.lists(PLAIN_TOKENS, min_size=1, max_size=25),
    cte=st.sampled_from(["7bit", "8bit", "quoted-printable", "base64"]),
    nl=st.sampled_from(["\r\n", "\n"]),
    url_length=st.one_of(st.integers(72, 80), st.integers(40, 160)),
    ids=st.tuples(st.integers(0, 2**40), st.integers(0, 2**40)),
)
def test_plain_text_links_spliced_into_any_encoding_decode_to_the_input(
    tokens, cte, nl, url_length, ids
):
    # Tracking URLs of many lengths (around 76 most often) next to dots, spaces, "=", NULs and
    # lines of exactly 76: the part decodes to its input and keeps the line rules.
    from dataclasses import replace

    text = "".join(tokens)
    length = url_length - len(token_for(replace(CTX, message_id=ids[0], recipient_id=ids[1]),
                                        0, "")) - 2
    base = "https://t.example/" + "b" * max(length - 19, 0) + "/"
    raw = message(part("text/plain", encode(text, "utf-8", cte, nl), "utf-8", cte))
    ctx = replace(CTX, tracking_base_url=base, message_id=ids[0], recipient_id=ids[1])
    prepared = prepare(raw, {"clicktracking": True}, tracking_base_url=base)
    out = prepared.for_recipient(ctx)
    assert_no_crash(out.warnings)
    (p,) = parts_of(out.message)
    body = p.get_payload(decode=True).decode("utf-8")
    expected = text.replace("\n", nl)
    for index, url in enumerate(prepared.links):
        body = body.replace(base + "c/" + token_for(ctx, index, url), url, 1)
    assert body == expected
    lines_ok(out.message)
    if p["Content-Transfer-Encoding"] == "quoted-printable":
        lines = p.get_payload(decode=False).replace("\r\n", "\n").split("\n")
        assert "." not in lines and not any(line.endswith((" ", "\t")) for line in lines)


def token_for(ctx, index: int, url: str) -> str:
    from features.tokens import CLICK, make_token

    return make_token(ctx.tracking_key, CLICK, ctx.message_id, ctx.recipient_id, index, url)


@SETTINGS
@given(raw=mutated(), features=FEATURES)
def test_the_click_endpoint_finds_the_links_the_render_made(raw, features):
    # The endpoints look a token's index up in link_lists() (no inlining, no encoding): it must
    # give the rendered message's lists, inlined or not. (premailer's serializer re-escapes
    # hrefs with spaces or 8-bit characters: such a link then answers 404, by its URL check.)
    from features.render import link_lists

    prepared = prepare(raw, features)
    # An HTML parser (css-inline's) turns NUL into U+FFFD; the scanner keeps it. Only the
    # character differs, never the index, and such a link answers 404 by the token's URL check.
    # (Delivered mail has its lists stored, so this fallback serves older mail only.)
    assert nul_as_parsed(link_lists(raw, features)) == nul_as_parsed(
        (prepared.links, prepared.images))


def nul_as_parsed(lists: tuple[list[str], list[str]]) -> tuple[list[str], list[str]]:
    return tuple([url.replace("\x00", "\ufffd") for url in urls] for urls in lists)


@SETTINGS
@given(fragments=st.lists(FRAGMENTS, max_size=25), style=st.sampled_from([
    "", "<style>a { color: red; } img { border: 0; }</style>",
    "<style>* { margin: 0 } @media (max-width: 600px) { a { color: blue !important } }</style>",
]))
def test_inlining_moves_no_link_and_changes_no_url(fragments, style):
    from features.render import link_lists

    html = "<html><head>" + style + "</head><body>" + "".join(fragments) + "</body></html>"
    raw = message(part("text/html", html.encode(), "utf-8", "8bit"))
    features = {"clicktracking": True, "openstracking": True, "inlinecss": True}
    prepared = prepare(raw, features)
    assert link_lists(raw, features) == (prepared.links, prepared.images)


def test_the_bench_newsletters_give_the_same_links_to_the_click_endpoint():
    import sys
    from pathlib import Path

    from features.render import link_lists

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    from newsletters import message as bench_message
    from newsletters import newsletter

    features = {"clicktracking": True, "openstracking": True, "preventscam": True,
                "inlinecss": True}
    for size, links, images in [(10, 30, 6), (40, 70, 14), (120, 150, 30)]:
        raw = bench_message(newsletter(size, links, images))
        prepared = prepare(raw, features)
        assert len(prepared.links) > links // 2
        assert link_lists(raw, features) == (prepared.links, prepared.images)
