"""The test helpers' own promise: with CI=true a missing client fails the test, never skips it."""
import pytest

from .smtp_helpers import require_tool


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
