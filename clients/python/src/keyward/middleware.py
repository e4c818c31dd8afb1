"""Middleware that verifies the caller's key on every request, for ASGI and WSGI apps.

The key comes from `Authorization: Bearer …` or `X-API-Key` (exactly one; both is a 400). A
signed request (the signature and timestamp headers) is verified over its exact body. A refusal
is answered as problem+json with the status keyward names (401, 403, 429 with `Retry-After`);
when keyward cannot be reached the answer is 503, never a pass. A valid caller's `Verification`
is handed to the app: `request.state.keyward` (Starlette, FastAPI), `environ["keyward.verification"]`
(WSGI: `request.environ` in Flask, `request.META` in Django).
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Dict, Iterable, List, MutableMapping, Optional, Sequence, Tuple, Union
from urllib.parse import quote

from .client import AsyncKeyward, Keyward, signed_request
from .errors import KeywardError
from .signing import SIGNATURE_HEADER, TIMESTAMP_HEADER
from .types import Verification

ScopeRule = Union[None, str, List[str], Callable[[str, str], Union[None, str, List[str]]]]
"""The scope(s) a request needs: fixed, or chosen from its method and path."""

WSGI_ENVIRON_KEY = "keyward.verification"
MAX_SIGNED_BODY = 1024 * 1024

Problem = Tuple[int, Dict[str, Any], List[Tuple[str, str]]]


def _problem(status: int, code: str, detail: str, extra: Optional[List[Tuple[str, str]]] = None) -> Problem:
    title = HTTPStatus(status).phrase
    return status, {"status": status, "code": code, "title": title, "detail": detail}, extra or []


def _credential(authorization: List[str], api_key: List[str]) -> Tuple[Optional[str], Optional[Problem]]:
    """The one key the request carries, or the refusal when it carries none or several."""
    if len(authorization) + len(api_key) > 1:
        return None, _problem(400, "VALIDATION_FAILED", "Send one credential: Authorization or X-API-Key, not both")
    if api_key:
        return api_key[0], None
    if authorization:
        scheme, _, token = authorization[0].partition(" ")
        if scheme.lower() == "bearer" and token:
            return token, None
    return None, _problem(401, "INVALID_API_KEY", "An API key is required: Authorization: Bearer <key> or X-API-Key")


def _refusal(answer: Verification) -> Problem:
    extra = []
    if answer.retry_after_ms is not None:
        extra.append(("Retry-After", str(max(1, -(-answer.retry_after_ms // 1000)))))
    return _problem(answer.status, answer.code, answer.message, extra)


def _ip(text: Optional[str]) -> Optional[str]:
    """The peer's address when it is an IP (test clients and Unix sockets name none)."""
    try:
        return str(ipaddress.ip_address(text)) if text else None
    except ValueError:
        return None


def _scopes(rule: ScopeRule, method: str, path: str) -> Union[None, str, List[str]]:
    return rule(method, path) if callable(rule) else rule


class _Settings:
    def __init__(self, scope: ScopeRule, exclude: Sequence[str], signature_header: str, timestamp_header: str) -> None:
        self.scope = scope
        self.exclude = set(exclude)
        self.signature_header = signature_header.lower()
        self.timestamp_header = timestamp_header.lower()


