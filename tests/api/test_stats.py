"""/api/v1/stats/: counts per day of the key owner's mail (events.stats.report), filtered by
login, tag and range, machine opens and clicks only when asked; bad filters are 400."""
from datetime import timedelta

import pytest
from django.utils import timezone

from credentials import apikeys
from credentials.models import ApiKey
from events import stats

from .conftest import key_client, store_message

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_counts():
    # Today's counts are reused for a while per process; each test writes its own events.
    stats.forget_live()


def today() -> str:
    return timezone.now().date().isoformat()


def test_counts_per_day_totals_and_links(api, alice_mail, bob_mail):
    r = api.get("/api/v1/stats/", {"start": today(), "end": today()})
    assert r.status_code == 200, r.content
    body = r.json()
    assert (body["start"], body["end"], body["login"], body["tag"], body["machine"]) == (
        today(), today(), None, "", False)
    [day] = body["days"]
    # alice's message only (bob's delivery is not hers); the scanner's click is left out.
    assert day == {"day": today(), "sent": 2, "delivered": 1, "hard": 0, "soft": 0,
                   "complaints": 0, "opened": 1, "clicked": 0}
    assert body["totals"]["unique_opened"] == 1 and body["totals"]["unique_clicked"] == 0
    assert body["links"] == []
    with_machine = api.get("/api/v1/stats/", {"start": today(), "machine": "true"}).json()
    assert with_machine["totals"]["clicked"] == 1
    assert with_machine["totals"]["unique_clicked"] == 1
    assert with_machine["links"] == [{"url": "https://example.com/", "clicks": 1}]


def test_the_default_range_is_the_last_30_days(api_read, alice_mail):
    body = api_read.get("/api/v1/stats/").json()
    assert len(body["days"]) == 30 and body["end"] == today()
    assert body["totals"]["sent"] == 2


def test_login_and_tag_filters(api, alice, alice_mail):
    store_message(alice, None, ("x@example.com",), tags=["receipts"])
    stats.forget_live()
    login = alice_mail.login.username
    assert api.get("/api/v1/stats/", {"login": login}).json()["totals"]["sent"] == 2
    assert api.get("/api/v1/stats/", {"tag": "news"}).json()["totals"]["sent"] == 2
    assert api.get("/api/v1/stats/", {"tag": "receipts"}).json()["totals"]["sent"] == 1
    assert api.get("/api/v1/stats/").json()["totals"]["sent"] == 3


def test_another_owner_s_login_is_a_400_not_their_counts(api, bob_mail):
    r = api.get("/api/v1/stats/", {"login": bob_mail.login.username})
    assert r.status_code == 400 and "login" in r.json()


@pytest.mark.parametrize("params,field", [
    ({"start": "2026-02-30"}, "start"), ({"end": "yesterday"}, "end"),
    ({"start": "2026-03-02", "end": "2026-03-01"}, "start"),
    ({"start": "2020-01-01", "end": "2026-01-01"}, "start"),
    ({"machine": "maybe"}, "machine"),
])
def test_bad_filters_are_400(api, params, field):
    r = api.get("/api/v1/stats/", params)
    assert r.status_code == 400 and field in r.json()


def test_a_revoked_or_expired_key_is_401(db, alice, api):
    assert api.get("/api/v1/stats/").status_code == 200
    apikeys.revoke_key(api.key, actor=alice)
    assert api.get("/api/v1/stats/").status_code == 401
    old = key_client(alice, "read", expires_at=timezone.now() + timedelta(hours=1))
    ApiKey.objects.filter(pk=old.key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert old.get("/api/v1/stats/").status_code == 401


def test_writes_are_not_allowed(api):
    assert api.post("/api/v1/stats/", {}).status_code == 405
