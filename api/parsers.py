"""The API's JSON parser: reads the body itself with a limit per view (a message sent over HTTP
may be as large as SMTP_MAX_MESSAGE_SIZE, base64 and JSON included; other bodies as large as
Django's DATA_UPLOAD_MAX_MEMORY_SIZE), and turns any undecodable or too deeply nested body
into a 400, never a 500."""
from __future__ import annotations

import json

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from .errors import TooLarge


def body_limit(view) -> int:
    """Bytes of request body ``view`` takes: its max_body() if it has one."""
    limit = getattr(view, "max_body", None)
    if limit is not None:
        return limit()
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2**31


class JSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = body_limit((parser_context or {}).get("view"))
        data = stream.read(limit + 1)
        if len(data) > limit:
            raise TooLarge(f"The request body is over {limit} bytes.")
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise ParseError(f"JSON parse error: {str(exc)[:200]}") from None