class KeywardMiddleware:
    """ASGI middleware (FastAPI, Starlette): `app.add_middleware(KeywardMiddleware, client=AsyncKeyward(…))`."""

    def __init__(
        self,
        app: Callable[..., Awaitable[None]],
        *,
        client: AsyncKeyward,
        scope: ScopeRule = None,
        exclude: Sequence[str] = (),
        signature_header: str = SIGNATURE_HEADER,
        timestamp_header: str = TIMESTAMP_HEADER,
    ) -> None:
        self.app = app
        self.client = client
        self.settings = _Settings(scope, exclude, signature_header, timestamp_header)

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Dict[str, Any]]], send: Callable[[Dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http" or scope["path"] in self.settings.exclude:
            await self.app(scope, receive, send)
            return
        headers: Dict[str, List[str]] = {}
        for name, value in scope.get("headers", []):
            headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        key, problem = _credential(headers.get("authorization", []), headers.get("x-api-key", []))
        replay: List[Dict[str, Any]] = []
        if key is not None:
            method = scope["method"]
            path_and_query = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
            if scope.get("query_string"):
                path_and_query += "?" + scope["query_string"].decode("latin-1")
            request = None
            signature = headers.get(self.settings.signature_header)
            timestamp = headers.get(self.settings.timestamp_header)
            if signature and timestamp:
                body, replay = await _read_body(receive)
                request = signed_request(method, path_and_query, timestamp[0], signature[0], hashlib.sha256(body).hexdigest())
            client = scope.get("client")
            try:
                answer = await self.client.verify(
                    key,
                    scope=_scopes(self.settings.scope, method, scope["path"]),
                    client_ip=_ip(client[0]) if client else None,
                    request=request,
                )
            except KeywardError:
                answer = None
                problem = _problem(503, "SERVICE_UNAVAILABLE", "API keys cannot be checked right now; try again shortly")
            if answer is not None and not answer.valid:
                problem = _refusal(answer)
            elif answer is not None:
                scope.setdefault("state", {})["keyward"] = answer
        if problem is not None:
            status, body_json, extra = problem
            await send({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/problem+json"), *((n.lower().encode(), v.encode()) for n, v in extra)]})
            await send({"type": "http.response.body", "body": json.dumps(body_json).encode()})
            return

        async def replayed() -> Dict[str, Any]:
            return replay.pop(0) if replay else await receive()

        await self.app(scope, replayed, send)


async def _read_body(receive: Callable[[], Awaitable[Dict[str, Any]]]) -> Tuple[bytes, List[Dict[str, Any]]]:
    """The whole body (to hash it), and the messages to hand the app afterwards."""
    messages: List[Dict[str, Any]] = []
    body = b""
    while True:
        message = await receive()
        messages.append(message)
        body += message.get("body", b"")
        if message["type"] != "http.request" or not message.get("more_body") or len(body) > MAX_SIGNED_BODY:
            return body, messages


StartResponse = Callable[..., Any]


class KeywardWSGIMiddleware:
    """WSGI middleware (Flask: `app.wsgi_app = KeywardWSGIMiddleware(app.wsgi_app, client=Keyward(…))`;
    Django: wrap `get_wsgi_application()` in wsgi.py)."""

    def __init__(
        self,
        app: Callable[[Dict[str, Any], StartResponse], Iterable[bytes]],
        *,
        client: Keyward,
        scope: ScopeRule = None,
        exclude: Sequence[str] = (),
        signature_header: str = SIGNATURE_HEADER,
        timestamp_header: str = TIMESTAMP_HEADER,
    ) -> None:
        self.app = app
        self.client = client
        self.settings = _Settings(scope, exclude, signature_header, timestamp_header)

    def __call__(self, environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in self.settings.exclude:
            return self.app(environ, start_response)

        def header(name: str) -> List[str]:
            value = environ.get("HTTP_" + name.upper().replace("-", "_"))
            return [value] if value else []

        key, problem = _credential(header("Authorization"), header("X-API-Key"))
        if key is not None:
            method = environ.get("REQUEST_METHOD", "GET")
            path_and_query = environ.get("REQUEST_URI") or environ.get("RAW_URI") or quote(environ.get("SCRIPT_NAME", "") + path)
            if "?" not in path_and_query and environ.get("QUERY_STRING"):
                path_and_query += "?" + environ["QUERY_STRING"]
            request = None
            signature, timestamp = header(self.settings.signature_header), header(self.settings.timestamp_header)
            if signature and timestamp:
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = environ["wsgi.input"].read(min(length, MAX_SIGNED_BODY + 1)) if length else b""
                environ["wsgi.input"] = io.BytesIO(body)
                request = signed_request(method, path_and_query, timestamp[0], signature[0], hashlib.sha256(body).hexdigest())
            try:
                answer: Optional[Verification] = self.client.verify(
                    key,
                    scope=_scopes(self.settings.scope, method, path),
                    client_ip=_ip(environ.get("REMOTE_ADDR")),
                    request=request,
                )
            except KeywardError:
                answer = None
                problem = _problem(503, "SERVICE_UNAVAILABLE", "API keys cannot be checked right now; try again shortly")
            if answer is not None and not answer.valid:
                problem = _refusal(answer)
            elif answer is not None:
                environ[WSGI_ENVIRON_KEY] = answer
        if problem is None:
            return self.app(environ, start_response)
        status, body_json, extra = problem
        start_response(f"{status} {HTTPStatus(status).phrase}", [("Content-Type", "application/problem+json"), *extra])
        return [json.dumps(body_json).encode()]


__all__ = ["KeywardMiddleware", "KeywardWSGIMiddleware", "ScopeRule", "WSGI_ENVIRON_KEY"]
