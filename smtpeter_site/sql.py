"""The old name of smtpeter_site.db's insert_sql; import it from smtpeter_site.db."""
from smtpeter_site.db import insert_sql

__all__ = ["insert_sql"]
