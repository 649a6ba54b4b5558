"""RFC 3461 / 1870 / 6152 parameter parsing as plain functions (no server needed)."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.esmtp_params import (
    ParamError,
    parse_mail_params,
    parse_path,
    parse_rcpt_params,
    xtext_decode,
    xtext_encode,
)


@given(st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=127), max_size=60))
def test_xtext_round_trip(value):
    encoded = xtext_encode(value)
    assert all("!" <= ch <= "~" and ch != "=" for ch in encoded)
    assert xtext_decode(encoded) == value


@pytest.mark.parametrize("bad", ["a b", "a=b", "+4", "+GG", "caf\xe9"])
def test_xtext_refuses_what_is_not_xtext(bad):
    with pytest.raises(ValueError):
        xtext_decode(bad)


def test_mail_params_keep_envid_case_and_normalise_keywords():
    p = parse_mail_params(" ret=Full envid=AbC+2Bd size=10 body=8bitmime", 100)
    assert (p.ret, p.envid, p.size, p.body) == ("FULL", "AbC+d", 10, "8BITMIME")


@pytest.mark.parametrize("text,code", [
    ("SIZE=101", "552 5.3.4"), ("SIZE", "501 5.5.4"), ("RET=NONE", "501 5.5.4"),
    ("ENVID=", "501 5.5.4"), ("ENVID=a+0A", "501 5.5.4"), ("X-FOO=1", "555 5.5.4"),
    ("SIZE=1 size=2", "501 5.5.4"), ("=x", "501 5.5.4"),
])
def test_mail_params_errors(text, code):
    with pytest.raises(ParamError) as exc:
        parse_mail_params(text, 100)
    assert str(exc.value).startswith(code)


def test_rcpt_params():
    p = parse_rcpt_params("notify=failure,Delay ORCPT=rfc822;Bob+2BX@Example.COM")
    assert (p.notify, p.orcpt) == ("FAILURE,DELAY", "rfc822;Bob+X@Example.COM")
    assert parse_rcpt_params("NOTIFY=never").notify == "NEVER"
    assert parse_rcpt_params("").notify == ""


@pytest.mark.parametrize("text", [
    "NOTIFY=NEVER,SUCCESS", "NOTIFY=", "NOTIFY=SUCCESS,,FAILURE", "ORCPT=;x", "ORCPT=rfc822;",
    "ORCPT=rfc 822;x", "NOTIFY=DELAY NOTIFY=DELAY", "ORCPT=rfc822;a+0Ab", "ORCPT=rfc822;a+0D",
    "ORCPT=rfc822;a+00b", "ORCPT=rfc822;a+ff", "ORCPT=rfc822;a+7F",
])
def test_rcpt_params_errors(text):
    with pytest.raises(ParamError) as exc:
        parse_rcpt_params(text)
    assert str(exc.value).startswith("501 5.5.4")


@pytest.mark.parametrize("text,expected", [
    ("<a@b.c>", ("a@b.c", "")), ("<a@b.c> SIZE=1", ("a@b.c", " SIZE=1")),
    ("a@b.c", ("a@b.c", "")), ('<"x y"@b.c>', ('"x y"@b.c', "")),
    ("<u@[192.0.2.1]>", ("u@[192.0.2.1]", "")), ("<>", ("", "")),
])
def test_paths(text, expected):
    assert parse_path(text, allow_null=True) == expected


@pytest.mark.parametrize("text", ["<a b@c.d>", "<a@b.c", "<@r:a@b.c>", "<a..b@c.d>", "<a@-b.c>",
                                  "<a@b.c>SIZE=1", "<a@b_c.d>"])
def test_bad_paths(text):
    with pytest.raises(ParamError):
        parse_path(text, allow_null=True)
    with pytest.raises(ParamError):
        parse_path("<>", allow_null=False)
