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


@pytest.mark.django_db(transaction=True)
def test_a_port_taken_before_runsmtp_binds_it_means_new_ports_not_a_failure(tls_files, tmp_path):
    import socket

    from .conftest import ACCEPT_ROLES, SERVER_ENV

    server = Server(cert=tls_files[0], key=tls_files[1], workdir=tmp_path, env_extra=SERVER_ENV,
                    roles=ACCEPT_ROLES)
    taken = server.tls_port
    with socket.socket() as squatter:  # what another process might do in the meantime
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        server.start()
        try:
            assert server.tls_port != taken
            assert "address already in use" in server.log_text()
            with socket.create_connection(("127.0.0.1", server.starttls_port), timeout=5) as c:
                assert c.recv(100).startswith(b"220 ")
        finally:
            server.stop()
