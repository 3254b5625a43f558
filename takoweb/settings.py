"""Settings for Tako VM for Django.

Every knob comes from the environment (see the README's configuration table). The defaults run
on one laptop: SQLite in WAL mode, files under ./var, the web server on 127.0.0.1.
"""

from __future__ import annotations

import os
import secrets
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

from csp.constants import NONCE
from django.core.exceptions import ImproperlyConfigured

from takoweb.env import (
    env_database,
    env_redis_url,
    envaddress,
    envbool,
    envchoice,
    envfloat,
    envint,
    envlist,
    envloglevel,
    envmemory,
    envname,
    envstr,
    machine_memory,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(envstr("TAKO_DATA_DIR", str(BASE_DIR / "var"))).resolve()
try:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
except OSError as exc:
    raise ImproperlyConfigured(f"TAKO_DATA_DIR: cannot create {DATA_DIR} ({exc.strerror})") from None


def _secret_key() -> str:
    """TAKO_SECRET_KEY, else a random key kept in DATA_DIR so sessions survive restarts."""
    key = envstr("TAKO_SECRET_KEY", "")
    if key:
        return key
    path = DATA_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = envbool("TAKO_DEBUG", False)
ALLOWED_HOSTS = envlist("TAKO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
VERSION = "0.1.0"

# Which process this is: "web" for the web server (takoweb.serve and takoweb.asgi set it before
# the settings load), "worker" for everything else (the worker cluster, the pool keeper, commands).
TAKO_PROCESS_ROLE = envchoice("TAKO_PROCESS_ROLE", "worker", ("web", "worker"))
# The web server's address, read by the server (takoweb.serve) and by the check that keeps
# anonymous use on loopback (executions/checks.py) alike, so what is checked is what is served.
TAKO_BIND_ADDRESS = envaddress("HOST", "127.0.0.1")
TAKO_PORT = envint("PORT", 8000, minimum=1, maximum=65535)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "django_q",
    "template_partials",
    "axes",
    "csp",
    "executions",
]

MIDDLEWARE = [  # Django's own where they are subclassed: the same hooks, run on the event loop (HooksOnTheLoop)
    "executions.middleware.CorrelationIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "executions.middleware.ContentSecurityPolicyMiddleware",
    "executions.middleware.StaticFilesMiddleware",  # WhiteNoise, async-capable
    "executions.middleware.SessionMiddleware",
    "executions.middleware.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "executions.middleware.AuthenticationMiddleware",
    "executions.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "axes.middleware.AxesMiddleware",  # answers a locked-out login with its page (429)
]

ROOT_URLCONF = "takoweb.urls"
WSGI_APPLICATION = "takoweb.wsgi.application"
ASGI_APPLICATION = "takoweb.asgi.application"

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

# Connections are kept for reuse in every process, on SQLite too. The web server's requests run in
# threads it keeps (takoweb/handlers.py), not in a new thread each, so a kept connection serves
# the next request (Django's docs advise against this only for a thread per request); a worker's
# queue consumer (executions/broker.py) would otherwise open a connection for every look.
_CONN_MAX_AGE = 60
# DATABASE_URL (postgres://user:password@host:5432/name) for PostgreSQL when scaled out; else the
# embedded SQLite, tuned for many writers (web + workers): WAL, and IMMEDIATE transactions so a
# writer takes the lock up front instead of failing with "database is locked" halfway through.
_SQLITE = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": envstr("TAKO_SQLITE_PATH", str(DATA_DIR / "tako.sqlite3")),
        "CONN_MAX_AGE": _CONN_MAX_AGE,
        "OPTIONS": {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
        "TEST": {"NAME": str(DATA_DIR / "test.sqlite3")},
    }
}
_DATABASE_FROM_URL = env_database("DATABASE_URL", conn_max_age=_CONN_MAX_AGE)
DATABASES = {"default": _DATABASE_FROM_URL} if _DATABASE_FROM_URL else _SQLITE
USES_SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Live output reaches the browser from the database (the worker is another process); with
# REDIS_URL the worker also pushes through Redis, so pages hear of new output at once.
REDIS_URL = env_redis_url("REDIS_URL")
# Rate limits are counted where every process and host sees them: Redis when there is one (this
# cache), else the database (services/limits.py).
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
CHANNEL_LAYERS = {
    "default": (
        {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}
        if REDIS_URL
        else {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    )
}
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "ui-executions"
LOGOUT_REDIRECT_URL = "login"
# Login throttling (django-axes): after TAKO_LOGIN_FAILURE_LIMIT failed logins for one user name
# from one address, that pair is locked out for TAKO_LOGIN_LOCKOUT_MINUTES (429, on the login page
# and /admin/ alike); a success resets the count; an admin unlocks early in /admin/ (Access
# attempts: delete) or with `manage.py axes_reset_username NAME`.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = envint("TAKO_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=envint("TAKO_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "executions.views.accounts.client_address"
AXES_VERBOSE = False
AXES_DISABLE_ACCESS_LOG = True  # successful logins are not kept; failures are (AccessAttempt)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Every page: scripts and styles only from this site's own files (no inline script or style, no
# CDN), no plugins, not framed by another site. Program output shown on pages is text, or HTML
# inside a sandboxed frame without scripts.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        # A page that asks for request.csp_nonce (the New page's editor) also allows <style> elements
        # carrying it; no other inline style. Pages that do not ask get no nonce in their header.
        "style-src": ["'self'", NONCE],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],  # the live pages' websocket is same-origin
        "frame-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
