"""The Connect page: host, ports and client snippets with the chosen login's username."""
import pytest
from django.urls import reverse

from credentials import services
from credentials.snippets import PASSWORD_PLACEHOLDER, USERNAME_PLACEHOLDER

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _smtp_settings(settings):
    settings.SMTP_HOSTNAME = "relay.example.net"
    settings.SMTP_TLS_PORTS = [465]
    settings.SMTP_STARTTLS_PORTS = [587, 2525]


def test_connect_page_lists_host_ports_and_auth(alice_client):
    html = alice_client.get(reverse("connect")).content.decode()
    assert '<code id="smtp-host">relay.example.net</code>' in html
    assert "Port 465</dt><dd>TLS from the first byte" in html
    assert "Port 587</dt><dd>STARTTLS" in html and "Port 2525</dt><dd>STARTTLS" in html
    assert "AUTH PLAIN or AUTH LOGIN" in html
    for title in ["swaks", "Python smtplib", "Postfix relayhost: main.cf",
                  "Postfix relayhost: sasl_passwd", "Thunderbird"]:
        assert title in html
    assert USERNAME_PLACEHOLDER in html


def test_snippets_carry_the_chosen_username_and_never_a_password(alice, alice_client):
    login, password = services.create_login(alice)
    services.create_login(alice)
    html = alice_client.get(reverse("connect"), {"login": login.pk}).content.decode()
    assert password not in html
    assert login.password_hash not in html
    assert "swaks --server relay.example.net --port 587 --tls" in html
    quoted = f"&#x27;{PASSWORD_PLACEHOLDER}&#x27;"
    assert f"--auth-user {login.username} --auth-password {quoted}" in html
    assert "swaks --server relay.example.net --port 465 --tls-on-connect" in html
    assert "smtplib.SMTP_SSL(&quot;relay.example.net&quot;, 465)" in html
    assert f"smtp.login(&quot;{login.username}&quot;, &quot;{PASSWORD_PLACEHOLDER}&quot;)" in html
    assert "relayhost = [relay.example.net]:587" in html
    assert f"[relay.example.net]:587 {login.username}:{PASSWORD_PLACEHOLDER}" in html
    assert "Connection security:      SSL/TLS" in html
    assert f'<option value="{login.pk}" selected>' in html


def test_single_login_is_chosen_by_default(alice, alice_client):
    login, _ = services.create_login(alice)
    html = alice_client.get(reverse("connect")).content.decode()
    assert f"--auth-user {login.username}" in html


def test_starttls_only_deployment(alice_client, settings):
    settings.SMTP_TLS_PORTS = []
    html = alice_client.get(reverse("connect")).content.decode()
    assert "Port 465" not in html
    assert "smtplib.SMTP(&quot;relay.example.net&quot;, 587)" in html
    assert "smtp.starttls()" in html
    assert "Connection security:      STARTTLS" in html
    assert "--tls-on-connect" not in html


def test_no_submission_port_hides_the_snippets_with_a_message(alice, alice_client, settings):
    # An MX-only relay (both submission lists empty) used to answer 500 here.
    settings.SMTP_TLS_PORTS = []
    settings.SMTP_STARTTLS_PORTS = []
    login, _ = services.create_login(alice)
    response = alice_client.get(reverse("connect"), {"login": login.pk})
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="no-submission-port"' in html and "no submission port" in html
    assert "Port " not in html
    assert "swaks" not in html and "relayhost" not in html and 'class="card snippet"' not in html


def test_implicit_tls_only_deployment(alice_client, settings):
    settings.SMTP_STARTTLS_PORTS = []
    html = alice_client.get(reverse("connect")).content.decode()
    assert "smtplib.SMTP_SSL(&quot;relay.example.net&quot;, 465)" in html
    assert "relayhost = [relay.example.net]:465" in html
    assert "smtp_tls_wrappermode = yes" in html
    assert "Connection security:      SSL/TLS" in html
    assert "--tls-on-connect" in html and "--port 587" not in html
