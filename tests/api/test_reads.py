"""GET /api/v1/events/ and /api/v1/messages/: filters, cursor pages, owner isolation (another
owner's queue id is 404), the raw message, JSON errors for unknown paths and methods."""
from datetime import timedelta

import pytest
from django.utils import timezone

from events.models import Event
from relay.models import Attempt

from .conftest import store_message

pytestmark = pytest.mark.django_db


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [e["id"] for e in response.json()["results"]]


def test_events_are_the_owner_s_only_newest_first(api, alice_mail, bob_mail):
    r = api.get("/api/v1/events/")
    events = r.json()["results"]
    assert [e["type"] for e in events] == ["open", "click", "delivery"]
    assert {e["message"] for e in events} == {alice_mail.queue_id}
    click = events[1]
    assert click["machine"] is True and click["flags"] == ["scanner"]
    assert click["data"] == {"url": "https://example.com/"}
    assert click["recipient"] == "ann@example.com" and click["tags"] == ["news"]
    assert events[0]["machine"] is False
    assert click["time"].endswith("Z")  # RFC 3339, UTC


def test_event_filters(api, alice_mail, bob_mail):
    login = alice_mail.login.username
    assert len(ids(api.get("/api/v1/events/", {"type": "click"}))) == 1
    assert len(ids(api.get("/api/v1/events/", {"recipient": "ANN@example.com"}))) == 2
    assert len(ids(api.get("/api/v1/events/", {"login": login}))) == 3
    assert len(ids(api.get("/api/v1/events/", {"tag": "news"}))) == 3
    assert ids(api.get("/api/v1/events/", {"tag": "other"})) == []
    assert len(ids(api.get("/api/v1/events/", {"message": alice_mail.queue_id}))) == 3
    # bob's message through alice's key: nothing.
    assert ids(api.get("/api/v1/events/", {"message": bob_mail.queue_id})) == []
    assert ids(api.get("/api/v1/events/", {"login": bob_mail.login.username})) == []
    now = timezone.now()
    Event.objects.filter(type="delivery").update(time=now - timedelta(days=2))
    since = (now - timedelta(days=1)).isoformat()
    assert len(ids(api.get("/api/v1/events/", {"since": since}))) == 2
    assert len(ids(api.get("/api/v1/events/", {"until": since}))) == 1
    assert len(ids(api.get("/api/v1/events/", {"since": "2000-01-01T00:00:00+02:00"}))) == 3


@pytest.mark.parametrize("params,field", [
    ({"type": "party"}, "type"), ({"since": "yesterday"}, "since"),
    ({"until": "2026-13-01T00:00:00Z"}, "until"), ({"message": "x" * 21}, "message"),
    ({"recipient": "a\x00b"}, "recipient"),
])
def test_bad_event_filters_are_400_with_field_errors(api, params, field):
    r = api.get("/api/v1/events/", params)
    assert r.status_code == 400
    assert field in r.json()


def test_cursor_pages_cover_everything_once(api, alice_mail):
    seen, url, pages = [], "/api/v1/events/?page_size=1", 0
    while url:
        r = api.get(url)
        seen += ids(r)
        url = r.json()["next"]
        pages += 1
    assert pages == 3 and len(seen) == len(set(seen)) == 3
    assert api.get("/api/v1/events/?cursor=garbage").status_code == 404


def test_messages_list_with_summaries_and_filters(api, alice, alice_mail, bob_mail):
    other = store_message(alice, None, ("zed@example.org",), subject="invoice")
    body = api.get("/api/v1/messages/").json()
    assert [m["id"] for m in body["results"]] == [other.queue_id, alice_mail.queue_id]
    m = body["results"][1]
    assert m["recipients_total"] == 2 and m["states"] == [{"state": "queued", "count": 2}]
    assert m["features"] == {"clicktracking": True} and m["tags"] == ["news"]
    found = api.get("/api/v1/messages/", {"recipient": "zed@"}).json()["results"]
    assert [m["id"] for m in found] == [other.queue_id]
    found = api.get("/api/v1/messages/", {"tag": "news"}).json()["results"]
    assert [m["id"] for m in found] == [alice_mail.queue_id]
    assert api.get("/api/v1/messages/", {"status": "nope"}).status_code == 400
    assert api.get("/api/v1/messages/", {"date_from": "29-11-2026"}).status_code == 400


def test_staff_keys_see_only_their_own_messages_too(db, staff, alice_mail):
    from .conftest import key_client

    assert key_client(staff, "read").get("/api/v1/messages/").json()["results"] == []
    r = key_client(staff, "read").get(f"/api/v1/messages/{alice_mail.queue_id}/")
    assert r.status_code == 404


