"""The MIME side of render: structure kept, untouched bytes identical, charsets and encodings."""
import pytest

from features import mime
from features.render import prepare, render

from .corpus import (
    ALL,
    CTX,
    TRACK_URL,
    TRACKING,
    decoded,
    encode,
    lines_ok,
    message,
    multipart,
    part,
    parts_of,
    resolve,
)

HTML = ('<html><head><title>t</title></head><body><p>Caf\u00e9 &amp; more '
        '<a href="https://example.com/a?x=1&amp;y=2">read</a> '
        '<img src="https://img.example/a.png" alt=""></p></body></html>\n')
TEXT = "Hello,\nsee https://example.com/plain?x=1 for more.\nBye\n"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8


def newsletter_mixed() -> bytes:
    alt = multipart(
        "alternative", "alt-b",
        part("text/plain", encode(TEXT, "utf-8", "quoted-printable"), "utf-8", "quoted-printable"),
        multipart(
            "related", "rel-b",
            part("text/html", encode(HTML, "utf-8", "quoted-printable"), "utf-8",
                 "quoted-printable"),
            part("image/png", encode("PNGDATA" * 40, "ascii", "base64"), None, "base64",
                 "Content-ID: <logo>\r\n"),
            params='; type="text/html"',
        ),
    )
    inner = message(part("text/html", HTML.encode("utf-8"), "utf-8", "8bit"))
    return message(multipart(
        "mixed", "mix-b", alt,
        part("application/pdf", encode(PDF.decode("latin-1"), "latin-1", "base64"), None,
             "base64", 'Content-Disposition: attachment; filename="a.pdf"\r\n'),
        part("text/html", HTML.encode("utf-8"), "utf-8", "8bit",
             'Content-Disposition: attachment; filename="page.html"\r\n'),
        part("message/rfc822", inner),
    ))


def untouched_leaves(raw: bytes):
    leaves, _ = mime.leaves(raw)
    return [raw[leaf.header_start:leaf.end] for leaf in leaves
            if leaf.attachment or leaf.content_type not in ("text/html", "text/plain")]


def test_untouched_parts_are_byte_identical_and_structure_is_kept():
    raw = newsletter_mixed()
    prepared = prepare(raw, TRACKING)
    out = prepared.for_recipient(CTX)
    assert out.warnings == []
    assert untouched_leaves(out.message) == untouched_leaves(raw)
    assert len(mime.leaves(out.message)[0]) == len(mime.leaves(raw)[0])
    # The headers of the message are the same bytes.
    assert out.message.split(b"\r\n\r\n")[0] == raw.split(b"\r\n\r\n")[0]
    # The attached message and the attached .html file keep their links.
    assert out.message.count(b'href="https://example.com/a?x=1&amp;y=2"') == 2
    lines_ok(out.message)


def test_changed_parts_decode_to_the_input_outside_the_rewritten_values():
    raw = newsletter_mixed()
    prepared = prepare(raw, TRACKING)
    out = prepared.for_recipient(CTX).message
    text, html = [p for p in parts_of(out) if p.get_content_maintype() == "text"][:2]
    assert resolve(decoded(html), prepared) == HTML.replace("\n", "\r\n")
    assert resolve(decoded(text), prepared, escape=False) == TEXT.replace("\n", "\r\n")
    assert prepared.links == ["https://example.com/plain?x=1", "https://example.com/a?x=1&y=2"]
    assert prepared.images == ["", "https://img.example/a.png"]
    # Same charset, same transfer encoding, same part headers.
    assert html["Content-Transfer-Encoding"] == "quoted-printable"
    assert html.get_content_charset() == "utf-8"


def test_without_features_the_message_is_unchanged_but_for_smtpeter_headers():
    raw = newsletter_mixed()
    with_header = raw.replace(b"MIME-Version", b"X-SMTPeter-Tags: a,b\r\nMIME-Version", 1)
    out = render(with_header, {}, CTX)
    assert out.message == raw and out.envelope_sender == "sender@example.com"


def test_bouncetracking_sets_a_verp_sender_and_keeps_the_null_sender():
    from dataclasses import replace

    from features.tokens import parse_verp

    out = render(message(part("text/plain", b"hi", "us-ascii")), {"bouncetracking": True}, CTX)
    assert out.envelope_sender.endswith("@bounces.example")
    assert parse_verp(CTX.verp_key, out.envelope_sender, "bounces.example") == (1234, 5678)
    null = render(b"Subject: x\r\n\r\nhi", {"bouncetracking": True}, replace(CTX, mail_from=""))
    assert null.envelope_sender == ""


