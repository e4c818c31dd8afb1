"""The middleware in minimal real apps (FastAPI over ASGI, Flask over WSGI) with a valid, a
revoked and a missing key, against the real server."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from flask import Flask, request as flask_request

from keyward import AsyncKeyward, Keyward, sign
from keyward.middleware import WSGI_ENVIRON_KEY, KeywardMiddleware, KeywardWSGIMiddleware


@pytest.fixture(scope="module")
def keys(kw: Keyward, org: str) -> dict:
    valid = kw.create_key(org, "mw valid", scopes=["messages:send"])
    revoked = kw.create_key(org, "mw revoked", scopes=["messages:send"])
    kw.revoke_key(org, revoked["key"]["id"])
    reader = kw.create_key(org, "mw reader", scopes=["templates:read"])
    signer = kw.create_key(org, "mw signer", scopes=["messages:send"], hmac_required=True)
    return {"valid": valid, "revoked": revoked, "reader": reader, "signer": signer}


def fastapi_client(server) -> TestClient:
    app = FastAPI()

    @app.post("/v1/messages")
    async def send(request: Request) -> dict:
        body = await request.body()
        return {"key_id": request.state.keyward.key_id, "body": body.decode()}

    @app.get("/healthz")
    async def health() -> dict:
        return {"ok": True}

    app.add_middleware(KeywardMiddleware, client=AsyncKeyward(server.url, token=server.token),
                       scope="messages:send", exclude=["/healthz"])
    return TestClient(app)


def flask_client(server):
    app = Flask(__name__)

    @app.post("/v1/messages")
    def send() -> dict:
        return {"key_id": flask_request.environ[WSGI_ENVIRON_KEY].key_id, "body": flask_request.get_data(as_text=True)}

    app.wsgi_app = KeywardWSGIMiddleware(app.wsgi_app, client=Keyward(server.url, token=server.token),  # type: ignore[method-assign]
                                         scope=lambda method, path: "messages:send")
    return app.test_client()


@pytest.fixture(params=["fastapi", "flask"])
def client(request, server):
    if request.param == "flask":
        yield flask_client(server)
        return
    # One event loop for the app's lifetime, as under uvicorn: the client's pool belongs to it.
    with fastapi_client(server) as test:
        yield test


def answer(response) -> tuple:
    body = response.json() if hasattr(response, "json") and callable(response.json) else json.loads(response.data)
    return response.status_code, body


def test_a_valid_key_reaches_the_handler(client, keys) -> None:
    valid = keys["valid"]
    for headers in ({"Authorization": f"Bearer {valid['secret']}"}, {"X-API-Key": valid["secret"]}):
        status, body = answer(client.post("/v1/messages", headers=headers, content=b"hi") if isinstance(client, TestClient)
                              else client.post("/v1/messages", headers=headers, data=b"hi"))
        assert (status, body) == (200, {"key_id": valid["key"]["id"], "body": "hi"})


def test_a_revoked_key_is_refused_with_its_status(client, keys) -> None:
    response = client.post("/v1/messages", headers={"X-API-Key": keys["revoked"]["secret"]})
    status, body = answer(response)
    assert (status, body["code"]) == (401, "API_KEY_INACTIVE")
    assert response.headers["content-type"] == "application/problem+json"


def test_a_missing_key_is_refused(client) -> None:
    status, body = answer(client.post("/v1/messages"))
    assert (status, body["code"]) == (401, "INVALID_API_KEY")


def test_a_key_without_the_scope_is_forbidden(client, keys) -> None:
    status, body = answer(client.post("/v1/messages", headers={"X-API-Key": keys["reader"]["secret"]}))
    assert (status, body["code"]) == (403, "FORBIDDEN")


def test_two_credentials_are_refused(client, keys) -> None:
    secret = keys["valid"]["secret"]
    status, body = answer(client.post("/v1/messages", headers={"X-API-Key": secret, "Authorization": f"Bearer {secret}"}))
    assert (status, body["code"]) == (400, "VALIDATION_FAILED")


def test_a_signed_request_is_checked_over_its_body(client, keys) -> None:
    signer = keys["signer"]
    # A signature is accepted once: each framework's run signs its own body.
    body = f'{{"to":"+14155550100","via":"{type(client).__name__}"}}'.encode()
    signed = sign(signer["signing_secret"], "POST", "/v1/messages", body)
    headers = {"X-API-Key": signer["secret"], **signed.headers()}
    send = (lambda b: client.post("/v1/messages", headers=headers, content=b)) if isinstance(client, TestClient) \
        else (lambda b: client.post("/v1/messages", headers=headers, data=b))
    status, tampered = answer(send(b'{"to":"+19999999999"}'))
    assert (status, tampered["code"]) == (401, "INVALID_SIGNATURE")
    status, passed = answer(send(body))
    assert (status, passed["body"]) == (200, body.decode())


def test_excluded_paths_and_unreachable_keyward() -> None:
    app = FastAPI()

    @app.get("/healthz")
    async def health() -> dict:
        return {"ok": True}

    @app.get("/data")
    async def data() -> dict:
        return {"secret": "data"}

    app.add_middleware(KeywardMiddleware, client=AsyncKeyward("http://127.0.0.1:9", token="t", timeout=1),
                       exclude=["/healthz"])
    with TestClient(app) as test:
        assert test.get("/healthz").status_code == 200
        down = test.get("/data", headers={"X-API-Key": "kw_live_x"})
        assert (down.status_code, down.json()["code"]) == (503, "SERVICE_UNAVAILABLE")
