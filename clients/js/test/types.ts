// Type check (tsc --noEmit, run by scripts/client-tests.sh): the client's declared types against
// the server's OpenAPI document (types generated from docs/openapi.json by openapi-typescript into
// test/generated/openapi.d.ts). What the server answers must fit the client's answer types, and
// what the client sends must fit the server's request schemas.
import type { components } from "./generated/openapi.js";
import type {
  Channel, CreatedKey, Key, KeyChanges, NewKey, Org, Page, PhoneNumber, SignedRequest,
  VerifyRefused, VerifyValid, Verification,
} from "../src/index.js";
import { Keyward, KeywardError, keywardMiddleware, sign, signedRequest, bodySha256 } from "../src/index.js";

type Schemas = components["schemas"];
/** `true` when every value of `From` is a value of `To`; a compile error otherwise. */
type Fits<From, To> = [From] extends [To] ? true : false;
const fits = <T extends true>(_proof: T): void => undefined;

// Answers: every shape the server sends is one the client declares.
fits<Fits<Schemas["KeyView"], Key>>(true);
fits<Fits<Schemas["CreatedKeyResponse"], CreatedKey>>(true);
fits<Fits<Schemas["ListResponse_KeyView"], Page<Key>>>(true);
fits<Fits<Schemas["OrgView"], Org>>(true);
fits<Fits<Schemas["PhoneNumberView"], PhoneNumber>>(true);
fits<Fits<Schemas["ChannelView"], Channel>>(true);
fits<Fits<Schemas["VerifyValid"], VerifyValid>>(true);
fits<Fits<Schemas["VerifyRefused"], VerifyRefused>>(true);
fits<Fits<Schemas["VerifyAnswer"], Verification>>(true);
// ... and the client promises nothing the server does not send.
fits<Fits<Key, Schemas["KeyView"]>>(true);
fits<Fits<VerifyValid, Schemas["VerifyValid"]>>(true);
fits<Fits<VerifyRefused, Schemas["VerifyRefused"]>>(true);

// Requests: what the client can send is what the server accepts. The scope catalogue is the
// operator's (the committed document has the default one), so scopes stay `string[]` here.
type WithoutScopes<T> = Omit<T, "scopes">;
fits<Fits<WithoutScopes<NewKey>, WithoutScopes<Schemas["CreateKey"]>>>(true);
fits<Fits<WithoutScopes<KeyChanges>, WithoutScopes<Schemas["UpdateKey"]>>>(true);
fits<Fits<SignedRequest, Schemas["SignedRequestBody"]>>(true);

// The functions' signatures, used as a caller would.
async function usage(): Promise<void> {
  const client = new Keyward("http://127.0.0.1:8080", "token", { timeoutMs: 1000 });
  const answer = await client.verify("kw_live_x", { scope: ["messages:send"], clientIp: "203.0.113.7" });
  if (answer.valid) {
    const scopes: string[] = answer.scopes;
    const remaining: number = answer.rate_limit.remaining;
    void scopes;
    void remaining;
  } else {
    const status: 401 | 403 | 429 = answer.status;
    void status;
  }
  const created: CreatedKey = await client.createKey("org_1", { name: "ci", scopes: ["messages:send"], rate_limit: 10 });
  const secret: string = created.secret;
  void secret;
  for await (const key of client.iterKeys("org_1", { status: "active" })) {
    const id: string = key.id;
    void id;
  }
  const signature = sign("whsec", "POST", "/v1/messages", '{"a":1}');
  const headers: Record<string, string> = signature.headers();
  void headers;
  void signedRequest("POST", "/v1/messages", signature.timestamp, signature.signature, bodySha256('{"a":1}'));
  const middleware = keywardMiddleware({ client, scope: "messages:send" });
  void middleware;
  try {
    await client.revokeKey("org_1", "key_1");
  } catch (error) {
    if (error instanceof KeywardError) {
      const code: string = error.code;
      void code;
    }
  }
}
void usage;
