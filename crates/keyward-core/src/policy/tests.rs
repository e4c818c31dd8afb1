use std::cell::RefCell;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use time::macros::datetime;
use time::Duration;

use super::*;
use crate::Code::{
    ApiKeyExpired, ApiKeyInactive, ChannelScopeViolation, Forbidden, InvalidSignature, IpNotAllowed, SenderNotAllowed,
    SignatureRequired,
};

const NOW: OffsetDateTime = datetime!(2025-11-24 16:00 UTC);
const NOW_UNIX: &str = "1764000000";
const SIGNING_SECRET: &str = "kwsig_policy";
const PATH: &str = "/v1/messages";
const BODY: &[u8] = br#"{"from":"+14155550100"}"#;

/// A usable key: not revoked, no expiry, no allowlists, no HMAC, `messages:send` and
/// `templates:read`, every channel, and an org with two registered numbers.
fn base_policy() -> KeyPolicy {
    KeyPolicy {
        key_id: KeyId::parse("key_policytest").unwrap(),
        org_id: OrgId::parse("org_policytest").unwrap(),
        name: "CI".to_owned(),
        revoked: false,
        expires_at: None,
        ip_allowlist: Vec::new(),
        signing_key: None,
        scopes: vec!["messages:send".to_owned(), "templates:read".to_owned()],
        phone_allowlist: Vec::new(),
        org_phone_numbers: Arc::from(vec!["+14155550100".to_owned(), "+14155550101".to_owned()]),
        org_channels: Arc::from(vec!["marketing".to_owned(), "otp".to_owned(), "sales".to_owned()]),
        channels: Channels::All,
        environment: Environment::Live,
        meta: None,
        quota: Quota::per_second(80),
    }
}

// Changes to the base key, composed per row.
fn revoked(p: &mut KeyPolicy) {
    p.revoked = true;
}
fn expired(p: &mut KeyPolicy) {
    p.expires_at = Some(NOW - Duration::seconds(1));
}
fn expires_now(p: &mut KeyPolicy) {
    p.expires_at = Some(NOW);
}
fn expires_soon(p: &mut KeyPolicy) {
    p.expires_at = Some(NOW + Duration::seconds(1));
}
fn ip_allowlist(p: &mut KeyPolicy) {
    p.ip_allowlist = vec!["203.0.113.7/32".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
}
fn ipv6_allowlist(p: &mut KeyPolicy) {
    p.ip_allowlist = vec!["2001:db8::1/128".parse().unwrap(), "2001:db8:ff::/48".parse().unwrap()];
}
fn hmac(p: &mut KeyPolicy) {
    p.signing_key =
        Some(crate::signing::SigningKey::new(&crate::crypto::SigningSecret::from_plaintext(SIGNING_SECRET.to_owned())));
}
fn read_only(p: &mut KeyPolicy) {
    p.scopes = vec!["templates:read".to_owned()];
}
fn wildcard(p: &mut KeyPolicy) {
    p.scopes = vec![ALL_SCOPES.to_owned()];
}
fn phone_allowlist(p: &mut KeyPolicy) {
    p.phone_allowlist = vec!["+14155550100".to_owned()];
}
fn scoped_channels(p: &mut KeyPolicy) {
    p.channels = Channels::Only(vec!["marketing".to_owned(), "otp".to_owned()]);
}

/// What a row sends as its signature.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sig {
    None,
    /// Signed correctly at `NOW` with the key's secret.
    Good,
    /// Signed with another secret.
    WrongSecret,
    /// Signed correctly, ten minutes ago.
    Stale,
    /// Not 64 hex digits.
    Malformed,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// Allowed, with the effective channels: `None` is every channel.
    Valid(Option<&'static [&'static str]>),
    Deny(Code),
}

