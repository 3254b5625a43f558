"""Who is calling the API, what they may do, and how fast: ninja's auth for every operation.

Scripts send `X-API-Key: <key>` (or `Authorization: Bearer <key>`); the browser's login session
works too (staff act with the admin scope), and must pass Django's CSRF check for a change, as a
key in a header need not. Anonymous calls are accepted only where the deployment allows them
(TAKO_ALLOW_ANONYMOUS, meant for a loopback-only `make run`). Refusals are ApiError 401/403 and
RateLimited 429, answered by api/errors.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from ninja.security import APIKeyHeader

from executions.api.errors import ApiError
from executions.errors import RateLimited
from executions.models import ApiKey, Execution, iso_utc
from executions.selectors import executions_visible_to
from executions.services.limits import rate_key, request_count
from executions.services.submissions import Submitter

QUERY_KEY_NAMES = ("api_key", "apikey", "key", "token", "access_token")
LAST_USED_RESOLUTION = timedelta(minutes=1)  # last_used_at is written at most once a minute


@dataclass(frozen=True)
class Principal:
    user: Any  # None when anonymous
    scope: str  # execute | admin
    key: ApiKey | None = None
    client_ip: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.scope == ApiKey.Scope.ADMIN

    @property
    def by_session(self) -> bool:
        """Authenticated by the browser's session cookie, which another site can make it send."""
        return self.key is None and self.user is not None

    @property
    def actor(self) -> str:
        """Who acts, as the audit log and the DLQ name them: the user (with the key used), else the address."""
        if self.user is None:
            return f"anonymous {self.client_ip}"
        name = self.user.get_username()
        return f"{name} (key {self.key.prefix}…)" if self.key is not None else name

    @property
    def rate_key(self) -> str:
        return rate_key(api_key=self.key, user=self.user, client_ip=self.client_ip)

    def executions(self) -> QuerySet[Execution]:
        """The executions this caller may see: all for admins (and anonymous use), else their own."""
        return executions_visible_to(self.user, sees_all=self.is_admin)


def _presented_key(request: HttpRequest) -> str | None:
    key = request.headers.get("X-API-Key")
    authorization = request.headers.get("Authorization", "")
    if not key and authorization.lower().startswith("bearer "):
        key = authorization[7:].strip()
    return key or None


def _usable_key(presented: str) -> ApiKey:
    """The key whose current secret (or, within its grace, whose secret before its last
    rotation) was presented; ApiError 401 naming why not."""
    hashed = ApiKey.hash(presented)
    key = ApiKey.objects.select_related("owner").filter(Q(key_hash=hashed) | Q(previous_key_hash=hashed)).first()
    if key is None:
        raise ApiError(401, "Invalid API key")
    now = timezone.now()
    if key.revoked_at is not None:
        raise ApiError(401, f"This API key was revoked at {iso_utc(key.revoked_at)}")
    if key.expires_at is not None and key.expires_at <= now:
        raise ApiError(401, f"This API key expired at {iso_utc(key.expires_at)}")
    if key.key_hash != hashed and (key.previous_valid_until is None or key.previous_valid_until <= now):
        raise ApiError(
            401,
            f"This API key was rotated; its old secret stopped working at {iso_utc(key.previous_valid_until)}: "
            "use the new one",
        )
    if not key.owner.is_active:
        raise ApiError(401, "The owner of this API key is deactivated")
    return key


def authenticate(request: HttpRequest) -> Principal:
    """The caller, or ApiError 401 (no or bad credentials)."""
    client_ip = request.META.get("REMOTE_ADDR")
    if any(name in request.GET for name in QUERY_KEY_NAMES):
        raise ApiError(401, "API keys are not accepted in the query string; send the X-API-Key header")
    presented = _presented_key(request)
    if presented is not None:
        key = _usable_key(presented)
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        return Principal(user=key.owner, scope=key.scope, key=key, client_ip=client_ip)
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        scope = ApiKey.Scope.ADMIN if user.is_staff else ApiKey.Scope.EXECUTE
        return Principal(user=user, scope=scope, client_ip=client_ip)
    if settings.TAKO_ALLOW_ANONYMOUS:
        return Principal(user=None, scope=ApiKey.Scope.ADMIN, client_ip=client_ip)
    raise ApiError(401, "Authentication required: send X-API-Key (or Authorization: Bearer) with an API key")


class _CsrfCheck(CsrfViewMiddleware):
    """Django's own CSRF check (origin, referer, token), answering with the reason (as DRF does)
    instead of the HTML failure page."""

    def _reject(self, request: HttpRequest, reason: str) -> str:
        return reason


def csrf_check(request: HttpRequest) -> None:
    """ApiError 403 unless an unsafe request carries the CSRF token. Only for callers authenticated
    by the session cookie: a key in a header is something another site cannot make a browser send."""
    check = _CsrfCheck(lambda _: HttpResponse())
    check.process_request(request)
    # No view passed: the API views are csrf_exempt (for key callers), which the check would honour.
    reason = check.process_view(request, None, (), {})  # type: ignore[arg-type]
    if reason:
        raise ApiError(
            403,
            f"CSRF check failed: {str(reason).rstrip('.')}. A browser session must send the X-CSRFToken header; "
            "scripts authenticate with an API key instead",
        )


def authorize(principal: Principal, scope: str) -> None:
    if scope == ApiKey.Scope.ADMIN and not principal.is_admin:
        raise ApiError(403, "This needs an API key with the admin scope")


def rate_limit(principal: Principal, request: HttpRequest) -> None:
    """At most TAKO_RATE_LIMIT_PER_MINUTE requests a minute per key (or the key's own limit),
    user or address (429); where the caller stands goes back in RateLimit-* headers."""
    key = principal.key
    limit = key.rate_limit_per_minute if key is not None and key.rate_limit_per_minute is not None else None
    try:
        request.rate_state = request_count(principal.rate_key, limit)  # type: ignore[attr-defined]
    except RateLimited as exc:
        request.rate_state = exc.state  # type: ignore[attr-defined]
        raise


class ApiKeyAuth(APIKeyHeader):
    """Ninja's auth for the operations that need `scope`: the caller, or ApiError 401/403 or 429.

    Ninja marks its views csrf_exempt (a key in a header needs no token), so a caller known by
    the session cookie is checked here instead."""

    param_name = "X-API-Key"

    def __init__(self, scope: str) -> None:
        super().__init__()
        self.scope = scope

    def __call__(self, request: HttpRequest) -> Principal:
        principal = authenticate(request)
        if principal.by_session:
            csrf_check(request)
        authorize(principal, self.scope)
        rate_limit(principal, request)
        return principal

    def authenticate(self, request: HttpRequest, key: str | None) -> Principal:
        raise NotImplementedError("__call__ authenticates")  # (APIKeyHeader's abstract method)


EXECUTE = ApiKeyAuth(ApiKey.Scope.EXECUTE)
ADMIN = ApiKeyAuth(ApiKey.Scope.ADMIN)


def caller(request: HttpRequest) -> Principal:
    """The caller ApiKeyAuth let in."""
    return request.auth  # type: ignore[attr-defined]


def submitter(request: HttpRequest) -> Submitter:
    """Who submits a job from this request (already counted for the rate limit)."""
    principal = caller(request)
    return Submitter(
        user=principal.user,
        client_ip=principal.client_ip or None,
        correlation_id=request.correlation_id,  # type: ignore[attr-defined]
        api_key=principal.key,
    )
