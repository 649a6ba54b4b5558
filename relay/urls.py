"""Dashboard URLs of the queue: messages, a message's page and its parts, the Outbox, the
staff's queue at a glance, the Bounces page, the suppression list."""
from django.urls import path

from . import suppression_views, views

# Queue ids are upper-case hex (relay.models.new_queue_id); the pattern takes any case.
QID = "<str:queue_id>"
urlpatterns = [
    path("messages/", views.message_list, name="messages"),
    path(f"messages/{QID}/", views.message_page, name="message"),
    path(f"messages/{QID}/raw/", views.message_raw, name="message_raw"),
    path(f"messages/{QID}/html/", views.message_html, name="message_html"),
    path(f"messages/{QID}/retry/", views.message_action, {"action": "retry"},
         name="message_retry"),
    path(f"messages/{QID}/hold/", views.message_action, {"action": "hold"},
         name="message_hold"),
    path(f"messages/{QID}/release/", views.message_action, {"action": "release"},
         name="message_release"),
    path(f"messages/{QID}/delete/", views.message_delete, name="message_delete"),
    path("outbox/", views.outbox, name="outbox"),
    path("queue/", views.queue_page, name="queue"),
    path("bounces/", views.bounce_list, name="bounces"),
    path("suppressions/", suppression_views.suppression_list, name="suppressions"),
    path("suppressions/add/", suppression_views.suppression_add, name="suppression_add"),
    path("suppressions/import/", suppression_views.suppression_import,
         name="suppression_import"),
    path("suppressions/export.csv", suppression_views.suppression_export,
         name="suppression_export"),
    path("suppressions/<int:pk>/remove/", suppression_views.suppression_remove,
         name="suppression_remove"),
]
