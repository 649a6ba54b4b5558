"""schemathesis against the live OpenAPI schema: generated requests to every operation, with
a read-write key, find no 500, and every response matches the schema (status code, content
type, body). Examples are bounded so that the whole run takes well under a minute."""
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from credentials import apikeys, services
from events import webhooks
from relay import suppression
from senders import services as senders
from tests.e2e.conftest import live_server  # noqa: F401 - the live server without https redirect
from tests.relay.dnsserver import DNSServer

from .conftest import alice_mail as _alice_mail  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)
EXAMPLES = 12
# "Schema-valid data must be accepted" cannot hold where validity depends on the database
# (a login's username that exists) or on rules across fields the schema does not state (raw,
# or from and a recipient); every other check stays on, not_a_server_error first.
EXCLUDED = [schemathesis.checks.positive_data_acceptance]


@pytest.fixture
def api_schema(live_server, alice, settings):  # noqa: F811
    settings.API_RATE_LIMIT = 1_000_000  # the fuzzer is not a client to slow down
    return schemathesis.openapi.from_url(live_server.url + "/api/v1/schema/?format=json")


@pytest.fixture
def dns(settings):
    # Check DNS asks a server the test runs (empty: every record missing), never the network.
    with DNSServer({}) as server:
        settings.DNS_NAMESERVERS = server.nameserver
        settings.SENDER_DNS_TIMEOUT = 1
        yield server


@pytest.fixture
def token(alice, dns):
    # Something to find at the real ids besides the 404s of random ones.
    services.create_login(alice, description="fuzzed")
    suppression.add(alice.pk, "ann@example.com", "manual", actor=alice)
    webhooks.create_endpoint(alice, "https://hooks.example.com/in", ["delivery"])
    senders.add_domain(alice, "fuzzed.example")
    return apikeys.create_key(alice, "schemathesis", "write")[1]


def test_the_api_keeps_its_schema(api_schema, token, _alice_mail):  # noqa: F811
    # Driven by hand, not through schemathesis' pytest plugin (it fails on pytest 9): one
    # hypothesis run per operation, every failure collected before the assertion.
    headers = {"Authorization": f"Bearer {token}"}
    failures, operations, calls = [], 0, []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            response = case.call_and_validate(headers=headers, timeout=30,
                                              excluded_checks=EXCLUDED)
            calls.append(response.status_code)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - reported below
            failures.append(f"{operation.label}: {exc}")
    assert operations >= 30
    assert len(calls) >= 5 * operations and any(200 <= c < 300 for c in calls)
    assert not failures, "\n\n".join(failures)[:20000]