CHARSETS = [
    ("utf-8", "Grüße — 你好 ☃"),
    ("iso-8859-1", "Grüße aus Köln"),
    ("iso-8859-15", "Prix: 5 € à Paris"),
    ("windows-1252", "“Smart quotes” – 5 €"),
    ("windows-1251", "Привет, мир"),
    ("koi8-r", "Привет, мир"),
    ("gb2312", "你好世界"),
    ("big5", "你好世界"),
    ("shift_jis", "こんにちは世界"),
    ("euc-kr", "안녕하세요"),
    ("iso-2022-jp", "こんにちは世界"),
    ("us-ascii", "plain ascii"),
]


@pytest.mark.parametrize("charset, words", CHARSETS)
@pytest.mark.parametrize("cte", ["8bit", "quoted-printable", "base64"])
def test_charsets_and_transfer_encodings_are_kept(charset, words, cte):
    html = (f'<html><body><p>{words}</p><a href="https://example.com/x?a=1&amp;b=2">{words}</a>'
            f"<p>{words}</p></body></html>")
    if charset == "iso-2022-jp" and cte == "8bit":
        cte = "7bit"
    raw = message(part("text/html", encode(html, charset, cte), charset, cte))
    prepared = prepare(raw, TRACKING)
    out = prepared.for_recipient(CTX)
    assert out.warnings == []
    (p,) = parts_of(out.message)
    assert p.get_content_charset() == charset and p["Content-Transfer-Encoding"] == cte
    assert resolve(decoded(p), prepared) == html
    assert prepared.links == ["https://example.com/x?a=1&b=2"]
    # Header block byte-identical.
    assert out.message.split(b"\r\n\r\n")[0] == raw.split(b"\r\n\r\n")[0]
    lines_ok(out.message)


def test_quoted_printable_lines_stay_within_76_with_long_urls():
    long_url = "https://example.com/" + "x" * 300 + "?q=" + "=" * 50
    html = "".join(f'<a href="{long_url}{i}">l</a>' for i in range(30)) + "é" * 500
    raw = message(part("text/html", encode(html, "utf-8", "quoted-printable"), "utf-8",
                       "quoted-printable"))
    ctx_long = CTX.__class__(**{**CTX.__dict__, "tracking_base_url": "https://t.example/t/"})
    prepared = prepare(raw, TRACKING)
    out = prepared.for_recipient(ctx_long)
    lines_ok(out.message)
    (p,) = parts_of(out.message)
    assert resolve(decoded(p), prepared) == html
    assert prepared.links == [f"{long_url}{i}" for i in range(30)]


@pytest.mark.parametrize("after", [".\nBye\n", ".", ".\n"])
def test_no_lone_dot_line_after_a_url_in_quoted_printable(after):
    # Each tracking URL sits on a line of its own; the text after it starts a new line, and a
    # "." alone there would end DATA early at a relay that forgot to dot-stuff.
    text = "See https://example.com/a" + after
    raw = message(part("text/plain", encode(text, "utf-8", "quoted-printable"), "utf-8",
                       "quoted-printable"))
    prepared = prepare(raw, {"clicktracking": True})
    out = prepared.for_recipient(CTX).message
    assert prepared.links == ["https://example.com/a"]
    assert b"\r\n.\r\n" not in out and not out.endswith(b"\r\n.")
    (p,) = parts_of(out)
    assert resolve(decoded(p), prepared) == text.replace("\n", "\r\n")


@pytest.mark.parametrize("data", [
    b"x" * 150 + b".", b"x" * 150 + b".\r\nBye\r\n", b"x" * 75 + b"=" + b"y" * 71 + b".\r\n",
])
def test_no_lone_dot_line_where_quoted_printable_cuts_a_long_line(data):
    # A long line ending in "." can leave the "." alone on the last line of its cut.
    import binascii

    out = mime.qp_encode(data, b"\r\n")
    lines = out.split(b"\r\n")
    assert b"." not in lines and all(len(line) <= 76 for line in lines), lines
    assert binascii.a2b_qp(out) == data


