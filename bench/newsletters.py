"""Synthetic newsletters for the render benchmark and tests: style blocks, links, images, MSO."""
from __future__ import annotations

import random

_WORDS = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut "
    "labore et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris"
).split()

_STYLE = """<style type="text/css">
body { margin: 0; padding: 0; background: #f4f4f4; font-family: Helvetica, Arial, sans-serif; }
table.wrap { width: 100%%; border-collapse: collapse; }
td.cell { padding: 12px 18px; color: #333333; font-size: 15px; line-height: 22px; }
h1 { font-size: 26px; color: #111111; margin: 0 0 12px 0; }
h2 { font-size: 20px; color: #222222; }
a { color: #0a66c2; text-decoration: underline; }
a.button { display: inline-block; background: #0a66c2; color: #ffffff !important;
  padding: 10px 18px; }
p.small { font-size: 12px; color: #777777; }
.footer td { font-size: 11px; color: #999999; }
img.hero { display: block; width: 100%%; height: auto; border: 0; }
@media only screen and (max-width: 600px) {
  td.cell { padding: 8px !important; font-size: 16px !important; }
  img.hero { width: 100%% !important; }
}
%s
</style>"""


def newsletter(size_kb: int, links: int, images: int, seed: int = 1) -> str:
    """HTML of about size_kb KiB with the given number of links and images."""
    rng = random.Random(seed)
    extra_css = "\n".join(
        f".c{i} td {{ color: #{rng.randrange(0x1000000):06x}; padding: {i % 9}px; }}"
        for i in range(size_kb * 2)
    )
    head = (
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
        '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:v="urn:schemas-microsoft-com:vml">\n'
        '<head>\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\n'
        f"<title>Newsletter</title>\n{_STYLE % extra_css}\n</head>\n<body>\n"
        '<table class="wrap" role="presentation"><tr><td class="cell">\n'
        "<h1>This week &amp; next</h1>\n"
        '<!--[if mso]><v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" '
        'href="https://example.com/vml-cta?utm_source=news&amp;id=1" style="height:40px;'
        'width:200px" arcsize="10%" fillcolor="#0a66c2"><center>Read more</center>'
        "</v:roundrect><![endif]-->\n"
    )
    body: list[str] = []
    n_links = n_images = 0
    blocks = max(links, images, 1)
    target = size_kb * 1024 - len(head) - 400
    per_block = max(target // blocks, 60)
    for i in range(blocks):
        parts = [f'<tr class="c{i % (size_kb * 2)}"><td class="cell">']
        if n_images < images:
            parts.append(
                f'<img class="hero" src="https://cdn.example.com/img/{i}.png?v=2&amp;w=600" '
                f'alt="picture {i}" width="600" height="200">'
            )
            n_images += 1
        words = " ".join(rng.choice(_WORDS) for _ in range(per_block // 7))
        parts.append(f"<p>{words[: max(per_block - 160, 20)]}</p>")
        if n_links < links:
            if i % 5 == 4:
                parts.append(f'<a href="https://www.example.org/p/{i}">www.example.org/p/{i}</a>')
            else:
                parts.append(
                    f'<a class="button" href="https://example.com/article/{i}?utm_source=news'
                    f'&amp;utm_medium=email&amp;n={i}">Read article {i}</a>'
                )
            n_links += 1
        parts.append("</td></tr>\n")
        body.append("".join(parts))
    tail = (
        '</td></tr></table>\n<table class="footer"><tr><td>'
        '<a href="mailto:help@example.com">help</a> · '
        '<a href="https://example.com/unsubscribe?u=123&amp;l=9" data-notrack>unsubscribe</a>'
        "</td></tr></table>\n</body>\n</html>\n"
    )
    return head + "<table>" + "".join(body) + "</table>" + tail


def message(html: str, cte: str = "quoted-printable") -> bytes:
    """A multipart/alternative message carrying html (and a short text part)."""
    import binascii

    data = html.encode("utf-8")
    if cte == "quoted-printable":
        body = binascii.b2a_qp(data.replace(b"\n", b"\r\n"), istext=True)
    else:
        body = data.replace(b"\n", b"\r\n")
    return (
        b"From: News <news@example.com>\r\nTo: reader@example.org\r\n"
        b"Subject: This week\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="=_b1"\r\n\r\n'
        b"--=_b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"This week: https://example.com/week\r\n"
        b"--=_b1\r\nContent-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: " + cte.encode() + b"\r\n\r\n" + body + b"\r\n--=_b1--\r\n"
    )
