"""The JSON shapes of the API (docs/openapi.json), as typed dictionaries and dataclasses."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

if sys.version_info >= (3, 11):
    from typing import TypedDict
else:  # pragma: no cover
    from typing_extensions import TypedDict

Channels = Union[str, List[str]]
"""`"all"` or a list of channel slugs."""


class Key(TypedDict):
    id: str
    org_id: str
    name: str
    prefix: str
    scopes: List[str]
    hmac_required: bool
    rate_limit: Optional[int]
    expires_at: Optional[str]
    ip_allowlist: List[str]
    phone_allowlist: List[str]
    channels: Channels
    environment: str
    external_id: Optional[str]
    meta: Optional[Dict[str, Any]]
    status: str
    created_at: str
    created_by: str
    revoked_at: Optional[str]
    revoked_by: Optional[str]
    last_used_at: Optional[str]


class CreatedKey(TypedDict):
    """The answer of create and roll: the only time `secret` and `signing_secret` are shown."""

    key: Key
    secret: str
    signing_secret: Optional[str]


class Org(TypedDict):
    id: str
    name: str
    created_at: str


class PhoneNumber(TypedDict):
    id: str
    number: str
    created_at: str


class Channel(TypedDict):
    id: str
    slug: str
    name: str
    created_at: str


@dataclass(frozen=True)
class Page:
    """One page of a list: the items and the cursor of the next page (`None` at the end)."""

    data: List[Any]
    next_cursor: Optional[str]


@dataclass(frozen=True)
class RateLimit:
    limit: int
    remaining: int
    reset_ms: int


@dataclass(frozen=True)
class Verification:
    """The answer of `/v1/verify`: `valid` with the key's facts, or a refusal with `status`."""

    valid: bool
    code: str
    status: int = 200
    message: str = ""
    retry_after_ms: Optional[int] = None
    key_id: Optional[str] = None
    org_id: Optional[str] = None
    name: Optional[str] = None
    scopes: List[str] = field(default_factory=list)
    channels: Optional[Channels] = None
    environment: Optional[str] = None
    meta: Optional[Dict[str, Any]] = None
    rate_limit: Optional[RateLimit] = None

    @classmethod
    def from_json(cls, body: Dict[str, Any]) -> "Verification":
        rate = body.get("rate_limit")
        return cls(
            valid=bool(body.get("valid")),
            code=str(body.get("code", "")),
            status=int(body.get("status", 200)),
            message=str(body.get("message", "")),
            retry_after_ms=body.get("retry_after_ms"),
            key_id=body.get("key_id"),
            org_id=body.get("org_id"),
            name=body.get("name"),
            scopes=list(body.get("scopes") or []),
            channels=body.get("channels"),
            environment=body.get("environment"),
            meta=body.get("meta"),
            rate_limit=RateLimit(**rate) if isinstance(rate, dict) else None,
        )
