"""Dashboard URLs of the queue: messages, a message's page and its parts, the Outbox."""
from django.urls import path

from . import views

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
]
