"""Template helpers of the queue pages: capture mode (for the nav), reading event data."""
from datetime import datetime

from django import template
from django.conf import settings
from django.utils.dateparse import parse_datetime

register = template.Library()


@register.simple_tag
def capture_mode() -> bool:
    """DELIVERY_MODE=capture: the nav shows the Outbox."""
    return settings.DELIVERY_MODE == "capture"


@register.filter
def get(mapping: dict, key: str):
    """mapping[key], or None (event data in the timeline)."""
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.filter
def isotime(value: str | None) -> datetime | None:
    """An ISO 8601 time from event data as a datetime (for the date filter), or None."""
    try:
        return parse_datetime(value) if isinstance(value, str) else None
    except ValueError:
        return None
