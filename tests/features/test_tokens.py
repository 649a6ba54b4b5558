"""Signed tracking tokens and VERP addresses: round trips, and every forgery gets None."""
import pytest

from features.tokens import (
    CLICK,
    OPEN,
    derive_key,
    make_token,
    max_token_length,
    parse_verp,
    read_token,
    tokens,
    url_check,
    url_checks,
    url_matches,
    verp_address,
)

KEY = derive_key("secret-key-for-tests", "tracking")
VKEY = derive_key("secret-key-for-tests", "verp")


@pytest.mark.parametrize("ids", [(0, 0, 0), (1, 2, 3), (2**40, 2**33, 500), (2**63, 2**63, 2**20)])
def test_token_round_trip(ids):
    url = "https://example.com/a?b=1&c=2"
    token = make_token(KEY, CLICK, *ids, url=url)
    *found, check = read_token(KEY, CLICK, token)
    assert tuple(found) == ids
    assert url_matches(KEY, url, check)
    assert not url_matches(KEY, url + "x", check) and not url_matches(KEY, url[:-1], check)
    assert not url_matches(derive_key("other", "tracking"), url, check)  # keyed
    assert len(token) <= max_token_length(index=ids[2], max_id=max(ids[0], ids[1]))
    if ids[2] < 1000:
        checks = url_checks(KEY, ["https://other/"] * ids[2] + [url])
        assert checks[-1] == url_check(KEY, url) == check
        assert tokens(KEY, CLICK, ids[0], ids[1], checks)[-1] == token.encode()


def test_tokens_are_short():
    # a million messages, ten million recipients: 20 bytes, 27 characters
    assert len(make_token(KEY, CLICK, 123456, 7654321, 42, "https://x/")) <= 28


def test_every_single_character_change_is_refused():
    token = make_token(KEY, CLICK, 1234, 5678, 9)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i, ch in enumerate(token):
        for other in alphabet:
            if other != ch:
                assert read_token(KEY, CLICK, token[:i] + other + token[i + 1 :]) is None


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1], lambda t: t[1:], lambda t: t[:10], lambda t: t + "A", lambda t: t + "=",
    lambda t: "", lambda t: t.upper(), lambda t: t + "\n", lambda t: "é" * 24,
    lambda t: "%" + t[1:],
])
def test_truncated_or_padded_tokens_are_refused(mangle):
    token = make_token(KEY, CLICK, 1234, 5678, 9)
    assert read_token(KEY, CLICK, mangle(token)) is None


def test_a_click_token_is_no_open_token_and_keys_matter():
    token = make_token(KEY, CLICK, 1, 2, 3)
    assert read_token(KEY, OPEN, token) is None
    assert read_token(derive_key("another-secret", "tracking"), CLICK, token) is None
    assert derive_key("s", "tracking") != derive_key("s", "verp")


def test_verp_round_trip_lower_case_and_short():
    for ids in [(1, 1), (987654321, 123456789), (2**64 - 1, 2**64 - 1)]:
        address = verp_address(VKEY, *ids, "bounces.example.com")
        local = address.split("@")[0]
        assert local == local.lower() and local.isalnum()
        assert len(local) <= 64
        assert parse_verp(VKEY, address, "bounces.example.com") == ids
        # Mail systems may fold the case of the local part.
        assert parse_verp(VKEY, address.upper(), "bounces.example.com") == ids


@pytest.mark.parametrize("forge", [
    lambda a: a.replace("@", "x@", 1),
    lambda a: a[:5] + ("a" if a[5] != "a" else "b") + a[6:],
    lambda a: a.split("@")[0][:-2] + "@bounces.example.com",
    lambda a: "c" + a[1:],
    lambda a: a.split("@")[0] + "@other.example",
    lambda a: a.split("@")[0],
    lambda a: "",
    lambda a: "b" + "a" * 70 + "@bounces.example.com",
    lambda a: "b!!!!@bounces.example.com",
    lambda a: a + "@x",
])
def test_forged_or_malformed_verp_is_none(forge):
    address = verp_address(VKEY, 42, 4242, "bounces.example.com")
    assert parse_verp(VKEY, forge(address), "bounces.example.com") is None


def test_verp_from_another_key_is_none():
    address = verp_address(derive_key("other", "verp"), 42, 4242, "bounces.example.com")
    assert parse_verp(VKEY, address, "bounces.example.com") is None


@pytest.mark.parametrize("key", [KEY, b"", b"short", b"x" * 64, b"y" * 65, bytes(range(200))])
def test_batch_tokens_are_plain_hmac_sha256_for_any_key(key):
    urls = [f"https://i/{i}.png" for i in range(300)]
    checks = url_checks(key, urls)
    made = tokens(key, OPEN, 77, 88, checks)
    for index in (0, 1, 127, 128, 299):
        assert checks[index] == url_check(key, urls[index])
        token = made[index].decode()
        assert token == make_token(key, OPEN, 77, 88, index, urls[index])
        assert read_token(key, OPEN, token) == (77, 88, index, checks[index])
