import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { EMPTY_BODY_SHA256, Keyward, KeywardError, bodySha256, sign, signedRequest } from "../src/index.js";
import { startServer } from "./server.js";

const SECRET = "kwsig_test_vector_secret";

describe("signing", () => {
  test("reproduces the README's vectors", () => {
    const post = sign(SECRET, "POST", "/v1/messages?x=1", '{"to":"+14155550100"}', 1764000000);
    assert.equal(post.signature, "14f487c32538df7b82ea4b34e6d5483faf0cecf8afc55449880895de21dee51a");
    assert.deepEqual(post.headers(), { "X-Keyward-Timestamp": "1764000000", "X-Keyward-Signature": post.signature });
    const get = sign(SECRET, "get", "/v1/templates/tpl_123", undefined, "1764000000");
    assert.equal(get.signature, "c0f9d58f951d50014e9d1b29bbd488c40fe948298a0fbd801edc1b4d0abaeaed");
    assert.equal(bodySha256(Buffer.alloc(0)), EMPTY_BODY_SHA256);
  });
});

describe("client against the real server", () => {
  let server;
  let kw;
  let org;
  before(async () => {
    server = await startServer();
    // Generous: a debug build loads its phone-number metadata on first use, on a shared machine.
    kw = new Keyward(server.url, server.token, { timeoutMs: 30_000 });
    org = (await kw.createOrg("Acme")).id;
    await kw.addPhoneNumber(org, "+1 415 555 0100");
    await kw.addPhoneNumber(org, "+14155550101");
    await kw.addChannel(org, "marketing", "Marketing");
    await kw.addChannel(org, "alerts", "Alerts");
  });
  after(() => server.stop());

  test("a valid key answers its facts", async () => {
    const created = await kw.createKey(org, { name: "CRM Sync", scopes: ["messages:send"], rate_limit: 50, channels: ["marketing"] });
    const answer = await kw.verify(created.secret, { scope: "messages:send", sender: "+14155550100" });
    assert.equal(answer.valid, true);
    assert.equal(answer.key_id, created.key.id);
    assert.deepEqual(answer.channels, ["marketing"]);
    assert.deepEqual(answer.rate_limit, { ...answer.rate_limit, limit: 50, remaining: 49 });
  });

  const cases = {
    INVALID_API_KEY: async () => ({ key: "kw_live_0123456789ABCDEFGHIJabcdefghijKL1WMpTX" }),
    API_KEY_INACTIVE: async () => {
      const created = await kw.createKey(org, { name: "revoked" });
      await kw.revokeKey(org, created.key.id);
      return { key: created.secret };
    },
    API_KEY_EXPIRED: async () => {
      const created = await kw.createKey(org, { name: "short", expires_at: new Date(Date.now() + 1000).toISOString() });
      await new Promise((r) => setTimeout(r, 1200));
      return { key: created.secret };
    },
    IP_NOT_ALLOWED: async () => ({
      key: (await kw.createKey(org, { name: "office", ip_allowlist: ["203.0.113.0/24"] })).secret,
      options: { clientIp: "198.51.100.1" },
    }),
    SIGNATURE_REQUIRED: async () => ({ key: (await kw.createKey(org, { name: "signed", hmac_required: true })).secret }),
    INVALID_SIGNATURE: async () => ({
      key: (await kw.createKey(org, { name: "signed", hmac_required: true })).secret,
      options: { request: signedRequest("GET", "/", Math.floor(Date.now() / 1000), "00".repeat(32)) },
    }),
    FORBIDDEN: async () => ({ key: (await kw.createKey(org, { name: "reader", scopes: ["templates:read"] })).secret }),
    SENDER_NOT_ALLOWED: async () => ({
      key: (await kw.createKey(org, { name: "one sender", phone_allowlist: ["+14155550100"] })).secret,
      options: { sender: "+14155550101" },
    }),
    CHANNEL_SCOPE_VIOLATION: async () => ({
      key: (await kw.createKey(org, { name: "marketing only", channels: ["marketing"] })).secret,
      options: { channels: ["alerts"] },
    }),
    RATE_LIMITED: async () => {
      const key = (await kw.createKey(org, { name: "slow", rate_limit: 1 })).secret;
      assert.equal((await kw.verify(key, { scope: "messages:send" })).valid, true);
      return { key };
    },
  };
  const statuses = { IP_NOT_ALLOWED: 403, FORBIDDEN: 403, SENDER_NOT_ALLOWED: 403, CHANNEL_SCOPE_VIOLATION: 403, RATE_LIMITED: 429 };
  for (const [code, prepare] of Object.entries(cases)) {
    test(`refusal ${code}`, async () => {
      const { key, options } = await prepare();
      const answer = await kw.verify(key, { scope: "messages:send", ...options });
      assert.equal(answer.valid, false);
      assert.equal(answer.code, code);
      assert.equal(answer.status, statuses[code] ?? 401);
      assert.ok(answer.message);
      if (code === "RATE_LIMITED") assert.ok(answer.retry_after_ms > 0);
    });
  }

  test("a request signed by the helper is accepted once", async () => {
    const created = await kw.createKey(org, { name: "signer", hmac_required: true });
    const body = '{"to":"+14155550100"}';
    const signed = sign(created.signing_secret, "POST", "/v1/messages?x=1", body);
    const request = signedRequest("POST", "/v1/messages?x=1", signed.timestamp, signed.signature, bodySha256(body));
    assert.equal((await kw.verify(created.secret, { request })).code, "VALID");
    assert.equal((await kw.verify(created.secret, { request })).code, "INVALID_SIGNATURE");
  });

  test("create, list, get, update, roll, look up, revoke", async () => {
    const created = await kw.createKey(org, { name: "managed", scopes: ["templates:read"], meta: { team: "crm" } });
    const id = created.key.id;
    assert.match(created.secret, /^kw_live_/);
    assert.equal(created.signing_secret, null);
    const ids = [];
    for await (const key of kw.iterKeys(org)) ids.push(key.id);
    assert.ok(ids.includes(id));
    const first = await kw.listKeys(org, { limit: 1 });
    assert.equal(first.data.length, 1);
    assert.notEqual((await kw.listKeys(org, { limit: 1, cursor: first.next_cursor })).data[0].id, first.data[0].id);
    assert.deepEqual((await kw.getKey(org, id)).meta, { team: "crm" });
    const updated = await kw.updateKey(org, id, { name: "renamed", rate_limit: 10, meta: null });
    assert.deepEqual([updated.name, updated.rate_limit, updated.meta], ["renamed", 10, null]);
    assert.equal((await kw.lookupKey(created.secret)).id, id);
    const rolled = await kw.rollKey(org, id, { graceSeconds: 0 });
    assert.notEqual(rolled.secret, created.secret);
    assert.equal((await kw.getKey(org, id)).status, "revoked");
    const revoked = await kw.revokeKey(org, rolled.key.id);
    assert.equal(revoked.status, "revoked");
    await assert.rejects(kw.updateKey(org, id, { name: "late" }), { status: 409, code: "API_KEY_INACTIVE" });
  });

  test("problems reject with code and errors", async () => {
    const error = await kw.createKey(org, { name: "bad", rate_limit: 5000, ip_allowlist: ["10.0.0.0/8", "10.0.0.300"] }).catch((e) => e);
    assert.ok(error instanceof KeywardError);
    assert.equal(error.code, "VALIDATION_FAILED");
    assert.equal(error.status, 400);
    const fields = Object.fromEntries(error.errors.map((e) => [e.field, e.message]));
    assert.equal(fields.rate_limit, "Rate limit must be an integer between 1 and 1000");
    assert.ok("ip_allowlist[1]" in fields);
    await assert.rejects(kw.getKey(org, "key_doesnotexist000000"), { status: 404, code: "NOT_FOUND" });
    await assert.rejects(new Keyward(server.url, "kwop_wrong").listKeys(org), { status: 401, code: "UNAUTHENTICATED" });
  });
});