@pytest.mark.parametrize("cte, nl", [
    ("quoted-printable", "\r\n"), ("base64", "\r\n"), ("7bit", "\r\n"), ("8bit", "\r\n"),
    ("base64", "\n"), ("quoted-printable", "\n"),
])
def test_inlined_html_keeps_the_line_ends_of_its_text_in_every_encoding(cte, nl):
    # The inliner hands back LF line ends; whichever way the part travels, its decoded text
    # ends its lines as the sender's did (CRLF here), and nothing spells them as =0D/=0A.
    html = ("<html><head><style>p { color: red }</style></head><body>\n<p>Caf\u00e9</p>\n"
            '<a href="https://example.com/a">read more</a>.\n</body></html>\n')
    body = encode(html, "utf-8", cte)  # CRLF in the text
    if nl == "\n":  # the transport's own line breaks are LF; the text's are still CRLF
        body = body.replace(b"\r\n", b"\n") if cte == "base64" else body.replace(b"=\r\n", b"=\n")
    raw = message(part("text/html", body, "utf-8", cte))
    prepared = prepare(raw, {**TRACKING, "inlinecss": True})
    out = prepared.for_recipient(CTX).message
    lines_ok(out)
    assert b"=0A" not in out and b"=0D" not in out
    (p,) = parts_of(out)
    text = decoded(p)
    assert 'style="color: red;"' in text and "Caf\u00e9" in text
    assert text.count("\r\n") == text.count("\n") == html.count("\n")
    assert prepared.links == ["https://example.com/a"]


@pytest.mark.parametrize("cte", ["quoted-printable", "8bit", "base64"])
@pytest.mark.parametrize("inliner", ["css-inline", "premailer"])
def test_a_crlf_part_the_inliner_gives_back_unchanged_but_for_line_ends_is_left_alone(
    cte, inliner
):
    # Mail that was inlined before (a relay chain, a sender that uses the same inliner):
    # only the inliner's LF line ends differ, so nothing was inlined and the part goes out
    # byte for byte, with no "css" change reported.
    from features.inline import inline_css

    html = ("<html><head><style>@media (max-width:600px){p{color:red}}</style></head>"
            "<body>\n<p>Caf\u00e9</p>\n</body></html>")
    already = inline_css(html, inliner)
    assert inline_css(already, inliner) == already  # a fixed point of the inliner
    raw = message(part("text/html", encode(already, "utf-8", cte), "utf-8", cte))
    prepared = prepare(raw, {"inlinecss": True}, inliner)
    assert prepared.for_recipient(CTX).message == raw
    assert prepared.changes == [] and prepared.warnings == []


@pytest.mark.parametrize("charset", ["utf-16-le", "utf-16"])
def test_inlined_crlf_html_in_utf16_keeps_valid_utf16(charset):
    # In UTF-16 a line end is two bytes and 0x0A also sits inside other characters ("\u010a"):
    # the inliner's LF ends must become CRLF in the text, never in the encoded bytes.
    html = ("<html><head><style>p { color: red }</style></head><body>\n<p>Caf\u00e9 \u010a</p>\n"
            '<a href="https://example.com/a">read</a>\n</body></html>\n')
    raw = message(part("text/html", encode(html, charset, "base64"), charset, "base64"))
    prepared = prepare(raw, {**TRACKING, "inlinecss": True})
    out = prepared.for_recipient(CTX)
    assert out.warnings == []
    (p,) = parts_of(out.message)
    text = p.get_payload(decode=True).decode(charset)
    assert "Caf\u00e9 \u010a" in text and 'style="color: red;"' in text
    assert text.count("\r\n") == text.count("\n") == html.count("\n")
    assert prepared.links == ["https://example.com/a"]


def test_a_7bit_line_that_grows_past_998_octets_switches_to_quoted_printable():
    html = "<p>" + " ".join(f'<a href="https://e.x/{i}">{i}</a>' for i in range(25)) + "</p>"
    assert len(html) < 998
    raw = message(part("text/html", html.encode(), "us-ascii", "7bit"))
    prepared = prepare(raw, {"clicktracking": True})
    out = prepared.for_recipient(CTX)
    (p,) = parts_of(out.message)
    assert p["Content-Transfer-Encoding"] == "quoted-printable"
    assert any("998" in w for w in out.warnings)
    assert resolve(decoded(p), prepared) == html
    lines_ok(out.message)


