"""Cursor pagination: stable pages while new rows arrive, an opaque ``cursor`` parameter."""
from rest_framework.pagination import CursorPagination


class Cursor(CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
