"""Template helpers of the queue pages: capture mode (for the nav), a recipient state's pill."""
from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def capture_mode() -> bool:
    """DELIVERY_MODE=capture: the nav shows the Outbox."""
    return settings.DELIVERY_MODE == "capture"


@register.filter
def get(mapping: dict, key: str):
    """mapping[key], or None (event data in the timeline)."""
    return mapping.get(key) if isinstance(mapping, dict) else None