# Behind a reverse proxy that terminates TLS (see the README's deployment section): secure
# cookies, HSTS, redirect to HTTPS, trust the proxy's X-Forwarded-Proto.
TAKO_HTTPS = envbool("TAKO_HTTPS", False)
if TAKO_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = envint("TAKO_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    CSRF_TRUSTED_ORIGINS = [f"https://{h}" for h in ALLOWED_HOSTS if h and not h.startswith("[")]

# --- The sandbox -------------------------------------------------------------------------
# Limits of the API (docs/API.md); the deployment may lower TAKO_MAX_TIMEOUT.
TAKO_MAX_TIMEOUT = envint("TAKO_MAX_TIMEOUT", 300, minimum=1, maximum=3600)
TAKO_MAX_CODE_CHARS = 100_000
TAKO_MAX_INPUT_BYTES = 1_000_000
# Input files (`files`, written read-only under /input): how many, each, and in all.
TAKO_MAX_INPUT_FILES = envint("TAKO_MAX_INPUT_FILES", 20, minimum=0, maximum=1000)
TAKO_MAX_INPUT_FILE_BYTES = envint("TAKO_MAX_INPUT_FILE_BYTES", 10 * 1024 * 1024, minimum=1)
TAKO_MAX_INPUT_FILES_BYTES = envint("TAKO_MAX_INPUT_FILES_BYTES", 25 * 1024 * 1024, minimum=1)
TAKO_OUTPUT_CAP_BYTES = envint("TAKO_OUTPUT_CAP_BYTES", 65536, minimum=1024)
# Where per-run files (/code, /input) are written; the Docker engine must see the same path.
TAKO_WORK_DIR = Path(envstr("TAKO_WORK_DIR", str(DATA_DIR / "runs"))).resolve()
# How the base of the job-type images is obtained: "registry" (FROM python:3.11-slim),
# "offline" (debootstrap from the machine's Debian mirror), or "auto" (registry if it answers).
TAKO_IMAGE_BASE = envchoice("TAKO_IMAGE_BASE", "auto", ("auto", "registry", "offline"))
TAKO_DEBIAN_MIRROR = envstr("TAKO_DEBIAN_MIRROR", "")  # default: the machine's own apt source
# Names this deployment's containers on a shared engine (default: derived from the database).
TAKO_DEPLOYMENT_ID = envstr("TAKO_DEPLOYMENT_ID", "")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"correlation_id": {"()": "executions.correlation.CorrelationIdFilter"}},
    "formatters": {"plain": {"format": LOG_FORMAT}, "json": {"()": "executions.correlation.JsonFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["correlation_id"],
            "formatter": envchoice("TAKO_LOG_FORMAT", "plain", ("plain", "json")),
        },
    },
    "root": {"handlers": ["console"], "level": envloglevel("TAKO_LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "ERROR"}},
}
# Per-run `requirements`: pip packages installed for one run from the host-side wheel cache.
TAKO_ALLOW_REQUIREMENTS = envbool("TAKO_ALLOW_REQUIREMENTS", True)
# Host-side cache of wheels for per-run requirements, mounted read-only into the sandbox.
TAKO_WHEEL_CACHE = Path(envstr("TAKO_WHEEL_CACHE", str(DATA_DIR / "wheels"))).resolve()

# --- Jobs ----------------------------------------------------------------------------------------
# Each host runs as many containers at once (sync and async) as its budget allows
# (services/lifecycle.py): the memory limits of its running containers add up to at most
# TAKO_HOST_MEMORY; their CPU limits to at most TAKO_HOST_CPUS times TAKO_CPU_OVERSUBSCRIPTION (sleeping
# and I/O-bound jobs cost little CPU); never more than TAKO_MAX_WORKERS containers (also the worker
# cluster's size). Long jobs (a declared timeout over TAKO_QUICK_TIMEOUT, or per-run requirements)
# may fill only (1 - TAKO_QUICK_RESERVE) of each, so sync requests and quick jobs always find room.
# Queued jobs are taken fairly across callers (API key, else user, else address), weighted per key.
# At most TAKO_MAX_QUEUE_SIZE jobs wait (more are refused with 503 and Retry-After).
# The runtime of environments that do not choose one: runc, or runsc (gVisor; set-up registers it).
TAKO_DEFAULT_RUNTIME = envchoice("TAKO_DEFAULT_RUNTIME", "runc", ("runc", "runsc"))
TAKO_HOST_CPUS = envint("TAKO_HOST_CPUS", os.cpu_count() or 2, minimum=1, maximum=os.cpu_count() or 2)
TAKO_MAX_WORKERS = envint("TAKO_MAX_WORKERS", 4 * TAKO_HOST_CPUS, minimum=1, maximum=256)
TAKO_HOST_MEMORY = envmemory(
    "TAKO_HOST_MEMORY", machine_memory() * 3 // 4, minimum=32 * 1024**2, maximum=machine_memory()
)
TAKO_CPU_OVERSUBSCRIPTION = envfloat("TAKO_CPU_OVERSUBSCRIPTION", 4.0, minimum=0.1, maximum=64)
TAKO_QUICK_TIMEOUT = envint("TAKO_QUICK_TIMEOUT", 10, minimum=1)
TAKO_QUICK_RESERVE = envfloat("TAKO_QUICK_RESERVE", 0.25, minimum=0, maximum=0.9)
TAKO_MAX_QUEUE_SIZE = envint("TAKO_MAX_QUEUE_SIZE", 100, minimum=1)
TAKO_MAX_STARTUP_TIMEOUT = 600
# A running job's worker writes a heartbeat this often; a job silent for TAKO_STALE_AFTER seconds
# belonged to a worker that died and is ended (or run again if its container never started).
TAKO_HEARTBEAT_SECONDS = 5
TAKO_STALE_AFTER = envint("TAKO_STALE_AFTER", 30, minimum=10)
# A job still queued this long after it was handed to the queue is handed to it again (in case
# its task was lost); only one run can ever claim it.
TAKO_REDISPATCH_AFTER = envint("TAKO_REDISPATCH_AFTER", 600, minimum=30)
# An async job whose engine fails while no other engine works waits, queued, this many seconds
# for one to work again (a daemon restart, a short outage) before it ends service_unavailable;
# so does one the queue (Redis) could not take, counted from its submission.
TAKO_OUTAGE_GRACE = envint("TAKO_OUTAGE_GRACE", 300, minimum=0)
# This worker host's name, recorded on the jobs it runs (one cluster per name).
TAKO_WORKER_NAME = envstr("TAKO_WORKER_NAME", socket.gethostname())
# The Docker engine this process uses, by name: one circuit breaker (and one warm pool) per engine.
# Processes on one host share the host's engine; a remote engine (tcp://) is named by its address.
_DOCKER_HOST = envstr("DOCKER_HOST", "")
_REMOTE_ENGINE = _DOCKER_HOST.startswith("tcp://")
TAKO_ENGINE_NAME = envstr("TAKO_ENGINE_NAME", _DOCKER_HOST if _REMOTE_ENGINE else socket.gethostname())
# Off on web-only machines: they run no container, so POST /execute goes through the queue to a
# worker and waits for it, and /health reports the workers' engines.
TAKO_WEB_USES_DOCKER = envbool("TAKO_WEB_USES_DOCKER", True)

# The warm pool: each worker host keeps containers started ahead of time, each used for one job:
# Environment.pool_size of them while the environment is busy, or with no size set, as many as its
# demand over the last TAKO_POOL_IDLE_SECONDS wanted: its peak of concurrent jobs, or the most jobs
# that started within a second (at least one; an environment without a job for that long keeps one).
# Long jobs (see TAKO_QUICK_TIMEOUT) get containers of their own CPU weight besides, as many as their
# own demand wanted. At most TAKO_POOL_MAX_CONTAINERS ready at once per host, holding at most
# TAKO_POOL_MEMORY while they wait (each counts what its interpreter and preloaded modules hold, as
# measured; the memory of running jobs is TAKO_HOST_MEMORY's).
TAKO_POOL_ENABLED = envbool("TAKO_POOL_ENABLED", True)
TAKO_POOL_MAX_CONTAINERS = envint("TAKO_POOL_MAX_CONTAINERS", 8, minimum=0, maximum=256)
TAKO_POOL_IDLE_SECONDS = envint("TAKO_POOL_IDLE_SECONDS", 600, minimum=10)
TAKO_POOL_MEMORY = envmemory("TAKO_POOL_MEMORY", machine_memory() // 4, minimum=0, maximum=machine_memory())

# The longest a task can take: the code's timeout, its startup, and waiting for a container slot.
_TASK_SECONDS = TAKO_MAX_TIMEOUT + TAKO_MAX_STARTUP_TIMEOUT + 300
# The queue: Redis when REDIS_URL is set (workers wait on it, no polling); else django-q2's ORM
# broker on the database, which on SQLite asks whether anything changed before each poll.
# (executions/broker.py: a host whose engine fails takes no job while another engine works.)
if REDIS_URL:
    _BROKER: dict[str, Any] = {"redis": REDIS_URL, "broker_class": "executions.broker.GatedRedis"}
elif USES_SQLITE:
    _BROKER = {"orm": "default", "broker_class": "executions.broker.SQLiteWatchingORM"}
else:
    _BROKER = {"orm": "default", "broker_class": "executions.broker.GatedORM"}
# The jobs' queue: the cluster's name, and its Redis list or database key. Deployments that
# share one Redis (or one database) need names of their own, or their workers take each
# other's tasks; webhook deliveries use the same name with "-webhooks".
TAKO_QUEUE_NAME = envname("TAKO_QUEUE_NAME", "tako")
Q_CLUSTER = {
    "name": TAKO_QUEUE_NAME,
    **_BROKER,
    "workers": TAKO_MAX_WORKERS,
    "recycle": 500,
    "timeout": _TASK_SECONDS,
    "retry": _TASK_SECONDS + 60,  # must exceed timeout, or a long job is handed to a second worker
    "max_attempts": 1,
    "save_limit": -1,  # our Execution is the record; do not store successful task results twice
    "ack_failures": True,
    "catch_up": False,
    "poll": envfloat("TAKO_QUEUE_POLL", 0.01, minimum=0.001, maximum=60),
    "label": "Task queue",
}

# --- Webhooks ----------------------------------------------------------------------------------
# A job's webhook_url is POSTed its record when it ends, signed (HMAC-SHA256) with the submitting
# API key's webhook secret, or this one for callers without a key (none: such callers may not ask
# for a webhook).
TAKO_WEBHOOK_SECRET = envstr("TAKO_WEBHOOK_SECRET", "")
# Targets on loopback, private, link-local, shared or reserved addresses are refused (checked
# after DNS resolution, at send time) unless this is on; cloud metadata addresses always are.
TAKO_WEBHOOK_ALLOW_PRIVATE = envbool("TAKO_WEBHOOK_ALLOW_PRIVATE", False)
TAKO_WEBHOOK_TIMEOUT = envfloat("TAKO_WEBHOOK_TIMEOUT", 10.0, minimum=0.1, maximum=60)  # per attempt, all in
# Attempts in all, the first after `delay` seconds of backoff doubling each time: 6 attempts with
# 20 s → retries after 20, 40, 80, 160 and 320 s (about 10 minutes).
TAKO_WEBHOOK_ATTEMPTS = envint("TAKO_WEBHOOK_ATTEMPTS", 6, minimum=1, maximum=20)
TAKO_WEBHOOK_BACKOFF_SECONDS = envfloat("TAKO_WEBHOOK_BACKOFF_SECONDS", 20.0, minimum=0.01, maximum=3600)
# Deliveries run on a queue and cluster of their own (started by tako_worker beside the jobs'),
# so a slow or dead receiver never holds a worker a job is waiting for.
TAKO_WEBHOOK_WORKERS = envint("TAKO_WEBHOOK_WORKERS", 2, minimum=1, maximum=64)
WEBHOOK_QUEUE = f"{TAKO_QUEUE_NAME}-webhooks"
# Deliveries need no engine: their cluster's broker takes tasks whatever the breaker says.
_WEBHOOK_BROKER_CLASS = {
    "executions.broker.GatedRedis": "django_q.brokers.redis_broker.Redis",
    "executions.broker.GatedORM": "django_q.brokers.orm.ORM",
    "executions.broker.SQLiteWatchingORM": "executions.broker.SQLiteWatchingUngatedORM",
}[_BROKER["broker_class"]]
Q_CLUSTER["ALT_CLUSTERS"] = {
    WEBHOOK_QUEUE: {
        "broker_class": _WEBHOOK_BROKER_CLASS,
        "workers": TAKO_WEBHOOK_WORKERS,
        "timeout": 120,  # an attempt is bounded by TAKO_WEBHOOK_TIMEOUT (and DNS by the same)
        "retry": 180,
        "recycle": 500,
        "label": "Webhook queue",
    }
}

# Executions (with their output and artifacts) are kept this many days; 0 keeps them forever.
TAKO_RETENTION_DAYS = envint("TAKO_RETENTION_DAYS", 30, minimum=0)

# --- Resilience ----------------------------------------------------------------------------------
TAKO_BREAKER_THRESHOLD = envint("TAKO_BREAKER_THRESHOLD", 5, minimum=1)  # consecutive engine failures
TAKO_BREAKER_RESET_SECONDS = envint("TAKO_BREAKER_RESET_SECONDS", 30, minimum=1)  # open -> half_open
TAKO_BREAKER_CLOSE_AFTER = envint("TAKO_BREAKER_CLOSE_AFTER", 2, minimum=1)  # half_open successes
TAKO_RETRY_ATTEMPTS = envint("TAKO_RETRY_ATTEMPTS", 2, minimum=1, maximum=10)
TAKO_RETRY_BASE_DELAY = envfloat("TAKO_RETRY_BASE_DELAY", 1.0, minimum=0, maximum=60)
# Seconds a call to the engine may take before it counts as failed (a hung daemon).
TAKO_DOCKER_TIMEOUT = envint("TAKO_DOCKER_TIMEOUT", 30, minimum=1)

# --- Access ----------------------------------------------------------------------------------------
# Anonymous API use: only for a single-user, loopback-only deployment (`make run` turns it on when
# it binds 127.0.0.1). With a public bind (HOST) the system check tako.E001 stops every start.
TAKO_ALLOW_ANONYMOUS = envbool("TAKO_ALLOW_ANONYMOUS", False)
TAKO_KEY_ROTATION_GRACE_HOURS = envint("TAKO_KEY_ROTATION_GRACE_HOURS", 24, minimum=0)  # old secret's life
TAKO_RATE_LIMIT_PER_MINUTE = envint("TAKO_RATE_LIMIT_PER_MINUTE", 600, minimum=0)  # 0: no limit
TAKO_MAX_JOBS_IN_PROGRESS = envint("TAKO_MAX_JOBS_IN_PROGRESS", 50, minimum=0)  # per caller; 0: no limit
# Requests refused before they are read: bodies (413) and headers (431) larger than these. A body
# must have room for the input files at their limit, base64-encoded (4/3 of their size), beside
# the code and input_data: the default is derived from the file limits, and a smaller value is an error.
_FILES_REQUEST_BYTES = (TAKO_MAX_INPUT_FILES_BYTES + 2) // 3 * 4 + 2 * 1024 * 1024
TAKO_MAX_REQUEST_BYTES = envint("TAKO_MAX_REQUEST_BYTES", _FILES_REQUEST_BYTES, minimum=1024)
if TAKO_MAX_REQUEST_BYTES < _FILES_REQUEST_BYTES:
    raise ImproperlyConfigured(
        f"TAKO_MAX_REQUEST_BYTES ({TAKO_MAX_REQUEST_BYTES}) leaves no room for input files at their limit "
        f"(TAKO_MAX_INPUT_FILES_BYTES, base64-encoded): set it to at least {_FILES_REQUEST_BYTES}, "
        "or lower TAKO_MAX_INPUT_FILES_BYTES"
    )
TAKO_MAX_HEADER_BYTES = envint("TAKO_MAX_HEADER_BYTES", 32 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = TAKO_MAX_REQUEST_BYTES
