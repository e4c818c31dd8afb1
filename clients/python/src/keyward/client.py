"""`Keyward` (blocking) and `AsyncKeyward` (asyncio): one pooled httpx client each.

Both build requests the same way (`_Requests`); only the sending differs.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Dict, Iterator, List, Optional, Tuple, Union, cast
from urllib.parse import quote

import httpx

from .errors import TransportError, from_problem
from .signing import EMPTY_BODY_SHA256
from .types import Channel, Channels, CreatedKey, Key, Org, Page, PhoneNumber, Verification

# (method, path, JSON body or None, query or None)
Call = Tuple[str, str, Optional[Dict[str, Any]], Optional[Dict[str, str]]]

_UNSET: Any = object()
"""Marks a keyword argument left out (`None` means JSON `null`, which clears a field on update)."""


def _seg(value: str) -> str:
    return quote(value, safe="")


def _fields(**values: Any) -> Dict[str, Any]:
    return {name: value for name, value in values.items() if value is not _UNSET}


class _Requests:
    """The API's operations as (method, path, body, query): shared by both clients."""

    @staticmethod
    def verify(
        key: str,
        scope: Union[str, List[str], None],
        client_ip: Optional[str],
        sender: Optional[str],
        channels: Optional[List[str]],
        request: Optional[Dict[str, str]],
    ) -> Call:
        body: Dict[str, Any] = {"key": key}
        for name, value in (("scope", scope), ("client_ip", client_ip), ("sender", sender), ("channels", channels), ("request", request)):
            if value is not None:
                body[name] = value
        return ("POST", "/v1/verify", body, None)

    @staticmethod
    def create_key(org: str, fields: Dict[str, Any]) -> Call:
        return ("POST", f"/v1/orgs/{_seg(org)}/keys", fields, None)

    @staticmethod
    def list_keys(org: str, query: Dict[str, Any]) -> Call:
        return ("GET", f"/v1/orgs/{_seg(org)}/keys", None, {k: str(v) for k, v in query.items() if v is not None})


def signed_request(
    method: str, path_and_query: str, timestamp: str, signature: str, body_sha256: str = EMPTY_BODY_SHA256
) -> Dict[str, str]:
    """The `request` part of a verification for a signed call (see `keyward.signing`)."""
    return {"method": method, "path": path_and_query, "timestamp": timestamp, "signature": signature, "body_sha256": body_sha256}


def _decode(response: httpx.Response) -> Any:
    if response.status_code == 204:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        raise from_problem(response.status_code, body)
    if body is None:
        raise TransportError(f"{response.request.method} {response.request.url.path}: answer is not JSON")
    return body


def _key_fields(
    name: Any, scopes: Any, hmac_required: Any, rate_limit: Any, expires_at: Any, ip_allowlist: Any,
    phone_allowlist: Any, channels: Any, environment: Any, external_id: Any, meta: Any,
) -> Dict[str, Any]:
    return _fields(
        name=name, scopes=scopes, hmac_required=hmac_required, rate_limit=rate_limit, expires_at=expires_at,
        ip_allowlist=ip_allowlist, phone_allowlist=phone_allowlist, channels=channels, environment=environment,
        external_id=external_id, meta=meta,
    )


