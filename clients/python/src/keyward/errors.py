"""Errors: every problem+json answer of the server is raised as a typed `ApiError`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Type


@dataclass(frozen=True)
class FieldError:
    """One invalid field, as the server names it (`rate_limit`, `ip_allowlist[1]`)."""

    field: str
    message: str


class KeywardError(Exception):
    """Base of every error this package raises."""


class TransportError(KeywardError):
    """The server could not be reached, or answered something that is not keyward's."""


class ApiError(KeywardError):
    """A problem+json answer: `status`, `code` (e.g. `VALIDATION_FAILED`), `detail`, `errors`."""

    def __init__(
        self, status: int, code: str, title: str, detail: str, errors: Optional[List[FieldError]] = None
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.errors: List[FieldError] = errors or []


class ValidationFailed(ApiError):
    """400 `VALIDATION_FAILED`; `errors` names each field."""


class Unauthenticated(ApiError):
    """401 `UNAUTHENTICATED` or `INVALID_CREDENTIALS`."""


class Forbidden(ApiError):
    """403 `FORBIDDEN` or `CSRF_FAILED`."""


class NotFound(ApiError):
    """404 `NOT_FOUND` (also another organization's id)."""


class Conflict(ApiError):
    """409 `CONFLICT`, or `API_KEY_INACTIVE` when editing a revoked key."""


class KeyInactive(Conflict):
    """409 `API_KEY_INACTIVE`: the key is revoked and can no longer be changed."""


class TooManyAttempts(ApiError):
    """429 `TOO_MANY_ATTEMPTS`."""


class ServiceUnavailable(ApiError):
    """503 `SERVICE_UNAVAILABLE`: try again shortly."""


_BY_CODE: Dict[str, Type[ApiError]] = {
    "VALIDATION_FAILED": ValidationFailed,
    "UNAUTHENTICATED": Unauthenticated,
    "INVALID_CREDENTIALS": Unauthenticated,
    "FORBIDDEN": Forbidden,
    "CSRF_FAILED": Forbidden,
    "NOT_FOUND": NotFound,
    "CONFLICT": Conflict,
    "API_KEY_INACTIVE": KeyInactive,
    "TOO_MANY_ATTEMPTS": TooManyAttempts,
    "SERVICE_UNAVAILABLE": ServiceUnavailable,
}


def from_problem(status: int, body: Any) -> ApiError:
    """The typed error for a problem+json body (or a bare error status)."""
    problem = body if isinstance(body, dict) else {}
    code = str(problem.get("code") or f"HTTP_{status}")
    errors = [
        FieldError(str(e.get("field", "")), str(e.get("message", "")))
        for e in problem.get("errors") or []
        if isinstance(e, dict)
    ]
    cls = _BY_CODE.get(code, ApiError)
    return cls(
        int(problem.get("status") or status),
        code,
        str(problem.get("title") or ""),
        str(problem.get("detail") or f"HTTP {status}"),
        errors,
    )
