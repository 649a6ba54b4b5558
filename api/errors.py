"""Every error as JSON: {"detail": …} or field errors {"field": ["…"]}; 413 for a body over
the size limit; Retry-After on 429 (DRF sets it)."""
from __future__ import annotations

from django.core.exceptions import RequestDataTooBig
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class TooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request is larger than this server takes."
    default_code = "too_large"


def handler(exc, context) -> Response | None:
    if isinstance(exc, RequestDataTooBig):
        exc = TooLarge()
    return exception_handler(exc, context)