@pytest.mark.parametrize("cte", ["8bit", "7bit"])
def test_an_inlined_crlf_line_near_998_octets_is_measured_with_its_cr(cte):
    # The inliner hands back LF lines that go out with CRLF: the CR counts, as it does for
    # a part that was not inlined.
    for n in range(960, 985):
        html = ("<html><head><style>p{color:red}</style></head><body>\r\n<p>" + "x" * n
                + "</p>\r\n</body></html>\r\n")
        raw = message(part("text/html", html.encode(), "utf-8", cte))
        out = render(raw, {"inlinecss": True}, CTX).message
        lines_ok(out)
        assert b'style="color: red;"' in out or b"style=3D" in out


def test_new_text_not_in_the_charset_switches_that_part_to_utf8(settings):
    # premailer turns &nbsp; into U+00A0, which us-ascii cannot carry.
    html = ("<html><head><style>p{color:red}</style></head><body><p>a&nbsp;b "
            '<a href="https://e.x/">x</a></p></body></html>')
    raw = message(multipart(
        "alternative", "b1",
        part("text/plain", b"plain https://e.x/", "us-ascii", "7bit"),
        part("text/html", html.encode(), "us-ascii", "7bit"),
    ))
    prepared = prepare(raw, {"inlinecss": True, "clicktracking": True}, inliner="premailer")
    out = prepared.for_recipient(CTX)
    text, html_part = parts_of(out.message)
    assert html_part.get_content_charset() == "utf-8"
    assert html_part["Content-Transfer-Encoding"] == "quoted-printable"
    assert "\u00a0" in decoded(html_part) and 'style="color:red"' in decoded(html_part)
    assert any("utf-8" in w for w in out.warnings)
    assert text.get_content_charset() == "us-ascii"  # the other part keeps its charset


@pytest.mark.parametrize("raw, warning", [
    (message(b"Content-Type: multipart/mixed\r\n\r\n--x\r\nContent-Type: text/html\r\n\r\n"
             b'<a href="https://e.x/">x</a>\r\n--x--\r\n'), "without boundary"),
    (message(b'Content-Type: multipart/mixed; boundary="nope"\r\n\r\n<a href="https://e.x/">'
             b"x</a>\r\n"), "boundary never found"),
    (message(part("text/html", b'<a href="https://e.x/">x</a>', "x-no-such-charset")),
     "unknown charset"),
    (message(part("text/html", b'<a href="https://e.x/">\xff\xfe</a>', "utf-8", "8bit")),
     "not valid utf-8"),
    (message(part("text/html", b"PGEgaHJlZj0iaHR0cHM6Ly9lLngvIj4=x", "utf-8", "base64")),
     "base64"),
    (message(part("text/html", b'<a href="https://e.x/">x</a>', "utf-8", "x-uuencode")),
     "unknown transfer encoding"),
])
def test_parts_we_cannot_read_go_out_unchanged_with_a_warning(raw, warning):
    out = render(raw, ALL, CTX)
    assert out.message == raw
    assert any(warning in w for w in out.warnings), out.warnings


@pytest.mark.parametrize("charset", ["base64", "rot13", "hex", "zlib", "uu", "unicode_escape",
                                     "raw_unicode_escape", "idna", "punycode", '"x-unknown"'])
def test_python_codecs_that_are_no_mime_charsets_leave_only_their_part_alone(charset):
    html = b'<a href="https://example.com/">x</a>'
    odd = part("text/html", html, charset, "8bit")
    raw = message(multipart("mixed", "b", odd, part("text/html", html, "utf-8", "8bit")))
    out = render(raw, {"clicktracking": True}, CTX)
    assert odd in out.message  # that part byte for byte, the other one tracked
    assert out.message.count(b"https://t.example/t/c/") == 1
    assert [w for w in out.warnings if "unknown charset" in w]


def test_digest_parts_without_content_type_are_messages_and_left_alone():
    inner = b"Subject: one\r\n\r\nsee https://example.com/digest\r\n"
    raw = message(b'Content-Type: multipart/digest; boundary="d"\r\n\r\n--d\r\n\r\n' + inner
                  + b"\r\n--d--\r\n")
    assert mime.leaves(raw)[0][0].content_type == "message/rfc822"
    assert render(raw, {"clicktracking": True}, CTX).message == raw


