"""The staff's queue page (depth by state, the oldest message, deliveries per minute, top
deferral reasons by destination) and the web app's token-guarded /metrics."""
from datetime import timedelta

import pytest
from bs4 import BeautifulSoup
from django.utils import timezone

from relay.models import Message

from .test_pages import deliver, make_message, signed_in

pytestmark = pytest.mark.django_db


def test_staff_see_the_queue_at_a_glance(alice, staff):
    old = make_message(alice, recipients=("a@example.org", "b@example.org"))
    Message.objects.filter(pk=old.pk).update(received_at=timezone.now() - timedelta(hours=3))
    deliver(make_message(alice, recipients=("c@example.org",)))
    deliver(make_message(alice, recipients=("d@example.org", "e@example.org")), "deferred",
            code=451, enhanced="4.7.1", text="greylisted, come back later")
    make_message(alice, recipients=("f@example.org",), state="held")

    response = signed_in(staff).get("/queue/")
    assert response.status_code == 200
    page = BeautifulSoup(response.content, "html.parser")
    depth = {row["data-state"]: int(row.select_one(".count").text)
             for row in page.select("#queue-depth tbody tr")}
    # "old" was claimed and given nothing in deliver(): still queued, as are none of the others
    assert depth == {"queued": 2, "deferred": 2, "held": 1, "intake": 0}
    assert "3\xa0hours ago" in page.select_one("#oldest").text
    assert page.select_one('[data-figure="minute"]').text == "1"
    [row] = page.select("#deferrals tbody tr")
    cells = [td.text.strip() for td in row.select("td")]
    assert cells == ["mx.example.org", "451 4.7.1 greylisted, come back later", "2"]
    assert page.select_one('nav a[aria-current="page"]').text == "Queue"


def test_the_queue_page_is_not_found_for_customers(alice):
    assert signed_in(alice).get("/queue/").status_code == 404


def test_metrics_on_the_web_app_need_the_token(client, settings, alice):
    make_message(alice, recipients=("a@example.org",))
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404  # off without a token
    settings.METRICS_TOKEN = "t0ken-for-prometheus"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer t0ken-for-prometheus")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'smtpeter_queue_depth{state="queued"} 1.0' in text
    assert "smtpeter_queue_up 1.0" in text
    assert "smtpeter_webhook_backlog 0.0" in text


def test_the_webhook_backlog_gauge_counts_pending_posts(client, settings, alice):
    from events import webhooks

    endpoint, _secret = webhooks.create_endpoint(alice, "https://hooks.example.com/in",
                                                 ["delivery"], "", actor=alice, ip="")
    webhooks.send_test(endpoint, actor=alice, ip="")
    settings.METRICS_TOKEN = "t0ken-for-prometheus"
    text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer t0ken-for-prometheus").content
    assert b"smtpeter_webhook_backlog 1.0" in text


def test_healthz_answers_without_a_sign_in(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}