class Keyward:
    """Blocking client. `token` is the operator token, or a key holding `keys:read`/`keys:write`.

    >>> kw = Keyward("http://127.0.0.1:8080", token="kwop_…")
    >>> kw.verify("kw_live_…", scope="messages:send").valid
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 5.0,
        http: Optional[httpx.Client] = None,
    ) -> None:
        self._http = http or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)
        self._headers = {"Authorization": f"Bearer {token}"}

    def __enter__(self) -> "Keyward":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call) -> Any:
        method, path, body, query = call
        try:
            response = self._http.request(method, path, json=body, params=query, headers=self._headers)
        except httpx.HTTPError as error:
            raise TransportError(f"{method} {path}: {error}") from error
        return _decode(response)

    # Verification -------------------------------------------------------------------------

    def verify(
        self,
        key: str,
        *,
        scope: Union[str, List[str], None] = None,
        client_ip: Optional[str] = None,
        sender: Optional[str] = None,
        channels: Optional[List[str]] = None,
        request: Optional[Dict[str, str]] = None,
    ) -> Verification:
        """Asks whether `key` may make this call. A refusal is an answer, not an exception."""
        return Verification.from_json(self._send(_Requests.verify(key, scope, client_ip, sender, channels, request)))

    # Organizations --------------------------------------------------------------------------

    def create_org(self, name: str) -> Org:
        return cast(Org, self._send(("POST", "/v1/orgs", {"name": name}, None)))

    def add_phone_number(self, org: str, number: str) -> PhoneNumber:
        return cast(PhoneNumber, self._send(("POST", f"/v1/orgs/{_seg(org)}/phone-numbers", {"number": number}, None)))

    def list_phone_numbers(self, org: str) -> List[PhoneNumber]:
        return cast(List[PhoneNumber], self._send(("GET", f"/v1/orgs/{_seg(org)}/phone-numbers", None, None))["data"])

    def add_channel(self, org: str, slug: str, name: str) -> Channel:
        return cast(Channel, self._send(("POST", f"/v1/orgs/{_seg(org)}/channels", {"slug": slug, "name": name}, None)))

    def list_channels(self, org: str) -> List[Channel]:
        return cast(List[Channel], self._send(("GET", f"/v1/orgs/{_seg(org)}/channels", None, None))["data"])

    # Keys -----------------------------------------------------------------------------------

    def create_key(
        self,
        org: str,
        name: str,
        *,
        scopes: Any = _UNSET,
        hmac_required: Any = _UNSET,
        rate_limit: Any = _UNSET,
        expires_at: Any = _UNSET,
        ip_allowlist: Any = _UNSET,
        phone_allowlist: Any = _UNSET,
        channels: Any = _UNSET,
        environment: Any = _UNSET,
        external_id: Any = _UNSET,
        meta: Any = _UNSET,
    ) -> CreatedKey:
        """Creates a key; the answer holds `secret` (and `signing_secret`) this once."""
        fields = _key_fields(name, scopes, hmac_required, rate_limit, expires_at, ip_allowlist, phone_allowlist, channels, environment, external_id, meta)
        return cast(CreatedKey, self._send(_Requests.create_key(org, fields)))

    def list_keys(
        self, org: str, *, status: Optional[str] = None, created_by: Optional[str] = None,
        limit: Optional[int] = None, cursor: Optional[str] = None,
    ) -> Page:
        """One page, newest first."""
        query = {"status": status, "created_by": created_by, "limit": limit, "cursor": cursor}
        body = self._send(_Requests.list_keys(org, query))
        return Page(body["data"], body.get("next_cursor"))

    def iter_keys(self, org: str, *, status: Optional[str] = None, created_by: Optional[str] = None) -> Iterator[Key]:
        """Every key, following the cursors."""
        cursor: Optional[str] = None
        while True:
            page = self.list_keys(org, status=status, created_by=created_by, limit=100, cursor=cursor)
            yield from page.data
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def get_key(self, org: str, key_id: str) -> Key:
        return cast(Key, self._send(("GET", f"/v1/orgs/{_seg(org)}/keys/{_seg(key_id)}", None, None))["key"])

    def update_key(self, org: str, key_id: str, **changes: Any) -> Key:
        """Edits `name`, `scopes`, `channels`, `ip_allowlist`, `phone_allowlist`, `rate_limit`,
        `expires_at`, `meta`; `None` clears `rate_limit`, `expires_at` and `meta`."""
        path = f"/v1/orgs/{_seg(org)}/keys/{_seg(key_id)}"
        return cast(Key, self._send(("PATCH", path, changes, None))["key"])

    def revoke_key(self, org: str, key_id: str) -> Key:
        """Revokes at once and for good; revoking again answers the same key."""
        path = f"/v1/orgs/{_seg(org)}/keys/{_seg(key_id)}/revoke"
        return cast(Key, self._send(("POST", path, None, None))["key"])

    def roll_key(self, org: str, key_id: str, *, grace_seconds: int = 0) -> CreatedKey:
        """A new key with the same settings; the old one stays valid `grace_seconds` (0: revoked now)."""
        path = f"/v1/orgs/{_seg(org)}/keys/{_seg(key_id)}/roll"
        return cast(CreatedKey, self._send(("POST", path, {"grace_seconds": grace_seconds}, None)))

    def lookup_key(self, key: str) -> Key:
        """The metadata of a full key (sent in the body, never in a URL)."""
        return cast(Key, self._send(("POST", "/v1/keys/lookup", {"key": key}, None))["key"])


class AsyncKeyward:
    """asyncio client with the same verification and key operations as `Keyward`."""

    def __init__(
        self, base_url: str, token: str, *, timeout: float = 5.0, http: Optional[httpx.AsyncClient] = None
    ) -> None:
        self._http = http or httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout)
        self._headers = {"Authorization": f"Bearer {token}"}

    async def __aenter__(self) -> "AsyncKeyward":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call) -> Any:
        method, path, body, query = call
        try:
            response = await self._http.request(method, path, json=body, params=query, headers=self._headers)
        except httpx.HTTPError as error:
            raise TransportError(f"{method} {path}: {error}") from error
        return _decode(response)

    async def verify(
        self,
        key: str,
        *,
        scope: Union[str, List[str], None] = None,
        client_ip: Optional[str] = None,
        sender: Optional[str] = None,
        channels: Optional[List[str]] = None,
        request: Optional[Dict[str, str]] = None,
    ) -> Verification:
        return Verification.from_json(await self._send(_Requests.verify(key, scope, client_ip, sender, channels, request)))

    async def create_key(self, org: str, name: str, **fields: Any) -> CreatedKey:
        return cast(CreatedKey, await self._send(_Requests.create_key(org, {"name": name, **fields})))

    async def list_keys(
        self, org: str, *, status: Optional[str] = None, created_by: Optional[str] = None,
        limit: Optional[int] = None, cursor: Optional[str] = None,
    ) -> Page:
        query = {"status": status, "created_by": created_by, "limit": limit, "cursor": cursor}
        body = await self._send(_Requests.list_keys(org, query))
        return Page(body["data"], body.get("next_cursor"))

    async def iter_keys(self, org: str, *, status: Optional[str] = None) -> AsyncIterator[Key]:
        cursor: Optional[str] = None
        while True:
            page = await self.list_keys(org, status=status, limit=100, cursor=cursor)
            for key in page.data:
                yield key
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def revoke_key(self, org: str, key_id: str) -> Key:
        path = f"/v1/orgs/{_seg(org)}/keys/{_seg(key_id)}/revoke"
        return cast(Key, (await self._send(("POST", path, None, None)))["key"])


__all__ = ["AsyncKeyward", "Channels", "Keyward", "signed_request"]
