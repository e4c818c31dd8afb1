// keyward client for Node 20+: verification, key management, request signing and an
// Express/Connect middleware. No dependencies beyond Node's fetch and crypto.

import { createHash, createHmac } from "node:crypto";

export const SIGNATURE_HEADER = "X-Keyward-Signature";
export const TIMESTAMP_HEADER = "X-Keyward-Timestamp";
export const EMPTY_BODY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** A problem+json answer: `status`, `code`, `title`, `detail`, `errors` ([{field, message}]). */
export class KeywardError extends Error {
  constructor(status, code, title, detail, errors = []) {
    super(`${status} ${code}: ${detail}`);
    this.name = "KeywardError";
    this.status = status;
    this.code = code;
    this.title = title;
    this.detail = detail;
    this.errors = errors;
  }
}

/** keyward could not be reached, or answered something that is not JSON. */
export class TransportError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = "TransportError";
  }
}

/** Lowercase hex SHA-256 of a body (a string is hashed as UTF-8). */
export function bodySha256(body) {
  if (body === undefined || body === null) return EMPTY_BODY_SHA256;
  return createHash("sha256").update(body).digest("hex");
}

/**
 * Signs a request: hex(HMAC-SHA256(secret, timestamp \n METHOD \n path_and_query \n hex(sha256(body)))).
 * `pathAndQuery` is the request target exactly as sent; `timestamp` defaults to now.
 */
export function sign(secret, method, pathAndQuery, body, timestamp) {
  const ts = String(timestamp ?? Math.floor(Date.now() / 1000));
  const message = `${ts}\n${method.toUpperCase()}\n${pathAndQuery}\n${bodySha256(body)}`;
  const signature = createHmac("sha256", secret).update(message).digest("hex");
  return {
    timestamp: ts,
    signature,
    headers(signatureHeader = SIGNATURE_HEADER, timestampHeader = TIMESTAMP_HEADER) {
      return { [timestampHeader]: ts, [signatureHeader]: signature };
    },
  };
}

/** The `request` part of a verification for a signed call. */
export function signedRequest(method, path, timestamp, signature, bodySha = EMPTY_BODY_SHA256) {
  return { method, path, timestamp: String(timestamp), signature, body_sha256: bodySha };
}

const seg = encodeURIComponent;

export class Keyward {
  /** `token`: the operator token, or a key holding keys:read / keys:write. */
  constructor(baseUrl, token, { timeoutMs = 5000, fetch: fetchImpl = globalThis.fetch } = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.token = token;
    this.timeoutMs = timeoutMs;
    this.fetch = fetchImpl;
  }

