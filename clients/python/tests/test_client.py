"""The client against the real server: verification codes, key management, typed errors."""

from __future__ import annotations

import datetime
import time

import pytest

from keyward import (
    AsyncKeyward, KeyInactive, Keyward, NotFound, Unauthenticated, ValidationFailed, body_sha256, sign, signed_request,
)


def in_seconds(seconds: float) -> str:
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return at.isoformat().replace("+00:00", "Z")


def test_a_valid_key_answers_its_facts(kw: Keyward, org: str) -> None:
    created = kw.create_key(org, "CRM Sync", scopes=["messages:send"], rate_limit=50, channels=["marketing"])
    answer = kw.verify(created["secret"], scope="messages:send", sender="+14155550100")
    assert (answer.valid, answer.code, answer.key_id, answer.org_id) == (True, "VALID", created["key"]["id"], org)
    assert answer.channels == ["marketing"] and answer.scopes == ["messages:send"] and answer.environment == "live"
    assert answer.rate_limit is not None and answer.rate_limit.limit == 50 and answer.rate_limit.remaining == 49


@pytest.mark.parametrize("code", [
    "INVALID_API_KEY", "API_KEY_INACTIVE", "API_KEY_EXPIRED", "IP_NOT_ALLOWED", "SIGNATURE_REQUIRED",
    "INVALID_SIGNATURE", "FORBIDDEN", "SENDER_NOT_ALLOWED", "CHANNEL_SCOPE_VIOLATION", "RATE_LIMITED",
])
def test_every_refusal_code(kw: Keyward, org: str, code: str) -> None:
    ask: dict = {"scope": "messages:send"}
    if code == "INVALID_API_KEY":
        key = "kw_live_0123456789ABCDEFGHIJabcdefghijKL1WMpTX"
    elif code == "API_KEY_INACTIVE":
        created = kw.create_key(org, "revoked")
        kw.revoke_key(org, created["key"]["id"])
        key = created["secret"]
    elif code == "API_KEY_EXPIRED":
        key = kw.create_key(org, "short-lived", expires_at=in_seconds(1))["secret"]
        time.sleep(1.2)
    elif code == "IP_NOT_ALLOWED":
        key = kw.create_key(org, "office only", ip_allowlist=["203.0.113.0/24"])["secret"]
        ask["client_ip"] = "198.51.100.1"
    elif code == "SIGNATURE_REQUIRED":
        key = kw.create_key(org, "signed", hmac_required=True)["secret"]
    elif code == "INVALID_SIGNATURE":
        key = kw.create_key(org, "signed", hmac_required=True)["secret"]
        ask["request"] = signed_request("GET", "/", str(int(time.time())), "00" * 32)
    elif code == "FORBIDDEN":
        key = kw.create_key(org, "reader", scopes=["templates:read"])["secret"]
    elif code == "SENDER_NOT_ALLOWED":
        key = kw.create_key(org, "one sender", phone_allowlist=["+14155550100"])["secret"]
        ask["sender"] = "+14155550101"
    elif code == "CHANNEL_SCOPE_VIOLATION":
        key = kw.create_key(org, "marketing only", channels=["marketing"])["secret"]
        ask["channels"] = ["alerts"]
    else:
        key = kw.create_key(org, "slow", rate_limit=1)["secret"]
        assert kw.verify(key, **ask).valid
    answer = kw.verify(key, **ask)
    assert (answer.valid, answer.code) == (False, code), answer
    assert answer.status == {"IP_NOT_ALLOWED": 403, "FORBIDDEN": 403, "SENDER_NOT_ALLOWED": 403,
                             "CHANNEL_SCOPE_VIOLATION": 403, "RATE_LIMITED": 429}.get(code, 401)
    assert answer.message
    if code == "RATE_LIMITED":
        assert answer.retry_after_ms is not None and answer.retry_after_ms > 0


