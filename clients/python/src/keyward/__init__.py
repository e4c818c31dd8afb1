"""keyward: verify API keys, manage them, sign requests, and protect ASGI/WSGI apps.

Start with `Keyward` (blocking) or `AsyncKeyward`; `keyward.signing.sign` for request signatures;
`keyward.middleware` for FastAPI/Starlette (ASGI) and Flask/Django (WSGI).
"""

from .client import AsyncKeyward, Keyward, signed_request
from .errors import (
    ApiError,
    Conflict,
    FieldError,
    Forbidden,
    KeyInactive,
    KeywardError,
    NotFound,
    ServiceUnavailable,
    TooManyAttempts,
    TransportError,
    Unauthenticated,
    ValidationFailed,
)
from .signing import EMPTY_BODY_SHA256, Signature, body_sha256, sign
from .types import Channel, CreatedKey, Key, Org, Page, PhoneNumber, RateLimit, Verification

__version__ = "0.1.0"

__all__ = [
    "EMPTY_BODY_SHA256", "ApiError", "AsyncKeyward", "Channel", "Conflict", "CreatedKey", "FieldError",
    "Forbidden", "Key", "KeyInactive", "Keyward", "KeywardError", "NotFound", "Org", "Page", "PhoneNumber",
    "RateLimit", "ServiceUnavailable", "Signature", "TooManyAttempts", "TransportError", "Unauthenticated",
    "ValidationFailed", "Verification", "body_sha256", "sign", "signed_request",
]