  async #send(method, path, body, query) {
    const url = new URL(this.baseUrl + path);
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(name, String(value));
    }
    const headers = { authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    let response;
    try {
      response = await this.fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (error) {
      throw new TransportError(`${method} ${path}: ${error.message}`, { cause: error });
    }
    if (response.status === 204) return null;
    const text = await response.text();
    let json;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (response.status >= 400) {
      const p = json && typeof json === "object" ? json : {};
      throw new KeywardError(p.status ?? response.status, p.code ?? `HTTP_${response.status}`, p.title ?? "",
        p.detail ?? `HTTP ${response.status}`, Array.isArray(p.errors) ? p.errors : []);
    }
    if (json === null) throw new TransportError(`${method} ${path}: the answer is not JSON`);
    return json;
  }

  /** Whether `key` may make this call. A refusal is an answer (`valid: false`), not an error. */
  verify(key, { scope, clientIp, sender, channels, request } = {}) {
    const body = { key };
    if (scope !== undefined) body.scope = scope;
    if (clientIp !== undefined) body.client_ip = clientIp;
    if (sender !== undefined) body.sender = sender;
    if (channels !== undefined) body.channels = channels;
    if (request !== undefined) body.request = request;
    return this.#send("POST", "/v1/verify", body);
  }

  createOrg(name) {
    return this.#send("POST", "/v1/orgs", { name });
  }

  addPhoneNumber(org, number) {
    return this.#send("POST", `/v1/orgs/${seg(org)}/phone-numbers`, { number });
  }

  addChannel(org, slug, name) {
    return this.#send("POST", `/v1/orgs/${seg(org)}/channels`, { slug, name });
  }

  /** Creates a key; the answer holds `secret` (and `signing_secret`) this once. */
  createKey(org, fields) {
    return this.#send("POST", `/v1/orgs/${seg(org)}/keys`, fields);
  }

  /** One page, newest first: `{data, next_cursor}`. */
  listKeys(org, { status, createdBy, limit, cursor } = {}) {
    return this.#send("GET", `/v1/orgs/${seg(org)}/keys`, undefined, { status, created_by: createdBy, limit, cursor });
  }

  /** Every key, following the cursors. */
  async *iterKeys(org, { status, createdBy } = {}) {
    let cursor;
    do {
      const page = await this.listKeys(org, { status, createdBy, limit: 100, cursor });
      yield* page.data;
      cursor = page.next_cursor;
    } while (cursor);
  }

  async getKey(org, id) {
    return (await this.#send("GET", `/v1/orgs/${seg(org)}/keys/${seg(id)}`)).key;
  }

  /** `null` clears `rate_limit`, `expires_at` and `meta`; absent fields stay. */
  async updateKey(org, id, changes) {
    return (await this.#send("PATCH", `/v1/orgs/${seg(org)}/keys/${seg(id)}`, changes)).key;
  }

  async revokeKey(org, id) {
    return (await this.#send("POST", `/v1/orgs/${seg(org)}/keys/${seg(id)}/revoke`)).key;
  }

  rollKey(org, id, { graceSeconds = 0 } = {}) {
    return this.#send("POST", `/v1/orgs/${seg(org)}/keys/${seg(id)}/roll`, { grace_seconds: graceSeconds });
  }

  /** The metadata of a full key (sent in the body, never in a URL). */
  async lookupKey(key) {
    return (await this.#send("POST", "/v1/keys/lookup", { key })).key;
  }
}

function problem(res, status, code, detail, headers = {}) {
  const title = { 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 429: "Too Many Requests", 503: "Service Unavailable" }[status] ?? "Error";
  res.statusCode = status;
  res.setHeader("content-type", "application/problem+json");
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  res.end(JSON.stringify({ status, code, title, detail }));
}

function headerList(value) {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

function readBody(req, limit) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size > limit) reject(new Error("body too large"));
      else chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

/**
 * Express/Connect middleware: verifies the caller's key (`Authorization: Bearer` or `X-API-Key`,
 * exactly one) and, for signed requests, the signature over the exact body (kept in `req.rawBody`).
 * A valid caller's verification is `req.keyward`; refusals answer problem+json with keyward's
 * status (429 with `Retry-After`); keyward unreachable → 503.
 * `scope`: a scope, a list, or `(req) => scope(s)`.
 */
export function keywardMiddleware({
  client,
  scope,
  exclude = [],
  signatureHeader = SIGNATURE_HEADER,
  timestampHeader = TIMESTAMP_HEADER,
  maxSignedBody = 1024 * 1024,
} = {}) {
  const excluded = new Set(exclude);
  return async function keyward(req, res, next) {
    const path = (req.originalUrl ?? req.url ?? "/").split("?")[0];
    if (excluded.has(path)) return next();
    // rawHeaders keeps repeated headers apart: two credentials are refused, never served as either.
    const values = (name) => {
      const raw = req.rawHeaders;
      if (!raw) return headerList(req.headers?.[name]);
      const out = [];
      for (let i = 0; i + 1 < raw.length; i += 2) if (raw[i].toLowerCase() === name) out.push(raw[i + 1]);
      return out;
    };
    const authorization = values("authorization");
    const apiKey = values("x-api-key");
    if (authorization.length + apiKey.length > 1) {
      return problem(res, 400, "VALIDATION_FAILED", "Send one credential: Authorization or X-API-Key, not both");
    }
    let key = apiKey[0];
    if (key === undefined && authorization[0]) {
      const [schemeName, token] = authorization[0].split(/ (.*)/s);
      if (schemeName.toLowerCase() === "bearer" && token) key = token;
    }
    if (!key) {
      return problem(res, 401, "INVALID_API_KEY", "An API key is required: Authorization: Bearer <key> or X-API-Key");
    }
    const method = req.method ?? "GET";
    const target = req.originalUrl ?? req.url ?? "/";
    let request;
    const signature = req.headers[signatureHeader.toLowerCase()];
    const timestamp = req.headers[timestampHeader.toLowerCase()];
    if (signature && timestamp) {
      let body;
      try {
        body = Buffer.isBuffer(req.rawBody) ? req.rawBody : await readBody(req, maxSignedBody);
      } catch {
        return problem(res, 400, "VALIDATION_FAILED", "The signed body could not be read");
      }
      req.rawBody = body;
      request = signedRequest(method, target, String(timestamp), String(signature), bodySha256(body));
    }
    const peer = req.socket?.remoteAddress?.replace(/^::ffff:/, "");
    let answer;
    try {
      answer = await client.verify(key, {
        scope: typeof scope === "function" ? scope(req) : scope,
        clientIp: peer || undefined,
        request,
      });
    } catch {
      return problem(res, 503, "SERVICE_UNAVAILABLE", "API keys cannot be checked right now; try again shortly");
    }
    if (!answer.valid) {
      const headers = answer.retry_after_ms === undefined ? {} : { "retry-after": String(Math.max(1, Math.ceil(answer.retry_after_ms / 1000))) };
      return problem(res, answer.status, answer.code, answer.message, headers);
    }
    req.keyward = answer;
    return next();
  };
}
