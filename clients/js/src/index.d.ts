// Types for the keyward client; the shapes follow docs/openapi.json.

export declare const SIGNATURE_HEADER: "X-Keyward-Signature";
export declare const TIMESTAMP_HEADER: "X-Keyward-Timestamp";
export declare const EMPTY_BODY_SHA256: string;

export interface FieldError {
  field: string;
  message: string;
}

export declare class KeywardError extends Error {
  readonly status: number;
  /** e.g. `VALIDATION_FAILED`, `NOT_FOUND`, `API_KEY_INACTIVE`. */
  readonly code: string;
  readonly title: string;
  readonly detail: string;
  readonly errors: FieldError[];
}

export declare class TransportError extends Error {}

export type Channels = "all" | string[];

export interface Key {
  id: string;
  org_id: string;
  name: string;
  prefix: string;
  scopes: string[];
  hmac_required: boolean;
  rate_limit: number | null;
  expires_at: string | null;
  ip_allowlist: string[];
  phone_allowlist: string[];
  channels: Channels;
  environment: "live" | "test";
  external_id: string | null;
  meta: Record<string, unknown> | null;
  status: "active" | "revoked" | "expired";
  created_at: string;
  created_by: string;
  revoked_at: string | null;
  revoked_by: string | null;
  last_used_at: string | null;
}

export interface CreatedKey {
  key: Key;
  /** The full key: shown once. */
  secret: string;
  signing_secret: string | null;
}

export interface NewKey {
  name: string;
  scopes?: string[] | null;
  hmac_required?: boolean | null;
  /** 1–1000 requests per second; null = the platform default. */
  rate_limit?: number | null;
  expires_at?: string | null;
  ip_allowlist?: string[] | null;
  phone_allowlist?: string[] | null;
  channels?: Channels | null;
  environment?: "live" | "test" | null;
  external_id?: string | null;
  meta?: Record<string, unknown> | null;
}

export type KeyChanges = Partial<Pick<NewKey, "name" | "scopes" | "channels" | "ip_allowlist" | "phone_allowlist" | "rate_limit" | "expires_at" | "meta">>;

export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

export interface Org { id: string; name: string; created_at: string }
export interface PhoneNumber { id: string; number: string; created_at: string }
export interface Channel { id: string; slug: string; name: string; created_at: string }

export interface SignedRequest {
  method: string;
  path: string;
  timestamp: string;
  signature: string;
  body_sha256?: string;
}

export interface VerifyValid {
  valid: true;
  code: "VALID";
  key_id: string;
  org_id: string;
  name: string;
  scopes: string[];
  channels: Channels;
  environment: "live" | "test";
  meta: Record<string, unknown> | null;
  rate_limit: { limit: number; remaining: number; reset_ms: number };
}

export type RefusalCode =
  | "INVALID_API_KEY" | "API_KEY_INACTIVE" | "API_KEY_EXPIRED" | "IP_NOT_ALLOWED" | "SIGNATURE_REQUIRED"
  | "INVALID_SIGNATURE" | "FORBIDDEN" | "SENDER_NOT_ALLOWED" | "CHANNEL_SCOPE_VIOLATION" | "RATE_LIMITED";

export interface VerifyRefused {
  valid: false;
  code: RefusalCode;
  /** What the platform should answer its caller. */
  status: 401 | 403 | 429;
  message: string;
  retry_after_ms?: number;
}

export type Verification = VerifyValid | VerifyRefused;

export interface VerifyOptions {
  scope?: string | string[];
  clientIp?: string;
  sender?: string;
  channels?: string[];
  request?: SignedRequest;
}

export interface Signature {
  timestamp: string;
  signature: string;
  headers(signatureHeader?: string, timestampHeader?: string): Record<string, string>;
}

export declare function bodySha256(body?: string | Uint8Array | null): string;
export declare function sign(secret: string, method: string, pathAndQuery: string, body?: string | Uint8Array | null, timestamp?: number | string): Signature;
export declare function signedRequest(method: string, path: string, timestamp: number | string, signature: string, bodySha256?: string): SignedRequest;

export declare class Keyward {
  constructor(baseUrl: string, token: string, options?: { timeoutMs?: number; fetch?: typeof fetch });
  verify(key: string, options?: VerifyOptions): Promise<Verification>;
  createOrg(name: string): Promise<Org>;
  addPhoneNumber(org: string, number: string): Promise<PhoneNumber>;
  addChannel(org: string, slug: string, name: string): Promise<Channel>;
  createKey(org: string, fields: NewKey): Promise<CreatedKey>;
  listKeys(org: string, options?: { status?: "active" | "revoked" | "expired"; createdBy?: string; limit?: number; cursor?: string }): Promise<Page<Key>>;
  iterKeys(org: string, options?: { status?: "active" | "revoked" | "expired"; createdBy?: string }): AsyncGenerator<Key>;
  getKey(org: string, id: string): Promise<Key>;
  updateKey(org: string, id: string, changes: KeyChanges): Promise<Key>;
  revokeKey(org: string, id: string): Promise<Key>;
  rollKey(org: string, id: string, options?: { graceSeconds?: number }): Promise<CreatedKey>;
  lookupKey(key: string): Promise<Key>;
}

/** The parts of Node's IncomingMessage / ServerResponse the middleware uses (Express and Connect fit). */
export interface MiddlewareRequest {
  method?: string;
  url?: string;
  originalUrl?: string;
  headers: Record<string, string | string[] | undefined>;
  rawHeaders?: string[];
  socket?: { remoteAddress?: string };
  rawBody?: Uint8Array;
  keyward?: VerifyValid;
  on(event: string, listener: (...args: any[]) => void): unknown;
}

export interface MiddlewareResponse {
  statusCode: number;
  setHeader(name: string, value: string): unknown;
  end(body?: string): unknown;
}

export interface MiddlewareOptions {
  client: Keyward;
  scope?: string | string[] | ((req: MiddlewareRequest) => string | string[] | undefined);
  exclude?: string[];
  signatureHeader?: string;
  timestampHeader?: string;
  maxSignedBody?: number;
}

export declare function keywardMiddleware(options: MiddlewareOptions): (req: MiddlewareRequest, res: MiddlewareResponse, next: (error?: unknown) => void) => Promise<void>;
