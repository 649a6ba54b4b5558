"""The staff CSV export of logins and their feature sets."""
from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, TextIO

from .models import FEATURE_NAMES, Login

CSV_HEADER = ["customer", "username", "description", "enabled", *FEATURE_NAMES,
              "created", "last_used"]


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # Spreadsheets run cells that start like a formula; a leading quote keeps them text.
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def login_rows(logins: Iterable[Login]) -> Iterable[list[str]]:
    yield CSV_HEADER
    for login in logins:
        yield [
            _cell(login.owner.get_username()),
            _cell(login.username),
            _cell(login.description),
            "yes" if login.enabled else "no",
            *("on" if getattr(login, name) else "off" for name in FEATURE_NAMES),
            login.created.isoformat(timespec="seconds"),
            login.last_used.isoformat(timespec="seconds") if login.last_used else "",
        ]


def write_logins_csv(out: TextIO, logins: Iterable[Login]) -> None:
    """Write the CSV to any file-like object (an HttpResponse works)."""
    csv.writer(out).writerows(login_rows(logins))