struct Case {
    rule: &'static str,
    key: &'static [fn(&mut KeyPolicy)],
    scopes: &'static [&'static str],
    client_ip: Option<&'static str>,
    sender: Option<&'static str>,
    channels: Option<&'static [&'static str]>,
    signature: Sig,
    /// What the replay guard answers.
    replayed: bool,
    expected: Expect,
}

/// A request that asks nothing of the base key; rows set what they test.
const BASE: Case = Case {
    rule: "",
    key: &[],
    scopes: &[],
    client_ip: None,
    sender: None,
    channels: None,
    signature: Sig::None,
    replayed: false,
    expected: Expect::Valid(None),
};

const fn deny(code: Code) -> Expect {
    Expect::Deny(code)
}

/// Answers whether a signature was already consumed, as the runtime's replay store would.
trait ReplayGuard {
    fn is_replay(&self, signature: &SignatureBytes, timestamp: i64) -> bool;
}

struct FixedReplay(bool);

impl ReplayGuard for FixedReplay {
    fn is_replay(&self, _: &SignatureBytes, _: i64) -> bool {
        self.0
    }
}

/// The whole decision as the runtime composes it: key checks, the replay check in its place,
/// then the request checks.
fn verify<'p, 'a>(
    policy: &'p KeyPolicy,
    request: &VerifyRequest<'a>,
    context: &Context,
    replay: &impl ReplayGuard,
) -> Result<Allowed<'p, 'a>, Denial> {
    let signature = check_key(policy, request, context)?;
    if let Some((bytes, timestamp)) = &signature {
        if replay.is_replay(bytes, *timestamp) {
            return Err(replayed());
        }
    }
    let channels = check_request(policy, request)?;
    Ok(Allowed { channels, signature })
}