@pytest.mark.parametrize("sealed, params", [
    ("signed", '; protocol="application/pgp-signature"; micalg=pgp-sha256'),
    ("signed", '; protocol="application/pkcs7-signature"; micalg=sha-256'),
    ("encrypted", '; protocol="application/pgp-encrypted"'),
])
def test_signed_or_encrypted_messages_are_left_byte_identical(sealed, params):
    html = part("text/html", HTML.encode("utf-8"), "utf-8", "8bit")
    raw = message(multipart(
        "mixed", "outer",
        multipart(sealed, "s", multipart("alternative", "a", html),
                  part("application/pgp-signature", b"-----BEGIN PGP SIGNATURE-----\r\nx\r\n"),
                  params=params),
        html,
    ))
    out = render(raw, ALL, CTX)
    # The part outside the signature is tracked; everything inside it goes out as it came.
    sealed_bytes = raw[raw.index(b"Content-Type: multipart/" + sealed.encode()):
                       raw.index(b"--s--") + 5]
    assert sealed_bytes in out.message
    assert out.message.count(b"https://t.example/t/c/") == 1
    assert any(f"multipart/{sealed} left alone" in w for w in out.warnings)


def test_unclosed_multipart_still_renders_its_parts():
    raw = message(b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\n'
                  + part("text/html", b'<a href="https://e.x/">x</a>', "utf-8"))
    prepared = prepare(raw, {"clicktracking": True})
    out = prepared.for_recipient(CTX)
    assert prepared.links == ["https://e.x/"] and any("not closed" in w for w in out.warnings)


def test_non_mime_plain_text_and_lf_line_endings():
    raw = b"From: a@b.c\nSubject: hi\n\nGo to https://example.com/x now.\n"
    prepared = prepare(raw, {"clicktracking": True})
    out = prepared.for_recipient(CTX)
    assert out.message.startswith(b"From: a@b.c\nSubject: hi\n\nGo to https://t.example/t/c/")
    assert out.message.endswith(b" now.\n") and b"\r" not in out.message
    assert prepared.links == ["https://example.com/x"]


def test_plain_text_is_left_alone_with_preventscam():
    raw = message(part("text/plain", b"see https://example.com/x", "us-ascii"))
    assert render(raw, {"clicktracking": True, "preventscam": True}, CTX).message == raw


def test_render_is_the_same_for_every_recipient_but_the_tokens():
    from dataclasses import replace

    raw = newsletter_mixed()
    prepared = prepare(raw, ALL)
    a = prepared.for_recipient(CTX).message
    b = prepared.for_recipient(replace(CTX, recipient_id=99)).message
    assert a != b
    assert TRACK_URL.sub("T", a.decode("latin-1")) == TRACK_URL.sub("T", b.decode("latin-1"))
    assert render(raw, ALL, CTX).message == a


# Failure shapes of another relay (postalserver/postal issues), one test each.

def test_postal_907_escaped_ampersands_are_unescaped_once():
    html = '<a href="https://www.pakat.net?a=b&amp;c=d">x</a>'
    prepared = prepare(message(part("text/html", html.encode(), "utf-8")), TRACKING)
    out = prepared.for_recipient(CTX).message
    assert prepared.links == ["https://www.pakat.net?a=b&c=d"]
    assert b"&amp;amp;" not in out


def test_postal_115_links_are_never_truncated():
    urls = [
        "https://example.com/path/(with)/parens,commas;semi:colon?q=a b&r='x'#frag",
        "https://example.com/" + "long-segment/" * 150 + "?x=" + "9" * 500,
        "https://пример.рф/путь?q=значение",
        "https://example.com/a?b=c&d=e&f=g&h=i&j=k&l=m&n=o",
    ]
    html = "".join(f'<a href="{u.replace("&", "&amp;")}">l</a>' for u in urls)
    raw = message(part("text/html", encode(html, "utf-8", "quoted-printable"), "utf-8",
                       "quoted-printable"))
    prepared = prepare(raw, TRACKING)
    assert prepared.links == urls
    lines_ok(prepared.for_recipient(CTX).message)


