"""The features seen from Django: keys from settings, render for a stored message, link lookup.

Delivery calls `render_for(message, recipient)`; the tracking views call `link_for()`. A token
names (message, recipient, index), so the tracking URLs stay short; the URL behind the index is
the one delivery stored when it first prepared the message (relay.queue.store_links, read by
relay.services.tracked_url: one indexed row). A message without stored lists (mail from before
they were stored, a preview) has them derived again from the stored message by the link
scanner alone (no CSS inlining, no re-encoding; cached per process).
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from django.conf import settings

from .links import CLICK
from .render import Prepared, RenderContext, Rendered, link_lists, prepare
from .tokens import derive_key, parse_verp

if TYPE_CHECKING:  # features imports no models at run time (DESIGN.md)
    from relay.models import Message, Recipient

log = logging.getLogger(__name__)
# The click endpoint's per-process cache of link lists: at most this many messages and this
# many URL characters in all (one message may hold 2,000 URLs of 8 KB: 16 MB).
_CACHE_SIZE = 512
_CACHE_CHARS = 16 * 1024 * 1024
_prepared: OrderedDict[int, tuple[list[str], list[str], int]] = OrderedDict()
_cached_chars = 0
_lock = threading.Lock()


@lru_cache(maxsize=4)
def _keys(secret_key: str) -> tuple[bytes, bytes]:
    return derive_key(secret_key, "tracking"), derive_key(secret_key, "verp")


def tracking_key() -> bytes:
    return _keys(settings.SECRET_KEY)[0]


def verp_key() -> bytes:
    return _keys(settings.SECRET_KEY)[1]


def context(message_id: int, recipient_id: int, mail_from: str = "",
            recipient: str = "") -> RenderContext:
    """A RenderContext filled from settings (tracking base URL, keys, bounce domain)."""
    tracking, verp = _keys(settings.SECRET_KEY)
    base = settings.TRACKING_BASE_URL
    return RenderContext(
        message_id=message_id, recipient_id=recipient_id, mail_from=mail_from,
        tracking_base_url=base if base.endswith("/") else base + "/",
        tracking_key=tracking, verp_key=verp, bounce_domain=settings.BOUNCE_DOMAIN,
        recipient=recipient,
    )


def prepare_message(raw: bytes, features: dict[str, bool]) -> Prepared:
    return prepare(raw, features, settings.CSS_INLINER, settings.TRACKING_BASE_URL)


def render_for(message: Message, recipient: Recipient,
               prepared: Prepared | None = None) -> Rendered:
    """What delivery sends to one Recipient of a stored Message (pass prepared to reuse it)."""
    prepared = prepared or prepare_message(bytes(message.raw), message.features or {})
    rendered = prepared.for_recipient(
        context(message.pk, recipient.pk, message.mail_from, recipient.address)
    )
    for warning in rendered.warnings:
        log.warning("render message=%s recipient=%s: %s", message.pk, recipient.pk, warning)
    return rendered


def link_for(message_id: int, kind: str, index: int) -> str | None:
    """The URL behind a click (kind CLICK) or image (OPEN; "" = the pixel) index, or None."""
    from relay.services import tracked_url  # relay's table, read through relay's services

    stored, url = tracked_url(message_id, "c" if kind == CLICK else "o", index)
    if stored:
        return url
    with _lock:
        lists = _prepared.get(message_id)
        if lists is not None:
            _prepared.move_to_end(message_id)
    if lists is None:
        from relay.services import raw_and_features  # relay's table, through relay's services

        row = raw_and_features(message_id)
        if row is None:
            return None
        links, images = link_lists(bytes(row[0]), row[1] or {})
        chars = sum(map(len, links)) + sum(map(len, images))
        lists = (links, images, chars)
        _remember(message_id, lists)
    urls = lists[0] if kind == CLICK else lists[1]
    return urls[index] if 0 <= index < len(urls) else None


def delivery_of(message_id: int, recipient_id: int) -> tuple[datetime | None] | None:
    """(time of the recipient's latest delivery or None), or None if no such recipient.

    Each table is read through its owner's services: relay's recipients, events' deliveries.
    """
    from events.services import last_delivery
    from relay.services import recipient_exists

    if not recipient_exists(message_id, recipient_id):
        return None
    return (last_delivery(recipient_id),)


def _remember(message_id: int, lists: tuple[list[str], list[str], int]) -> None:
    global _cached_chars
    with _lock:
        old = _prepared.pop(message_id, None)
        if old is not None:
            _cached_chars -= old[2]
        _prepared[message_id] = lists
        _cached_chars += lists[2]
        # The newest entry stays even alone over the bound: it is the one being clicked.
        while len(_prepared) > 1 and (len(_prepared) > _CACHE_SIZE
                                      or _cached_chars > _CACHE_CHARS):
            _cached_chars -= _prepared.popitem(last=False)[1][2]


def cached_link_chars() -> tuple[int, int]:
    """(messages, URL characters) in the link cache."""
    with _lock:
        return len(_prepared), _cached_chars


def forget_links() -> None:
    """Empty the per-process link cache (tests)."""
    global _cached_chars
    with _lock:
        _prepared.clear()
        _cached_chars = 0


def bounce_ids(address: str) -> tuple[int, int] | None:
    """(message id, recipient id) of a genuine VERP address at BOUNCE_DOMAIN, else None."""
    return parse_verp(verp_key(), address, settings.BOUNCE_DOMAIN)
