# make run: install and start everything on the embedded defaults.
# make test: install and run every test (SQLite, then PostgreSQL when reachable or CI=true).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PG_URL ?= postgres://postgres@127.0.0.1:5432/smtpeter
PIP_QUIET := --quiet --disable-pip-version-check

.PHONY: install run test test-sqlite test-postgres bench lint

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_QUIET) -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import django, aiosmtpd, pytest_django, playwright"
	touch $@

install: $(STAMP)

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py ensureadmin
	$(PY) manage.py maketlscert
	DEBUG=true $(PY) scripts/rundev.py

test: install
	scripts/ensure-test-tools.sh
	$(VENV)/bin/ruff check .
	$(MAKE) test-sqlite
	$(MAKE) test-postgres

test-sqlite: install
	$(PY) -m pytest

test-postgres: install
	@if $(PY) scripts/pg_ready.py "$(PG_URL)"; then \
		DATABASE_URL="$(PG_URL)" $(PY) -m pytest; \
	elif [ "$$CI" = "true" ]; then \
		echo "CI=true: PostgreSQL at $(PG_URL) is required" >&2; exit 1; \
	else \
		echo "PostgreSQL not reachable at $(PG_URL): skipped (CI runs it)"; \
	fi

bench: install
	$(PY) bench/run.py

lint: install
	$(VENV)/bin/ruff check .
