"""The test helpers' own promise: with CI=true a missing client fails the test, never skips it."""
import pytest

from .smtp_helpers import Server, require_tool


def test_missing_tool_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_tool("no-such-smtp-client-xyz")


def test_missing_tool_skips_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_tool("no-such-smtp-client-xyz")


def test_present_tool_is_found():
    assert require_tool("sh").endswith("/sh")


def test_server_env_drops_async_unsafe(monkeypatch, tmp_path):
    """The browser tests allow sync ORM calls in async code for their own process; runsmtp
    must not inherit that, or a sync call on its event loop would pass in tests only."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    env = Server(cert=tmp_path / "c", key=tmp_path / "k", workdir=tmp_path).env()
    assert "DJANGO_ALLOW_ASYNC_UNSAFE" not in env
    assert env["SMTP_HOSTNAME"] == "relay.test"