def test_message_detail(api, alice_mail):
    r1 = alice_mail.recipients.order_by("id").first()
    Attempt.objects.create(recipient=r1, time=timezone.now(), host="mx.example.com", code=250,
                           enhanced="2.0.0", text="ok", outcome="delivered")
    d = api.get(f"/api/v1/messages/{alice_mail.queue_id}/").json()
    assert d["envelope"]["mail_from"] == "shop@example.com"
    assert d["envelope"]["rcpt_to"] == ["ann@example.com", "bo@example.com"]
    assert d["recipients"][0]["mail_from_sent"] == "shop@example.com"
    assert d["recipients"][0]["attempts"][0]["host"] == "mx.example.com"
    assert d["features"] == {"clicktracking": True}
    assert [e["type"] for e in d["events"]] == ["delivery", "click", "open"]
    assert d["events"][2]["recipient"] == "bo@example.com"


def test_bouncetracking_shows_the_envelope_as_sent(api, alice):
    m = store_message(alice, None, ("ann@example.com",))
    m.features = {"bouncetracking": True}
    m.save()
    d = api.get(f"/api/v1/messages/{m.queue_id}/").json()
    assert d["envelope"]["mail_from"] == "shop@example.com"
    sent = d["recipients"][0]["mail_from_sent"]
    assert sent != "shop@example.com" and "@" in sent  # the VERP address


def test_raw_is_the_message_as_received(api, alice_mail):
    r = api.get(f"/api/v1/messages/{alice_mail.queue_id}/raw")
    assert r.status_code == 200 and r["Content-Type"] == "message/rfc822"
    assert r.content == b"Subject: hi\r\n\r\nbody\r\n"
    r = api.get(f"/api/v1/messages/{alice_mail.queue_id}/raw", HTTP_ACCEPT="message/rfc822")
    assert r.status_code == 200


def test_another_owner_s_message_is_404_everywhere(api, bob_mail):
    for path in (f"/api/v1/messages/{bob_mail.queue_id}/", "/api/v1/messages/%00/raw",
                 "/api/v1/messages/%00/", "/api/v1/logins/%00/", "/api/v1/events/%00/",
                 f"/api/v1/messages/{bob_mail.queue_id}/raw",
                 "/api/v1/messages/NOSUCHMESSAGE/", "/api/v1/messages/NOSUCHMESSAGE/raw"):
        r = api.get(path)
        assert r.status_code == 404, path
        assert r.json() in ({"detail": "No such message."}, {"detail": "Not found."})


def test_unknown_paths_and_methods_are_json_errors(api):
    r = api.get("/api/v1/nothing-here/")
    assert r.status_code == 404 and r.json() == {"detail": "Not found."}
    r = api.delete("/api/v1/events/")
    assert r.status_code == 405 and "detail" in r.json()
    r = api.client.post("/api/v1/suppressions/", "{not json", content_type="application/json",
                        headers=api.headers)
    assert r.status_code == 400 and "detail" in r.json()
    r = api.client.post("/api/v1/suppressions/", "a=b", content_type="text/plain",
                        headers=api.headers)
    assert r.status_code == 415


def test_the_schema_is_public_openapi_3_json_and_names_the_bearer_key(db):
    from django.test import Client

    r = Client().get("/api/v1/schema/?format=json")
    assert r.status_code == 200 and "json" in r["Content-Type"]
    schema = r.json()
    assert schema["openapi"].startswith("3.")
    assert schema["components"]["securitySchemes"]["apiKey"] == {
        "type": "http", "scheme": "bearer",
        "description": "An API key from the dashboard's API keys page."}
    paths = set(schema["paths"])
    assert {"/api/v1/events/", "/api/v1/messages/", "/api/v1/messages/{queue_id}/",
            "/api/v1/messages/{queue_id}/raw", "/api/v1/logins/", "/api/v1/logins/{id}/",
            "/api/v1/logins/{id}/reset-password/", "/api/v1/suppressions/",
            "/api/v1/suppressions/{id}/", "/api/v1/stats/", "/api/v1/webhooks/",
            "/api/v1/webhooks/{id}/", "/api/v1/webhooks/{id}/deliveries/",
            "/api/v1/webhooks/{id}/test/", "/api/v1/domains/", "/api/v1/domains/{id}/",
            "/api/v1/domains/{id}/check/", "/api/v1/domains/{id}/rotate/"} == paths
    assert Client().get("/api/v1/docs/").status_code == 200
