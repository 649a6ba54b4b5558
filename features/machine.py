"""Signs that a click or open came from a machine (link scanner, image proxy, prefetch)."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

# Security gateways that follow every link, image proxies that fetch every image, and
# generic HTTP clients. Matched anywhere in the User-Agent, any case.
_SCANNERS = re.compile(
    r"barracuda|mimecast|proofpoint|symantec|messagelabs|safelinks|trendmicro|forcepoint"
    r"|ironport|cisco|fortinet|sophos|zscaler|urlscan|virustotal|bitdefender|kaspersky"
    r"|bot\b|bot/|spider|crawler|headlesschrome|phantomjs|python-requests|python-urllib"
    r"|aiohttp|httpx|curl/|wget/|go-http-client|java/|okhttp|libwww|facebookexternalhit"
    r"|slackbot|linkedinbot|twitterbot|skypeuripreview|whatsapp|preview",
    re.I,
)
_PROXIES = re.compile(r"googleimageproxy|yahoomailproxy|ggpht\.com|outlook-ios|mail\.ru", re.I)


def machine_flags(method: str, user_agent: str, delivered_at: datetime | None,
                  now: datetime, fast_seconds: float) -> list[str]:
    """Reasons to leave this click or open out of statistics (empty for a likely person)."""
    flags = []
    if method == "HEAD":
        flags.append("head")
    if not user_agent.strip():
        flags.append("no-user-agent")
    elif _SCANNERS.search(user_agent):
        flags.append("scanner")
    elif _PROXIES.search(user_agent):
        flags.append("proxy")
    if delivered_at is not None and now - delivered_at <= timedelta(seconds=fast_seconds):
        flags.append("fast")
    return flags
