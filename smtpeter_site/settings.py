"""Django settings for smtpeter; every value comes from the environment (django-environ).

The README's configuration table lists each variable and its default; keep them in step.
"""
import os
import secrets
import socket
import time
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from relay import mx as mx_routes
from smtpeter_site.envvars import env_bool, env_choice, env_float, env_int, env_ports, env_url

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DATA_DIR = Path(env("DATA_DIR", default=str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _generated_secret_key(path: Path) -> str:
    """The key in ``path``, generated there on first use.

    A development install keeps one generated key across restarts, so that sessions and
    tracking links stay valid; production sets SECRET_KEY. The file is created 0600 in one
    step (never readable by others, not even briefly); O_EXCL lets one of several processes
    starting at once create it, and the others read its key.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as key_file:
            key_file.write(secrets.token_urlsafe(50))
    # The creator may not have written its key yet: wait for it a little.
    for _ in range(20):
        key = path.read_text().strip()
        if key:
            return key
        time.sleep(0.1)
    raise ImproperlyConfigured(f"{path} is empty: delete it (a new key is generated) or set "
                               "SECRET_KEY")


DEBUG = env_bool(env, "DEBUG", False)
SECRET_KEY = env("SECRET_KEY", default=None) or _generated_secret_key(DATA_DIR / "secret_key")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env_url(env, "SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "credentials.apps.SiteAdminConfig",  # django.contrib.admin with our AdminSite
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "credentials",
    "features",
    "relay",
    "events",
    "api",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served by us (no CDN)
    "senders",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "smtpeter_site.csp.csp_middleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
]

ROOT_URLCONF = "smtpeter_site.urls"
WSGI_APPLICATION = "smtpeter_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db(
        "DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'smtpeter.sqlite3'}"
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web app read while runsmtp writes; IMMEDIATE takes the write
    # lock at BEGIN so concurrent writers wait (busy timeout) instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
    # A file, not memory: tests start runsmtp as a separate process that must see the rows.
    DATABASES["default"].setdefault("TEST", {}).setdefault(
        "NAME", env("TEST_SQLITE_NAME", default=str(DATA_DIR / "test.sqlite3"))
    )
DATABASES["default"]["CONN_MAX_AGE"] = env_int(env, "CONN_MAX_AGE", 0, minimum=0)

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "signin"
LOGIN_REDIRECT_URL = "logins"
LOGOUT_REDIRECT_URL = "signin"

# Dashboard sign-in throttling: failures per account and per IP within a window.
SIGNIN_MAX_FAILURES = env_int(env, "SIGNIN_MAX_FAILURES", 5, minimum=1)
SIGNIN_FAILURE_WINDOW = env_int(env, "SIGNIN_FAILURE_WINDOW", 900, minimum=1)
# Behind a reverse proxy that appends the client address: audit entries and throttling use
# the last X-Forwarded-For entry instead of REMOTE_ADDR. Off by default (the header is forgeable).
TRUST_X_FORWARDED_FOR = env_bool(env, "TRUST_X_FORWARDED_FOR", False)

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every request when it is missing
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# Cookies and headers: strict unless DEBUG (development over plain http).
SECURE_COOKIES = env_bool(env, "SECURE_COOKIES", not DEBUG)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env_bool(env, "SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int(env, "SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = env_bool(env, "SECURE_HSTS_PRELOAD", False)
if not SECURE_HSTS_PRELOAD:
    # Joining the browsers' preload list is the operator's decision, not a default.
    SILENCED_SYSTEM_CHECKS = ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool(env, "USE_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Tracking endpoints answer on plain http too: recipients' clients decide the scheme.
SECURE_REDIRECT_EXEMPT = [r"^t/", r"^healthz$", r"^metrics$"]  # probes may use plain http

# --- SMTP relay (runsmtp) ---------------------------------------------------
SMTP_BIND = env("SMTP_BIND", default="0.0.0.0")
SMTP_TLS_PORTS = env_ports(env, "SMTP_TLS_PORTS", [465])
SMTP_STARTTLS_PORTS = env_ports(env, "SMTP_STARTTLS_PORTS", [587, 2525])
SMTP_MX_PORTS = env_ports(env, "SMTP_MX_PORTS", [25])
SMTP_HOSTNAME = env("SMTP_HOSTNAME", default=socket.getfqdn())
TLS_CERT_FILE = env("TLS_CERT_FILE", default=str(DATA_DIR / "tls" / "cert.pem"))
TLS_KEY_FILE = env("TLS_KEY_FILE", default=str(DATA_DIR / "tls" / "key.pem"))
SMTP_MAX_MESSAGE_SIZE = env_int(env, "SMTP_MAX_MESSAGE_SIZE", 25 * 1024 * 1024, minimum=1)
SMTP_MAX_RECIPIENTS = env_int(env, "SMTP_MAX_RECIPIENTS", 1000, minimum=1)
BOUNCE_DOMAIN = env("BOUNCE_DOMAIN", default="bounces.localhost")
# The mx role without AUTH takes VERP bounces plus these local parts at BOUNCE_DOMAIN only,
# with its own (smaller) size limit: anyone on the internet can send there.
SMTP_MX_ADDRESSES = env.list("SMTP_MX_ADDRESSES", default=["postmaster", "abuse", "fbl"])
SMTP_MX_MAX_SIZE = env_int(env, "SMTP_MX_MAX_SIZE", 10 * 1024 * 1024, minimum=1)
SMTP_IDLE_TIMEOUT = env_float(env, "SMTP_IDLE_TIMEOUT", 300, positive=True)
SMTP_PREAUTH_IDLE_TIMEOUT = env_float(env, "SMTP_PREAUTH_IDLE_TIMEOUT", 30, positive=True)
# Kept below the descriptor limit by runsmtp itself (relay.limits.connection_cap).
SMTP_MAX_CONNECTIONS = env_int(env, "SMTP_MAX_CONNECTIONS", 10000, minimum=1)
SMTP_MAX_CONNECTIONS_PER_IP = env_int(env, "SMTP_MAX_CONNECTIONS_PER_IP", 100, minimum=0)
# Anyone can connect; only an AUTH shows a customer: far fewer per IP until then.
SMTP_MAX_UNAUTH_CONNECTIONS_PER_IP = env_int(env, "SMTP_MAX_UNAUTH_CONNECTIONS_PER_IP", 10,
                                             minimum=0)
SMTP_UNAUTH_DATA_BUDGET = env_int(env, "SMTP_UNAUTH_DATA_BUDGET", 64 * 1024 * 1024, minimum=0)
SMTP_TLS_HANDSHAKE_TIMEOUT = env_float(env, "SMTP_TLS_HANDSHAKE_TIMEOUT", 10, positive=True)
# uvloop: TLS in C (Cython), about half the CPU per new TLS connection; asyncio is the fallback.
# SIGTERM: sessions and deliveries in flight get this long to finish; new connections get 421.
SMTP_STOP_GRACE = env_float(env, "SMTP_STOP_GRACE", 30)
# Several runsmtp processes on one host share the listening ports (Linux SO_REUSEPORT).
SMTP_REUSE_PORT = env_bool(env, "SMTP_REUSE_PORT", False)
# Prometheus metrics of runsmtp on "host:port" (empty: none); one address per process.
METRICS_BIND = env("METRICS_BIND", default="")
# The web app's /metrics (queue gauges) answers a request with "Authorization: Bearer <this>";
# empty: /metrics is 404.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
# plain: "time level logger message"; json: one JSON object per line, for log shippers.
LOG_FORMAT = env_choice(env, "LOG_FORMAT", "plain", ["plain", "json"])
SMTP_EVENT_LOOP = env_choice(env, "SMTP_EVENT_LOOP", "uvloop", ["uvloop", "asyncio"])
SMTP_AUTH_MAX_FAILURES = env_int(env, "SMTP_AUTH_MAX_FAILURES", 5, minimum=0)
SMTP_AUTH_FAILURE_WINDOW = env_float(env, "SMTP_AUTH_FAILURE_WINDOW", 900)
SMTP_AUTH_CACHE_TTL = env_float(env, "SMTP_AUTH_CACHE_TTL", 3600)
SMTP_AUTH_THREADS = env_int(env, "SMTP_AUTH_THREADS", 2, minimum=1)
SMTP_AUTH_MAX_PENDING = env_int(env, "SMTP_AUTH_MAX_PENDING", 32, minimum=1)

# --- Outbound delivery: routing and the SMTP client (relay.mx, relay.smtp_out) ---
def _checked(name: str, parse, raw):
    try:
        return parse(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not valid: {exc}") from None


# Parsed here so that a bad value stops startup; Route hides credentials in repr (debug pages).
RELAY_ROUTES = _checked("RELAY_ROUTES", mx_routes.parse_routes, env("RELAY_ROUTES", default=""))
DNS_NAMESERVERS = _checked("DNS_NAMESERVERS", mx_routes.parse_nameservers,
                           env("DNS_NAMESERVERS", default=""))
DELIVERY_ALLOW_PRIVATE = env_bool(env, "DELIVERY_ALLOW_PRIVATE", False)
# The port of MX hosts found through DNS (25; tests point it at their own servers).
SMTP_OUT_PORT = env_int(env, "SMTP_OUT_PORT", 25, minimum=1)
# RFC 5321 4.5.3.2 timeouts (seconds) and the connect timeout.
SMTP_OUT_CONNECT_TIMEOUT = env_float(env, "SMTP_OUT_CONNECT_TIMEOUT", 30, positive=True)
SMTP_OUT_GREETING_TIMEOUT = env_float(env, "SMTP_OUT_GREETING_TIMEOUT", 300, positive=True)
SMTP_OUT_MAIL_TIMEOUT = env_float(env, "SMTP_OUT_MAIL_TIMEOUT", 300, positive=True)
SMTP_OUT_RCPT_TIMEOUT = env_float(env, "SMTP_OUT_RCPT_TIMEOUT", 300, positive=True)
SMTP_OUT_DATA_INIT_TIMEOUT = env_float(env, "SMTP_OUT_DATA_INIT_TIMEOUT", 120, positive=True)
SMTP_OUT_DATA_BLOCK_TIMEOUT = env_float(env, "SMTP_OUT_DATA_BLOCK_TIMEOUT", 180, positive=True)
SMTP_OUT_DATA_DONE_TIMEOUT = env_float(env, "SMTP_OUT_DATA_DONE_TIMEOUT", 600, positive=True)
# CA bundle for routes that require TLS (smtp+starttls://, smtps://); empty: the system store.
SMTP_OUT_CA_FILE = env("SMTP_OUT_CA_FILE", default="")

# --- Delivery (the delivery role of runsmtp) --------------------------------
# mx: to the recipients' mail servers; capture: stored as delivered, shown in the Outbox.
DELIVERY_MODE = env_choice(env, "DELIVERY_MODE", "mx", ["mx", "capture"])
DELIVERY_CONCURRENCY = env_int(env, "DELIVERY_CONCURRENCY", 100, minimum=1)  # sends at once
DELIVERY_BATCH = env_int(env, "DELIVERY_BATCH", 1000, minimum=1)  # recipients per claim
DELIVERY_TRANSACTION_RECIPIENTS = env_int(env, "DELIVERY_TRANSACTION_RECIPIENTS", 50, minimum=1)
# Connections to one next hop (host, address, port), as Postfix's defaults.
DELIVERY_DESTINATION_CONCURRENCY = env_int(env, "DELIVERY_DESTINATION_CONCURRENCY", 20,
                                           minimum=1)
DELIVERY_CONNECTION_MESSAGES = env_int(env, "DELIVERY_CONNECTION_MESSAGES", 100, minimum=1)
DELIVERY_CONNECTION_IDLE = env_float(env, "DELIVERY_CONNECTION_IDLE", 5, positive=True)
DELIVERY_RETRY_FIRST = env_float(env, "DELIVERY_RETRY_FIRST", 300, positive=True)
DELIVERY_RETRY_MAX = env_float(env, "DELIVERY_RETRY_MAX", 3600, positive=True)
DELIVERY_MAX_LIFETIME = env_float(env, "DELIVERY_MAX_LIFETIME", 86400, positive=True)
DELIVERY_LEASE = env_float(env, "DELIVERY_LEASE", 120, positive=True)
DELIVERY_POLL_INTERVAL = env_float(env, "DELIVERY_POLL_INTERVAL", 1, positive=True)
# Wake-ups closer together than this share one claim (0: claim at every wake-up).
DELIVERY_CLAIM_INTERVAL = env_float(env, "DELIVERY_CLAIM_INTERVAL", 0.05)
# A recipient deferred this long gets its one "delayed" DSN (RCPT NOTIFY=DELAY only).
DSN_DELAY_AFTER = env_float(env, "DSN_DELAY_AFTER", 14400, positive=True)
RENDER_WORKERS = env_int(env, "RENDER_WORKERS", 2, minimum=1)
RENDER_TIMEOUT = env_float(env, "RENDER_TIMEOUT", 30, positive=True)

# --- Sender domains and DKIM (senders, docs/dkim.md) ---------------------
DKIM_SIGNING = env_bool(env, "DKIM_SIGNING", True)  # false: nothing is signed
# What mail whose From domain is not a verified sender domain of its owner gets: "relay"
# (signed with DKIM_RELAY_DOMAIN, not aligned with From, and a warning on the message page) or
# "refuse" (550 5.7.1 at the end of DATA, naming the domain to verify).
SENDER_UNVERIFIED = env_choice(env, "SENDER_UNVERIFIED", "relay", ["relay", "refuse"])
DKIM_RELAY_DOMAIN = env("DKIM_RELAY_DOMAIN", default=SMTP_HOSTNAME)
DKIM_RELAY_SELECTOR = env("DKIM_RELAY_SELECTOR", default="smtpeter")
DKIM_RELAY_KEY_FILE = env("DKIM_RELAY_KEY_FILE", default=str(DATA_DIR / "dkim" / "relay.pem"))
SENDER_KEY_SECRET = env("SENDER_KEY_SECRET", default="")  # "": derived from SECRET_KEY
SENDER_SPF_MECHANISM = env("SENDER_SPF_MECHANISM", default="")  # "": a:SMTP_HOSTNAME
SENDER_DNS_TIMEOUT = env_float(env, "SENDER_DNS_TIMEOUT", 5, positive=True)
SENDER_RECHECK_INTERVAL = env_float(env, "SENDER_RECHECK_INTERVAL", 86400, positive=True)
SENDER_ROTATION_GRACE_DAYS = env_int(env, "SENDER_ROTATION_GRACE_DAYS", 7, minimum=0)

# --- Suppression lists (relay.suppression) -------------------------------
# Days an automatic entry suppresses its address (0: until removed); complaints and entries
# added by hand never expire by themselves.
SUPPRESSION_HARD_BOUNCE_DAYS = env_int(env, "SUPPRESSION_HARD_BOUNCE_DAYS", 365, minimum=0)
SUPPRESSION_SOFT_BOUNCE_DAYS = env_int(env, "SUPPRESSION_SOFT_BOUNCE_DAYS", 30, minimum=0)
# This many soft bounces of one address within the window suppress it.
SUPPRESSION_SOFT_BOUNCES = env_int(env, "SUPPRESSION_SOFT_BOUNCES", 3, minimum=1)
SUPPRESSION_SOFT_WINDOW_DAYS = env_int(env, "SUPPRESSION_SOFT_WINDOW_DAYS", 7, minimum=1)

# --- Retention (manage.py prune) -----------------------------------------
# Days kept; 0 keeps for ever. Events feed the statistics: kept far longer than bodies.
RETENTION_BODY_DAYS = env_int(env, "RETENTION_BODY_DAYS", 30, minimum=0)
RETENTION_CAPTURE_DAYS = env_int(env, "RETENTION_CAPTURE_DAYS", 30, minimum=0)
RETENTION_INTAKE_DAYS = env_int(env, "RETENTION_INTAKE_DAYS", 30, minimum=0)
RETENTION_EVENT_DAYS = env_int(env, "RETENTION_EVENT_DAYS", 400, minimum=0)
# Webhook POSTs done (delivered or given up) and their attempt log; the event itself stays.
RETENTION_WEBHOOK_DAYS = env_int(env, "RETENTION_WEBHOOK_DAYS", 30, minimum=0)
PRUNE_BATCH = env_int(env, "PRUNE_BATCH", 1000, minimum=1)  # rows per transaction
# --- Statistics (events.stats) -------------------------------------------
# The days not rolled up yet (today) are counted from the events at read time; that count is
# reused for this many seconds (per process), so that a page reload costs no recount.
STATS_LIVE_CACHE_SECONDS = env_int(env, "STATS_LIVE_CACHE_SECONDS", 30, minimum=0)
# --- Webhooks (events.webhooks; the webhooks role of runsmtp) ------------
# http:// endpoint URLs (development only); otherwise https:// is required.
WEBHOOK_ALLOW_HTTP = env_bool(env, "WEBHOOK_ALLOW_HTTP", False)
# Endpoints on loopback, private, link-local, multicast or reserved addresses (tests, labs).
WEBHOOK_ALLOW_PRIVATE = env_bool(env, "WEBHOOK_ALLOW_PRIVATE", False)
WEBHOOK_TIMEOUT = env_float(env, "WEBHOOK_TIMEOUT", 15, positive=True)  # one POST, in all
WEBHOOK_CONCURRENCY = env_int(env, "WEBHOOK_CONCURRENCY", 100, minimum=1)  # POSTs at once
WEBHOOK_ENDPOINT_CONCURRENCY = env_int(env, "WEBHOOK_ENDPOINT_CONCURRENCY", 5, minimum=1)
# Retries: the first after this, doubling up to WEBHOOK_RETRY_MAX, for WEBHOOK_RETRY_WINDOW
# after the event; an endpoint failing for the whole window is disabled.
WEBHOOK_RETRY_FIRST = env_float(env, "WEBHOOK_RETRY_FIRST", 30, positive=True)
WEBHOOK_RETRY_MAX = env_float(env, "WEBHOOK_RETRY_MAX", 6 * 3600, positive=True)
WEBHOOK_RETRY_WINDOW = env_float(env, "WEBHOOK_RETRY_WINDOW", 3 * 86400, positive=True)
WEBHOOK_LEASE = env_float(env, "WEBHOOK_LEASE", 60, positive=True)
WEBHOOK_POLL_INTERVAL = env_float(env, "WEBHOOK_POLL_INTERVAL", 1, positive=True)
# How long a process keeps an owner's endpoint list for record() (changes made in another
# process reach it after at most this long).
WEBHOOK_CACHE_SECONDS = env_float(env, "WEBHOOK_CACHE_SECONDS", 5)

# --- Features ------------------------------------------------------------
# Tracking URLs are this plus "c/<token>" or "o/<token>": it always ends in "/".
TRACKING_BASE_URL = env_url(env, "TRACKING_BASE_URL", f"{SITE_URL}/t/", trailing_slash=True)
# The names features.inline.INLINERS knows (a test keeps them in step).
CSS_INLINER = env_choice(env, "CSS_INLINER", "css-inline", ["css-inline", "premailer"])
# A click or open this soon after delivery is flagged "fast" (likely a scanner, not a person).
TRACKING_FAST_SECONDS = env_float(env, "TRACKING_FAST_SECONDS", 2.0)

# --- REST API (api/) ---------------------------------------------------
# Requests per minute one API key may make; past it the API answers 429 with Retry-After.
API_RATE_LIMIT = env_int(env, "API_RATE_LIMIT", 600, minimum=1)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.auth.BearerKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["api.auth.KeyScope"],
    "DEFAULT_THROTTLE_CLASSES": ["api.auth.PerKeyThrottle"],
    "DEFAULT_PAGINATION_CLASS": "api.pagination.Cursor",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["api.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "api.errors.handler",
    "UNAUTHENTICATED_USER": None,
    "DATETIME_FORMAT": "iso-8601",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "smtpeter API",
    "DESCRIPTION": "Messages, events, logins, suppressions, statistics, webhooks and sender "
                   "domains of the API key's owner. See docs/api.md.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Event types appear in events and in webhook endpoints: one schema component for both.
    "ENUM_NAME_OVERRIDES": {"EventTypeEnum": "api.serializers.EVENT_TYPE_NAMES"},
}

LOG_LEVEL = env_choice(env, "LOG_LEVEL", "INFO",
                       ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], fold_case=True)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "smtpeter_site.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # aiosmtpd logs a deprecation warning on every successful AUTH.
        "mail.log": {"level": "ERROR"},
        "django.db.backends": {"level": "INFO"},
    },
}
