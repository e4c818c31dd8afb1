// The middleware in a minimal real Express app (and a bare node:http Connect-style handler)
// with a valid, a revoked and a missing key, against the real server.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";

import { Keyward, keywardMiddleware, sign } from "../src/index.js";
import { startServer } from "./server.js";

let express;
try {
  express = (await import("express")).default;
} catch {
  express = undefined;
}

function listen(handler) {
  return new Promise((resolve) => {
    const server = createServer(handler).listen(0, "127.0.0.1", () => {
      resolve({ url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((done) => server.close(done)) });
    });
  });
}

function expressApp(client) {
  const app = express();
  app.use(keywardMiddleware({ client, scope: "messages:send", exclude: ["/healthz"] }));
  app.get("/healthz", (_req, res) => res.json({ ok: true }));
  app.post("/v1/messages", (req, res) => res.json({ key_id: req.keyward.key_id, body: req.rawBody?.toString() ?? null }));
  return app;
}

function connectApp(client) {
  const guard = keywardMiddleware({ client, scope: () => "messages:send" });
  return (req, res) => guard(req, res, () => {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ key_id: req.keyward.key_id, body: req.rawBody?.toString() ?? null }));
  });
}

describe("middleware", () => {
  let keyward;
  let keys;
  const apps = {};
  before(async () => {
    keyward = await startServer();
    const kw = new Keyward(keyward.url, keyward.token, { timeoutMs: 30_000 });
    const org = (await kw.createOrg("Acme")).id;
    const revoked = await kw.createKey(org, { name: "revoked", scopes: ["messages:send"] });
    await kw.revokeKey(org, revoked.key.id);
    keys = {
      valid: await kw.createKey(org, { name: "valid", scopes: ["messages:send"] }),
      revoked,
      reader: await kw.createKey(org, { name: "reader", scopes: ["templates:read"] }),
      signer: await kw.createKey(org, { name: "signer", scopes: ["messages:send"], hmac_required: true }),
    };
    assert.ok(express, "express is installed (npm install in clients/js, or .ci/run)");
    apps.express = await listen(expressApp(kw));
    apps.connect = await listen(connectApp(kw));
  });
  after(async () => {
    for (const app of Object.values(apps)) await app.close();
    await keyward.stop();
  });

  for (const name of ["express", "connect"]) {
    const post = (headers = {}, body) => fetch(`${apps[name].url}/v1/messages`, { method: "POST", headers, body });

    test(`${name}: a valid key reaches the handler`, async () => {
      for (const headers of [{ authorization: `Bearer ${keys.valid.secret}` }, { "x-api-key": keys.valid.secret }]) {
        const response = await post(headers);
        assert.equal(response.status, 200);
        assert.equal((await response.json()).key_id, keys.valid.key.id);
      }
    });

    test(`${name}: a revoked key is refused with its status`, async () => {
      const response = await post({ "x-api-key": keys.revoked.secret });
      assert.equal(response.status, 401);
      assert.equal(response.headers.get("content-type"), "application/problem+json");
      assert.equal((await response.json()).code, "API_KEY_INACTIVE");
    });

    test(`${name}: a missing key is refused`, async () => {
      const response = await post();
      assert.deepEqual([response.status, (await response.json()).code], [401, "INVALID_API_KEY"]);
    });

    test(`${name}: a key without the scope is forbidden; two credentials are a 400`, async () => {
      const forbidden = await post({ "x-api-key": keys.reader.secret });
      assert.deepEqual([forbidden.status, (await forbidden.json()).code], [403, "FORBIDDEN"]);
      const both = await post({ "x-api-key": keys.valid.secret, authorization: `Bearer ${keys.valid.secret}` });
      assert.deepEqual([both.status, (await both.json()).code], [400, "VALIDATION_FAILED"]);
    });

    test(`${name}: a signed request is checked over its exact body`, async () => {
      // A signature is accepted once: each app signs its own body.
      const body = JSON.stringify({ to: "+14155550100", via: name });
      const signed = sign(keys.signer.signing_secret, "POST", "/v1/messages", body);
      const headers = { "x-api-key": keys.signer.secret, "content-type": "application/json", ...signed.headers() };
      const tampered = await post(headers, body.replace("0100", "0199"));
      assert.deepEqual([tampered.status, (await tampered.json()).code], [401, "INVALID_SIGNATURE"]);
      const passed = await post(headers, body);
      assert.equal(passed.status, 200);
      assert.equal((await passed.json()).body, body);
    });
  }

  test("excluded paths pass; keyward unreachable is a 503", async () => {
    const down = await listen(expressApp(new Keyward("http://127.0.0.1:9", "t", { timeoutMs: 1000 })));
    try {
      assert.equal((await fetch(`${down.url}/healthz`)).status, 200);
      const refused = await fetch(`${down.url}/v1/messages`, { method: "POST", headers: { "x-api-key": "kw_live_x" } });
      assert.deepEqual([refused.status, (await refused.json()).code], [503, "SERVICE_UNAVAILABLE"]);
    } finally {
      await down.close();
    }
  });
});