/// The SPEC §5 signature, computed here with `hmac`/`sha2` rather than through `signing::sign`.
fn reference_signature(secret: &str, timestamp: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    let body_hash = hex::encode(Sha256::digest(BODY));
    mac.update(format!("{timestamp}\nPOST\n{PATH}\n{body_hash}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The status SPEC §5 gives each verification code.
fn spec_status(code: Code) -> u16 {
    match code {
        Code::InvalidApiKey
        | Code::ApiKeyInactive
        | Code::ApiKeyExpired
        | Code::SignatureRequired
        | Code::InvalidSignature => 401,
        Code::IpNotAllowed | Code::Forbidden | Code::SenderNotAllowed | Code::ChannelScopeViolation => 403,
        Code::RateLimited => 429,
        other => panic!("{other:?} is not a verification code"),
    }
}

fn check(case: &Case) {
    let mut policy = base_policy();
    for change in case.key {
        change(&mut policy);
    }
    let scopes: Vec<Cow<'_, str>> = case.scopes.iter().map(|s| Cow::Borrowed(*s)).collect();
    let channels: Option<Vec<Cow<'_, str>>> =
        case.channels.map(|list| list.iter().map(|s| Cow::Borrowed(*s)).collect());
    let stale = (NOW.unix_timestamp() - 600).to_string();
    let (timestamp, signature) = match case.signature {
        Sig::None | Sig::Good => (NOW_UNIX.to_owned(), reference_signature(SIGNING_SECRET, NOW_UNIX)),
        Sig::WrongSecret => (NOW_UNIX.to_owned(), reference_signature("kwsig_other", NOW_UNIX)),
        Sig::Stale => (stale.clone(), reference_signature(SIGNING_SECRET, &stale)),
        Sig::Malformed => (NOW_UNIX.to_owned(), "abc".to_owned()),
    };
    let body_sha256 = hex::encode(Sha256::digest(BODY));
    let signed = SignedRequest {
        timestamp: &timestamp,
        method: "POST",
        path_and_query: PATH,
        body_sha256: &body_sha256,
        signature: &signature,
    };
    let request = VerifyRequest {
        scopes: &scopes,
        client_ip: case.client_ip.map(|ip| ip.parse().unwrap()),
        sender: case.sender,
        channels: channels.as_deref(),
        signature: (case.signature != Sig::None).then_some(signed),
    };
    let context = Context { now: NOW, signature_tolerance_seconds: 300 };
    let result = verify(&policy, &request, &context, &FixedReplay(case.replayed));
    match (&result, case.expected) {
        (Ok(allowed), Expect::Valid(expected_channels)) => {
            let effective = match allowed.channels {
                EffectiveChannels::All => None,
                other => {
                    let mut list = Vec::new();
                    other.for_each(|slug| list.push(slug.to_owned()));
                    Some(list)
                }
            };
            let expected_channels = expected_channels.map(|list| list.iter().map(|s| (*s).to_owned()).collect());
            assert_eq!(effective, expected_channels, "{}: effective channels", case.rule);
            let consumed = allowed.signature.map(|(bytes, at)| (hex::encode(bytes), at));
            let expected_consumed = (policy.signing_key.is_some() && case.signature != Sig::None)
                .then(|| (signature.clone(), NOW.unix_timestamp()));
            assert_eq!(consumed, expected_consumed, "{}: the signature to consume", case.rule);
        }
        (Err(denial), Expect::Deny(code)) => {
            assert_eq!(denial.code, code, "{}: {}", case.rule, denial.message);
            assert_eq!(denial.code.verify_status(), spec_status(code), "{}: status", case.rule);
            assert!(!denial.message.is_empty(), "{}: a denial explains itself", case.rule);
        }
        (result, expected) => panic!("{}: expected {expected:?}, got {result:?}", case.rule),
    }
}

#[test]
fn key_state_is_checked_first_inactive_before_expired() {
    let cases = [
        Case { rule: "a usable key without requirements is valid", ..BASE },
        // API_KEY_INACTIVE
        Case {
            rule: "a revoked key answers API_KEY_INACTIVE",
            key: &[revoked],
            expected: deny(ApiKeyInactive),
            ..BASE
        },
        Case {
            rule: "a revoked and expired key answers API_KEY_INACTIVE",
            key: &[revoked, expired],
            expected: deny(ApiKeyInactive),
            ..BASE
        },
        Case {
            rule: "a revoked key from a bad IP answers API_KEY_INACTIVE",
            key: &[revoked, ip_allowlist],
            client_ip: Some("198.51.100.1"),
            expected: deny(ApiKeyInactive),
            ..BASE
        },
        // API_KEY_EXPIRED
        Case { rule: "an expired key answers API_KEY_EXPIRED", key: &[expired], expected: deny(ApiKeyExpired), ..BASE },
        Case {
            rule: "a key expiring exactly now is expired",
            key: &[expires_now],
            expected: deny(ApiKeyExpired),
            ..BASE
        },
        Case { rule: "a key expiring in one second is usable", key: &[expires_soon], ..BASE },
        Case {
            rule: "an expired key from a bad IP answers API_KEY_EXPIRED",
            key: &[expired, ip_allowlist],
            client_ip: Some("198.51.100.1"),
            expected: deny(ApiKeyExpired),
            ..BASE
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn ip_allowlist_rules_come_third() {
    let cases = [
        // IP_NOT_ALLOWED
        Case {
            rule: "a client outside the allowlist answers IP_NOT_ALLOWED",
            key: &[ip_allowlist],
            client_ip: Some("198.51.100.1"),
            expected: deny(IpNotAllowed),
            ..BASE
        },
        Case {
            rule: "a missing client IP with an allowlist answers IP_NOT_ALLOWED",
            key: &[ip_allowlist],
            expected: deny(IpNotAllowed),
            ..BASE
        },
        Case { rule: "a missing client IP without an allowlist is fine", ..BASE },
        Case { rule: "an empty allowlist admits any address", client_ip: Some("198.51.100.1"), ..BASE },
        Case {
            rule: "an exact IPv4 entry admits its address",
            key: &[ip_allowlist],
            client_ip: Some("203.0.113.7"),
            ..BASE
        },
        Case {
            rule: "an IPv4 CIDR entry admits its range",
            key: &[ip_allowlist],
            client_ip: Some("10.20.30.40"),
            ..BASE
        },
        Case {
            rule: "an IPv4-mapped IPv6 client matches an IPv4 entry",
            key: &[ip_allowlist],
            client_ip: Some("::ffff:203.0.113.7"),
            ..BASE
        },
        Case {
            rule: "an IPv4-mapped IPv6 client matches an IPv4 CIDR",
            key: &[ip_allowlist],
            client_ip: Some("::ffff:10.1.2.3"),
            ..BASE
        },
        Case {
            rule: "an IPv4-mapped IPv6 client outside the IPv4 entries is refused",
            key: &[ip_allowlist],
            client_ip: Some("::ffff:198.51.100.1"),
            expected: deny(IpNotAllowed),
            ..BASE
        },
        Case {
            rule: "an exact IPv6 entry admits its address",
            key: &[ipv6_allowlist],
            client_ip: Some("2001:db8::1"),
            ..BASE
        },
        Case {
            rule: "an IPv6 CIDR entry admits its range",
            key: &[ipv6_allowlist],
            client_ip: Some("2001:db8:ff:1::9"),
            ..BASE
        },
        Case {
            rule: "an IPv6 client outside the IPv6 entries is refused",
            key: &[ipv6_allowlist],
            client_ip: Some("2001:db8::2"),
            expected: deny(IpNotAllowed),
            ..BASE
        },
        Case {
            rule: "an IPv4 client does not match IPv6 entries",
            key: &[ipv6_allowlist],
            client_ip: Some("203.0.113.7"),
            expected: deny(IpNotAllowed),
            ..BASE
        },
        Case {
            rule: "a bad IP beats a missing signature",
            key: &[ip_allowlist, hmac],
            client_ip: Some("198.51.100.1"),
            expected: deny(IpNotAllowed),
            ..BASE
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn signature_rules_come_fourth() {
    let cases = [
        // SIGNATURE_REQUIRED
        Case {
            rule: "an HMAC key without a signature answers SIGNATURE_REQUIRED",
            key: &[hmac],
            expected: deny(SignatureRequired),
            ..BASE
        },
        Case {
            rule: "a missing signature beats a missing scope",
            key: &[hmac],
            scopes: &["contacts:write"],
            expected: deny(SignatureRequired),
            ..BASE
        },
        Case {
            rule: "a correctly signed request to an HMAC key is valid and its signature is consumed",
            key: &[hmac],
            signature: Sig::Good,
            ..BASE
        },
        Case { rule: "a signature sent to a key without HMAC is ignored", signature: Sig::WrongSecret, ..BASE },
        Case {
            rule: "the replay guard is not asked about keys without HMAC",
            signature: Sig::Good,
            replayed: true,
            ..BASE
        },
        // INVALID_SIGNATURE
        Case {
            rule: "a signature with the wrong secret answers INVALID_SIGNATURE",
            key: &[hmac],
            signature: Sig::WrongSecret,
            expected: deny(InvalidSignature),
            ..BASE
        },
        Case {
            rule: "a timestamp more than 300 s away answers INVALID_SIGNATURE",
            key: &[hmac],
            signature: Sig::Stale,
            expected: deny(InvalidSignature),
            ..BASE
        },
        Case {
            rule: "a malformed signature answers INVALID_SIGNATURE",
            key: &[hmac],
            signature: Sig::Malformed,
            expected: deny(InvalidSignature),
            ..BASE
        },
        Case {
            rule: "a replayed signature answers INVALID_SIGNATURE",
            key: &[hmac],
            signature: Sig::Good,
            replayed: true,
            expected: deny(InvalidSignature),
            ..BASE
        },
        Case {
            rule: "an invalid signature beats a missing scope",
            key: &[hmac],
            scopes: &["contacts:write"],
            signature: Sig::WrongSecret,
            expected: deny(InvalidSignature),
            ..BASE
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn scope_rules_come_fifth_and_deny_by_default() {
    let cases = [
        // FORBIDDEN
        Case {
            rule: "a scope the key lacks answers FORBIDDEN",
            scopes: &["contacts:write"],
            expected: deny(Forbidden),
            ..BASE
        },
        Case {
            rule: "every asked scope is required",
            scopes: &["templates:read", "templates:write"],
            expected: deny(Forbidden),
            ..BASE
        },
        Case { rule: "asked scopes the key holds pass", scopes: &["templates:read"], ..BASE },
        Case { rule: "no scope asked checks only that the key is usable", key: &[read_only], ..BASE },
        Case {
            rule: "a scope is matched exactly, not by prefix",
            key: &[read_only],
            scopes: &["templates"],
            expected: deny(Forbidden),
            ..BASE
        },
        Case {
            rule: "the wildcard grants every scope",
            key: &[wildcard],
            scopes: &["contacts:write", "keys:write", "library_assets:read"],
            ..BASE
        },
        Case {
            rule: "a missing scope beats a bad sender",
            key: &[read_only],
            scopes: &["messages:send"],
            sender: Some("+19999999999"),
            expected: deny(Forbidden),
            ..BASE
        },
        Case {
            rule: "a missing scope beats a channel violation",
            key: &[scoped_channels],
            scopes: &["contacts:write"],
            channels: Some(&["sales"]),
            expected: deny(Forbidden),
            ..BASE
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn sender_rules_apply_only_to_messages_send() {
    let cases = [
        // SENDER_NOT_ALLOWED
        Case {
            rule: "a registered sender without a phone allowlist is valid",
            scopes: &["messages:send"],
            sender: Some("+14155550101"),
            ..BASE
        },
        Case {
            rule: "a sender not registered in the org answers SENDER_NOT_ALLOWED",
            scopes: &["messages:send"],
            sender: Some("+14155550199"),
            expected: deny(SenderNotAllowed),
            ..BASE
        },
        Case {
            rule: "a registered sender outside the phone allowlist answers SENDER_NOT_ALLOWED",
            key: &[phone_allowlist],
            scopes: &["messages:send"],
            sender: Some("+14155550101"),
            expected: deny(SenderNotAllowed),
            ..BASE
        },
        Case {
            rule: "a sender in the phone allowlist is valid",
            key: &[phone_allowlist],
            scopes: &["messages:send"],
            sender: Some("+14155550100"),
            ..BASE
        },
        Case {
            rule: "a missing sender with a phone allowlist answers SENDER_NOT_ALLOWED",
            key: &[phone_allowlist],
            scopes: &["messages:send"],
            expected: deny(SenderNotAllowed),
            ..BASE
        },
        Case { rule: "a missing sender without a phone allowlist is valid", scopes: &["messages:send"], ..BASE },
        Case {
            rule: "the sender rule applies only when messages:send is asked",
            key: &[phone_allowlist],
            scopes: &["templates:read"],
            sender: Some("+14155550199"),
            ..BASE
        },
        Case {
            rule: "the sender rule does not apply without a scope",
            key: &[phone_allowlist],
            sender: Some("not a number"),
            ..BASE
        },
        Case {
            rule: "a sender with non-E.164 formatting is normalized before comparing",
            key: &[phone_allowlist],
            scopes: &["messages:send"],
            sender: Some("+1 (415) 555-0100"),
            ..BASE
        },
        Case {
            rule: "a sender that is not a phone number answers SENDER_NOT_ALLOWED",
            scopes: &["messages:send"],
            sender: Some("hello"),
            expected: deny(SenderNotAllowed),
            ..BASE
        },
        Case {
            rule: "the wildcard scope asked for messages:send still checks the sender",
            key: &[wildcard],
            scopes: &["messages:send"],
            sender: Some("+14155550199"),
            expected: deny(SenderNotAllowed),
            ..BASE
        },
        Case {
            rule: "a bad sender beats a channel violation",
            key: &[scoped_channels],
            scopes: &["messages:send"],
            sender: Some("+14155550199"),
            channels: Some(&["sales"]),
            expected: deny(SenderNotAllowed),
            ..BASE
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn the_four_channel_rules_give_the_effective_set() {
    let cases = [
        // Channel rules and CHANNEL_SCOPE_VIOLATION
        Case { rule: "key all and no channels asked: every channel", expected: Expect::Valid(None), ..BASE },
        Case {
            rule: "key all and channels asked: those channels",
            channels: Some(&["marketing", "sales"]),
            expected: Expect::Valid(Some(&["marketing", "sales"])),
            ..BASE
        },
        Case {
            rule: "scoped key and no channels asked: the key's channels",
            key: &[scoped_channels],
            expected: Expect::Valid(Some(&["marketing", "otp"])),
            ..BASE
        },
        Case {
            rule: "scoped key and a subset asked: the subset",
            key: &[scoped_channels],
            channels: Some(&["otp"]),
            expected: Expect::Valid(Some(&["otp"])),
            ..BASE
        },
        Case {
            rule: "scoped key and channels outside it answer CHANNEL_SCOPE_VIOLATION",
            key: &[scoped_channels],
            channels: Some(&["otp", "sales"]),
            expected: deny(ChannelScopeViolation),
            ..BASE
        },
        // Everything at once.
        Case {
            rule: "a request meeting every rule is valid",
            key: &[ip_allowlist, hmac, phone_allowlist, scoped_channels, expires_soon],
            scopes: &["messages:send", "templates:read"],
            client_ip: Some("10.0.0.1"),
            sender: Some("+14155550100"),
            channels: Some(&["marketing"]),
            signature: Sig::Good,
            expected: Expect::Valid(Some(&["marketing"])),
            ..BASE
        },
    ];
    for case in &cases {
        check(case);
    }
}

#[test]
fn a_channel_violation_names_the_offending_slugs() {
    let mut policy = base_policy();
    scoped_channels(&mut policy);
    let requested = [Cow::Borrowed("otp"), Cow::Borrowed("sales"), Cow::Borrowed("support")];
    let request = VerifyRequest { channels: Some(&requested), ..VerifyRequest::default() };
    let context = Context { now: NOW, signature_tolerance_seconds: 300 };
    let denial = verify(&policy, &request, &context, &FixedReplay(false)).unwrap_err();
    assert_eq!(denial.code, Code::ChannelScopeViolation);
    assert!(denial.message.contains("sales, support"), "{}", denial.message);
    assert!(!denial.message.contains("otp"), "{}", denial.message);
}

#[test]
fn channels_the_org_does_not_have_are_refused_even_for_a_key_on_all_channels() {
    let policy = base_policy();
    let requested = [Cow::Borrowed("../admin"), Cow::Borrowed("marketing"), Cow::Borrowed("nonexistent")];
    let request = VerifyRequest { channels: Some(&requested), ..VerifyRequest::default() };
    let context = Context { now: NOW, signature_tolerance_seconds: 300 };
    let denial = verify(&policy, &request, &context, &FixedReplay(false)).unwrap_err();
    assert_eq!(denial.code, Code::ChannelScopeViolation);
    assert!(denial.message.ends_with("channels: ../admin, nonexistent"), "{}", denial.message);
}

#[test]
fn a_forbidden_answer_names_the_missing_scope() {
    let policy = base_policy();
    let scopes = [Cow::Borrowed("contacts:write")];
    let request = VerifyRequest { scopes: &scopes, ..VerifyRequest::default() };
    let context = Context { now: NOW, signature_tolerance_seconds: 300 };
    let denial = verify(&policy, &request, &context, &FixedReplay(false)).unwrap_err();
    assert_eq!(denial.code, Code::Forbidden);
    assert!(denial.message.contains("contacts:write"), "{}", denial.message);
}

/// Records what it was asked, and answers "not seen".
#[derive(Default)]
struct RecordingReplay(RefCell<Vec<(SignatureBytes, i64)>>);

impl ReplayGuard for RecordingReplay {
    fn is_replay(&self, signature: &SignatureBytes, timestamp: i64) -> bool {
        self.0.borrow_mut().push((*signature, timestamp));
        false
    }
}

#[test]
fn replay_guard_is_asked_only_about_signatures_that_check_out() {
    let mut policy = base_policy();
    hmac(&mut policy);
    let body_sha256 = hex::encode(Sha256::digest(BODY));
    let context = Context { now: NOW, signature_tolerance_seconds: 300 };
    let ask = |signature: &str| {
        let guard = RecordingReplay::default();
        let signed = SignedRequest {
            timestamp: NOW_UNIX,
            method: "POST",
            path_and_query: PATH,
            body_sha256: &body_sha256,
            signature,
        };
        let request = VerifyRequest { signature: Some(signed), ..VerifyRequest::default() };
        let result = verify(&policy, &request, &context, &guard).map(|allowed| allowed.signature);
        (result, guard.0.into_inner())
    };

    let good = reference_signature(SIGNING_SECRET, NOW_UNIX);
    let (result, asked) = ask(&good);
    let expected = (hex::decode(&good).unwrap().try_into().unwrap(), NOW.unix_timestamp());
    assert_eq!(asked, vec![expected]);
    assert_eq!(result.unwrap(), Some(expected));

    let (result, asked) = ask(&reference_signature("kwsig_other", NOW_UNIX));
    assert_eq!(result.unwrap_err().code, Code::InvalidSignature);
    assert!(asked.is_empty(), "a mismatched signature never reaches the replay store");
}

#[test]
fn grants_matches_exact_scopes_or_the_wildcard() {
    let mut policy = base_policy();
    assert!(policy.grants("messages:send"));
    assert!(!policy.grants("messages"));
    assert!(!policy.grants("keys:write"));
    wildcard(&mut policy);
    assert!(policy.grants("keys:write"));
    assert!(policy.grants("anything"));
}

#[test]
fn verification_codes_have_the_spec_strings_and_statuses() {
    let rows = [
        (Code::InvalidApiKey, "INVALID_API_KEY", 401),
        (Code::ApiKeyInactive, "API_KEY_INACTIVE", 401),
        (Code::ApiKeyExpired, "API_KEY_EXPIRED", 401),
        (Code::IpNotAllowed, "IP_NOT_ALLOWED", 403),
        (Code::SignatureRequired, "SIGNATURE_REQUIRED", 401),
        (Code::InvalidSignature, "INVALID_SIGNATURE", 401),
        (Code::Forbidden, "FORBIDDEN", 403),
        (Code::SenderNotAllowed, "SENDER_NOT_ALLOWED", 403),
        (Code::ChannelScopeViolation, "CHANNEL_SCOPE_VIOLATION", 403),
        (Code::RateLimited, "RATE_LIMITED", 429),
    ];
    for (code, text, status) in rows {
        assert_eq!(code.as_str(), text);
        assert_eq!(code.verify_status(), status, "{text}");
        assert_eq!(spec_status(code), status, "{text}");
    }
    assert_eq!(Code::ApiKeyInactive.http_status(), 409, "editing a revoked key is a conflict");
}

#[test]
fn net_contains_treats_ipv4_mapped_clients_as_ipv4() {
    let net: IpNet = "10.0.0.0/8".parse().unwrap();
    assert!(net_contains(&net, "10.1.2.3".parse().unwrap()));
    assert!(net_contains(&net, "::ffff:10.1.2.3".parse().unwrap()));
    assert!(!net_contains(&net, "::ffff:11.1.2.3".parse().unwrap()));
    assert!(!net_contains(&net, "::10.1.2.3".parse().unwrap()), "an IPv4-compatible address is not mapped");
}