def test_a_request_signed_by_the_helper_is_accepted_once(kw: Keyward, org: str) -> None:
    created = kw.create_key(org, "signer", hmac_required=True)
    secret = created["signing_secret"]
    assert secret
    body = b'{"to":"+14155550100"}'
    signed = sign(secret, "POST", "/v1/messages?x=1", body)
    request = signed_request("POST", "/v1/messages?x=1", signed.timestamp, signed.signature, body_sha256(body))
    assert kw.verify(created["secret"], request=request).code == "VALID"
    assert kw.verify(created["secret"], request=request).code == "INVALID_SIGNATURE"  # a replay


def test_create_list_get_update_roll_lookup_revoke(kw: Keyward, org: str) -> None:
    created = kw.create_key(org, "managed", scopes=["templates:read"], meta={"team": "crm"})
    key_id = created["key"]["id"]
    assert created["secret"].startswith("kw_live_") and created["signing_secret"] is None
    assert created["key"]["prefix"] == created["secret"][:16]
    assert key_id in [k["id"] for k in kw.iter_keys(org)]
    first = kw.list_keys(org, limit=1)
    assert len(first.data) == 1 and first.next_cursor
    assert kw.list_keys(org, limit=1, cursor=first.next_cursor).data[0]["id"] != first.data[0]["id"]
    assert kw.get_key(org, key_id)["meta"] == {"team": "crm"}
    updated = kw.update_key(org, key_id, name="renamed", rate_limit=10, meta=None)
    assert (updated["name"], updated["rate_limit"], updated["meta"]) == ("renamed", 10, None)
    assert kw.lookup_key(created["secret"])["id"] == key_id
    rolled = kw.roll_key(org, key_id, grace_seconds=0)
    assert rolled["secret"] != created["secret"] and kw.get_key(org, key_id)["status"] == "revoked"
    revoked = kw.revoke_key(org, rolled["key"]["id"])
    assert revoked["status"] == "revoked" and revoked["revoked_by"] == "operator"
    assert rolled["key"]["id"] in [k["id"] for k in kw.iter_keys(org, status="revoked")]
    with pytest.raises(KeyInactive) as inactive:
        kw.update_key(org, key_id, name="too late")
    assert inactive.value.status == 409 and inactive.value.code == "API_KEY_INACTIVE"


def test_problems_are_typed_with_code_and_errors(kw: Keyward, org: str, server) -> None:
    with pytest.raises(ValidationFailed) as invalid:
        kw.create_key(org, "bad", rate_limit=5000, ip_allowlist=["10.0.0.0/8", "10.0.0.300"])
    assert invalid.value.status == 400 and invalid.value.code == "VALIDATION_FAILED"
    fields = {e.field: e.message for e in invalid.value.errors}
    assert fields["rate_limit"] == "Rate limit must be an integer between 1 and 1000"
    assert "ip_allowlist[1]" in fields
    with pytest.raises(NotFound):
        kw.get_key(org, "key_doesnotexist000000")
    with pytest.raises(NotFound):
        kw.lookup_key("kw_live_0123456789ABCDEFGHIJabcdefghijKL1WMpTT")
    with Keyward(server.url, token="kwop_wrong") as stranger, pytest.raises(Unauthenticated) as denied:
        stranger.list_keys(org)
    assert denied.value.code == "UNAUTHENTICATED"


def test_a_key_holding_keys_write_manages_its_own_org(kw: Keyward, org: str, server) -> None:
    manager = kw.create_key(org, "manager", scopes=["keys:read", "keys:write", "messages:send"])
    with Keyward(server.url, token=manager["secret"]) as delegated:
        child = delegated.create_key(org, "child", scopes=["messages:send"])
        assert child["key"]["created_by"] == manager["key"]["id"]


def test_the_async_client(server, org: str) -> None:
    import asyncio

    async def run() -> None:
        async with AsyncKeyward(server.url, token=server.token) as client:
            created = await client.create_key(org, "async", scopes=["messages:send"])
            assert (await client.verify(created["secret"], scope=["messages:send"])).valid
            await client.revoke_key(org, created["key"]["id"])
            assert (await client.verify(created["secret"])).code == "API_KEY_INACTIVE"
            assert created["key"]["id"] in [k["id"] async for k in client.iter_keys(org)]

    asyncio.run(run())