def test_postal_1192_phpmailer_utf8_html_body_survives():
    html = ("<html><body><h1>Grüße</h1><p>Ünïcödé ✓ <a href='https://shop.example/ä?x=1'>"
            "Jetzt kaufen</a></p></body></html>")
    raw = (b"Date: Mon, 31 Aug 2020 10:00:00 +0000\r\nTo: a@example.org\r\n"
           b"From: WordPress <wp@example.com>\r\nSubject: Bestellung\r\nMIME-Version: 1.0\r\n"
           b"Content-type: text/html; charset=UTF-8\r\n\r\n" + html.encode("utf-8"))
    prepared = prepare(raw, TRACKING)
    out = prepared.for_recipient(CTX)
    head, body = out.message.split(b"\r\n\r\n", 1)
    assert head == raw.split(b"\r\n\r\n")[0] and out.warnings == []
    assert resolve(body.decode("utf-8"), prepared) == html.replace(
        "https://shop.example/ä?x=1", "https://shop.example/ä?x=1")
    assert prepared.links == ["https://shop.example/ä?x=1"]


def test_postal_2816_quoted_printable_soft_breaks_inside_links_lose_nothing():
    # A QP body as WooCommerce sends it: the href is cut by soft breaks, = is =3D.
    body = (b'<p>Hi lee,</p>=0A<p style=3D"margin: 0 0 16px;">=0A=09<a class=3D"link" '
            b'href=3D"https:=\r\n'
            b'//thewhole-shebang.co.uk/my-account/lost-password/?key=3DXXXX=\r\n'
            b'XXXX&id=3D3" style=3D"font-weight: normal;">=09=09Click here to reset your '
            b"passwo=\r\nrd=09</a>=0A</p>=0A")
    raw = message(part("text/html", body, "UTF-8", "quoted-printable"))
    prepared = prepare(raw, TRACKING)
    out = prepared.for_recipient(CTX)
    assert prepared.links == [
        "https://thewhole-shebang.co.uk/my-account/lost-password/?key=XXXXXXXX&id=3"]
    (p,) = parts_of(out.message)
    original = mime.decode_body(body, "quoted-printable").decode("utf-8")
    assert resolve(decoded(p), prepared, escape=False) == original
    lines_ok(out.message)


def test_postal_1040_related_html_with_type_parameter_is_found_and_kept_related():
    # multipart/related; type="text/html" inside alternative (PHPMailer with inline images).
    raw = newsletter_mixed()
    prepared = prepare(raw, TRACKING)
    out = prepared.for_recipient(CTX).message
    assert b'Content-Type: multipart/related; boundary="rel-b"; type="text/html"' in out
    assert "pixel" in [c.kind for c in prepared.changes]
    assert b"Content-ID: <logo>" in out


def test_long_or_odd_tracking_base_urls_still_make_valid_quoted_printable():
    from dataclasses import replace

    html = "".join(f'<a href="https://e.x/{i}">l{i}</a>\n' for i in range(5))
    raw = message(part("text/html", encode(html, "utf-8", "quoted-printable"), "utf-8",
                       "quoted-printable"))
    base = "https://tracking.example.com/" + "long-path/" * 8 + "t?tenant=7&x=/"
    prepared = prepare(raw, TRACKING, tracking_base_url=base)
    out = prepared.for_recipient(replace(CTX, tracking_base_url=base)).message
    lines_ok(out)
    (p,) = parts_of(out)
    text = decoded(p)
    assert text.count(base.replace("&", "&amp;") + "c/") == 5
    assert base.replace("&", "&amp;") + "o/" in text


@pytest.mark.parametrize("length", range(40, 90))
@pytest.mark.parametrize("prefix", ["https://t.example/", "https://t.example/?a=b/"])
def test_quoted_printable_lines_stay_within_76_whatever_the_tracking_url_length(length, prefix):
    # A tracking URL sits on a line of its own followed by a soft break: one of exactly 76
    # characters (or one that encodes to 76, with "=" in the base) must still be cut.
    from dataclasses import replace

    base = prefix + "x" * (length - len(prefix) - 1) + "/"
    html = '<p>See <a href="https://e.x/a">this</a> and <img src="https://i.x/b.png"></p>\n'
    raw = message(part("text/html", encode(html, "utf-8", "quoted-printable"), "utf-8",
                       "quoted-printable"))
    prepared = prepare(raw, TRACKING, tracking_base_url=base)
    ctx = replace(CTX, tracking_base_url=base)
    out = prepared.for_recipient(ctx).message
    lines_ok(out)
    (p,) = parts_of(out)
    assert decoded(p).count(base + "c/") == 1 and decoded(p).count(base + "o/") == 2
