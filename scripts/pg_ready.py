"""Exit 0 when the PostgreSQL server in the URL answers, 1 otherwise (used by `make test`)."""
import sys
from urllib.parse import urlsplit

import psycopg

url = urlsplit(sys.argv[1])
try:
    psycopg.connect(
        host=url.hostname, port=url.port or 5432, user=url.username or "postgres",
        password=url.password, dbname="postgres", connect_timeout=3,
    ).close()
except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
    print(f"PostgreSQL: {exc}", file=sys.stderr)
    sys.exit(1)
