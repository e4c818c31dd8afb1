//! `POST /v1/verify` bodies: parsed as the handler parses them (`extract::parse_json` into
//! `VerifyBody`), then decided by `policy::verify` against two fixed keys, one of them signed.

use std::borrow::Cow;
use std::sync::Arc;

use keyward_core::crypto::SigningSecret;
use keyward_core::ids::{KeyId, OrgId};
use keyward_core::key::Environment;
use keyward_core::policy::{self, net_contains, Context, EffectiveChannels, KeyPolicy, VerifyRequest};
use keyward_core::ratelimit::Quota;
use keyward_core::record::Channels;
use keyward_core::signing::{SignedRequest, SigningKey, EMPTY_BODY_SHA256};
use keyward_server::extract::parse_json;
use keyward_server::verify::VerifyBody;
use time::OffsetDateTime;

const NOW: i64 = 1_700_000_000;

pub fn run(data: &[u8]) {
    let Ok(body) = parse_json::<VerifyBody<'_>>(data) else { return };
    let client_ip = body.client_ip.as_deref().and_then(|text| text.parse().ok());
    let method = body.request.as_ref().map(|signed| signed.method.to_ascii_uppercase());
    let signature = match (&body.request, &method) {
        (Some(signed), Some(method)) if signed.signature.is_some() => Some(SignedRequest {
            timestamp: &signed.timestamp,
            method,
            path_and_query: &signed.path,
            body_sha256: signed.body_sha256.as_deref().unwrap_or(EMPTY_BODY_SHA256),
            signature: signed.signature.as_deref().unwrap_or_default(),
        }),
        _ => None,
    };
    let request = VerifyRequest {
        scopes: body.scope.as_ref().map_or(&[], |scopes| scopes.as_slice()),
        client_ip,
        sender: body.sender.as_deref(),
        channels: body.channels.as_deref(),
        signature,
    };
    let context = Context {
        now: OffsetDateTime::from_unix_timestamp(NOW).expect("a valid time"),
        signature_tolerance_seconds: 300,
    };
    for signed in [false, true] {
        let key = policy_for_fuzzing(signed);
        let Ok(allowed) = policy::verify(&key, &request, &context) else { continue };
        // What passed is what the key allows.
        assert!(request.scopes.iter().all(|scope| key.grants(scope)), "{:?}", request.scopes);
        let ip = request.client_ip.expect("the key has an IP allowlist");
        assert!(key.ip_allowlist.iter().any(|net| net_contains(net, ip)), "{ip}");
        assert_eq!(allowed.signature.is_some(), signed);
        let Channels::Only(own) = &key.channels else { unreachable!("the key is channel-scoped") };
        match allowed.channels {
            EffectiveChannels::All => panic!("a channel-scoped key reached all channels"),
            EffectiveChannels::Key(list) => assert_eq!(list, own.as_slice()),
            EffectiveChannels::Requested(list) => {
                assert!(list.iter().all(|slug: &Cow<'_, str>| own.iter().any(|o| o == slug)), "{list:?}");
            }
        }
    }
}

/// A key that restricts everything: scopes, IPs, senders, channels, and (when `signed`) signatures.
fn policy_for_fuzzing(signed: bool) -> KeyPolicy {
    KeyPolicy {
        key_id: KeyId::parse("key_fuzz").expect("an id"),
        org_id: OrgId::parse("org_fuzz").expect("an id"),
        name: "fuzz".to_owned(),
        revoked: false,
        expires_at: None,
        ip_allowlist: vec!["203.0.113.0/24".parse().expect("a CIDR"), "2001:db8::/32".parse().expect("a CIDR")],
        signing_key: signed.then(|| SigningKey::new(&SigningSecret::from_plaintext("kwsig_fuzz".to_owned()))),
        scopes: vec!["messages:send".to_owned(), "templates:read".to_owned()],
        phone_allowlist: vec!["+14155550100".to_owned()],
        org_phone_numbers: Arc::from(vec!["+14155550100".to_owned(), "+14155550101".to_owned()]),
        org_channels: Arc::from(vec!["marketing".to_owned(), "otp".to_owned()]),
        channels: Channels::Only(vec!["marketing".to_owned()]),
        environment: Environment::Live,
        meta: None,
        quota: Quota::per_second(10),
    }
}
