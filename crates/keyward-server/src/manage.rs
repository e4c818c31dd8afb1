//! Management operations shared by the JSON API and the CLI: validate with core, write through
//! the org-bound store with the audit event in the same transaction, then drop the verifier's
//! cached copy before answering.

use keyward_core::crypto::SigningSecret;
use keyward_core::ids::{ChannelId, KeyId, OrgId, PhoneNumberId};
use keyward_core::key::KeySecret;
use keyward_core::record::{self, Actor, KeyRecord, KeySettings};
use keyward_core::validate::{self, KeyPatchInput, NewKeyInput, Rules};
use keyward_core::Code;
use keyward_store::{ChannelRecord, OrgRecord, OrgStore, PhoneNumberRecord, RevokeKey, RollKey};
use serde_json::json;

use crate::app::Keyward;
use crate::auth::{audit_event, RequestMeta};
use crate::problem::ApiError;

/// A key just created or rolled, with the secrets shown this once.
#[derive(Debug)]
pub struct CreatedKey {
    pub record: KeyRecord,
    pub secret: KeySecret,
    pub signing_secret: Option<SigningSecret>,
}

/// Longest grace period of a roll: one week.
pub const MAX_GRACE_SECONDS: i64 = 604_800;

impl Keyward {
    pub async fn create_org(&self, name: &str) -> Result<OrgRecord, ApiError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(ApiError::field(
                "name",
                "Organization name must be 1–100 characters without control characters",
            ));
        }
        let org = OrgRecord {
            id: OrgId::generate(&mut rand::thread_rng()),
            name: name.to_owned(),
            created_at: self.clock.now(),
        };
        self.store.insert_org(&org).await?;
        Ok(org)
    }

    pub async fn add_phone_number(
        &self,
        org: &dyn OrgStore,
        actor: &Actor,
        meta: &RequestMeta,
        number: &str,
    ) -> Result<PhoneNumberRecord, ApiError> {
        let number = keyward_core::phone::normalize_e164(number).ok_or_else(|| {
            ApiError::field("number", "Not a valid phone number in international format, such as +14155550100")
        })?;
        let record = PhoneNumberRecord {
            id: PhoneNumberId::generate(&mut rand::thread_rng()),
            number,
            created_at: self.clock.now(),
        };
        let event = audit_event(
            actor,
            meta,
            record.created_at,
            "phone_number.added",
            ("phone_number", record.id.as_str(), &record.number),
            json!({ "number": record.number }),
        );
        org.add_phone_number(&record, &event).await?;
        self.verifier.invalidate_org(org.org_id());
        Ok(record)
    }

    pub async fn add_channel(
        &self,
        org: &dyn OrgStore,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        name: &str,
    ) -> Result<ChannelRecord, ApiError> {
        let mut errors = Vec::new();
        if let Err(message) = validate::channel_slug(slug) {
            errors.push(validate::FieldError::new("slug", message));
        }
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            errors.push(validate::FieldError::new(
                "name",
                "Channel name must be 1–100 characters without control characters",
            ));
        }
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        let record = ChannelRecord {
            id: ChannelId::generate(&mut rand::thread_rng()),
            slug: slug.to_owned(),
            name: name.to_owned(),
            created_at: self.clock.now(),
        };
        let event = audit_event(
            actor,
            meta,
            record.created_at,
            "channel.added",
            ("channel", record.id.as_str(), &record.slug),
            json!({ "slug": record.slug, "name": record.name }),
        );
        org.add_channel(&record, &event).await?;
        Ok(record)
    }

    /// The org's numbers and channel slugs, which key fields are validated against.
    async fn org_context(&self, org: &dyn OrgStore) -> Result<(Vec<String>, Vec<String>), ApiError> {
        let numbers = org.phone_numbers().await?.into_iter().map(|n| n.number).collect();
        let channels = org.channels().await?.into_iter().map(|c| c.slug).collect();
        Ok((numbers, channels))
    }

    pub async fn create_key(
        &self,
        org: &dyn OrgStore,
        actor: &Actor,
        meta: &RequestMeta,
        input: &NewKeyInput,
    ) -> Result<CreatedKey, ApiError> {
        let (numbers, channels) = self.org_context(org).await?;
        let now = self.clock.now();
        let rules = self.rules(&numbers, &channels, now);
        let settings = validate::new_key(input, &rules)?;
        let created = self.mint(org.org_id(), settings, actor, now);
        let event = audit_event(
            actor,
            meta,
            now,
            "key.created",
            ("api_key", created.record.id.as_str(), &created.record.settings.name),
            settings_json(&created.record.settings),
        );
        org.insert_key(&created.record, &event).await?;
        Ok(created)
    }

    fn rules<'a>(&'a self, numbers: &'a [String], channels: &'a [String], now: time::OffsetDateTime) -> Rules<'a> {
        Rules {
            catalogue: &self.config.catalogue,
            max_name_length: self.config.max_name_length,
            org_phone_numbers: numbers,
            org_channels: channels,
            now,
        }
    }

    /// A new key record with fresh secrets; the signing secret is sealed under the key's id.
    fn mint(&self, org_id: &OrgId, settings: KeySettings, actor: &Actor, now: time::OffsetDateTime) -> CreatedKey {
        let mut rng = rand::rngs::OsRng;
        let secret = self.config.key_format.generate(settings.environment, &mut rng);
        let id = KeyId::generate(&mut rng);
        let signing_secret = settings.hmac_required.then(|| SigningSecret::generate(&mut rng));
        let sealed = signing_secret.as_ref().map(|s| self.secret_box.seal(s, id.as_str(), &mut rng));
        let record = KeyRecord {
            id,
            org_id: org_id.clone(),
            prefix: secret.prefix_field().to_owned(),
            hash: self.verifier.pepper().hash(secret.expose()),
            sealed_signing_secret: sealed,
            settings,
            created_at: now,
            created_by: actor.id.clone(),
            revoked_at: None,
            revoked_by: None,
            last_used_at: None,
        };
        CreatedKey { record, secret, signing_secret }
    }

    pub async fn update_key(
        &self,
        org: &dyn OrgStore,
        actor: &Actor,
        meta: &RequestMeta,
        id: &KeyId,
        input: &KeyPatchInput,
    ) -> Result<KeyRecord, ApiError> {
        let current = org.find_key(id).await?.ok_or(ApiError::NotFound)?;
        if current.revoked_at.is_some() {
            return Err(ApiError::code(Code::ApiKeyInactive, "The API key is revoked and can no longer be changed"));
        }
        let (numbers, channels) = self.org_context(org).await?;
        let now = self.clock.now();
        let patch = validate::key_patch(input, &self.rules(&numbers, &channels, now))?;
        if patch.is_empty() {
            return Ok(current);
        }
        let event = audit_event(
            actor,
            meta,
            now,
            "key.updated",
            ("api_key", id.as_str(), &current.settings.name),
            serde_json::Value::Null,
        );
        let updated = org.update_key(id, &patch, event).await?;
        self.verifier.invalidate(&updated.hash);
        Ok(updated)
    }

    pub async fn revoke_key(
        &self,
        org: &dyn OrgStore,
        actor: &Actor,
        meta: &RequestMeta,
        id: &KeyId,
    ) -> Result<KeyRecord, ApiError> {
        let current = org.find_key(id).await?.ok_or(ApiError::NotFound)?;
        let now = self.clock.now();
        let event = audit_event(
            actor,
            meta,
            now,
            "key.revoked",
            ("api_key", id.as_str(), &current.settings.name),
            json!({ "status": { "old": current.status(now).as_str(), "new": "revoked" } }),
        );
        let revoked = org.revoke_key(&RevokeKey { id, at: now, by: actor }, &event).await?;
        self.verifier.invalidate(&revoked.hash);
        Ok(revoked)
    }

    pub async fn roll_key(
        &self,
        org: &dyn OrgStore,
        actor: &Actor,
        meta: &RequestMeta,
        id: &KeyId,
        grace_seconds: i64,
    ) -> Result<CreatedKey, ApiError> {
        if !(0..=MAX_GRACE_SECONDS).contains(&grace_seconds) {
            return Err(ApiError::field(
                "grace_seconds",
                "Grace period must be an integer between 0 and 604800 seconds",
            ));
        }
        let old = org.find_key(id).await?.ok_or(ApiError::NotFound)?;
        if old.revoked_at.is_some() {
            return Err(ApiError::code(Code::ApiKeyInactive, "The API key is revoked and can no longer be rolled"));
        }
        let now = self.clock.now();
        let created = self.mint(org.org_id(), old.settings.clone(), actor, now);
        let grace_until = (grace_seconds > 0).then(|| now + time::Duration::seconds(grace_seconds));
        let rolled = audit_event(
            actor,
            meta,
            now,
            "key.rolled",
            ("api_key", id.as_str(), &old.settings.name),
            json!({ "rolled_to": created.record.id.as_str(), "grace_seconds": grace_seconds }),
        );
        let mut created_changes = settings_json(&created.record.settings);
        created_changes["rolled_from"] = json!(id.as_str());
        let created_event = audit_event(
            actor,
            meta,
            now,
            "key.created",
            ("api_key", created.record.id.as_str(), &created.record.settings.name),
            created_changes,
        );
        let roll = RollKey { old: id, new: &created.record, at: now, grace_until, by: actor };
        let old_after = org.roll_key(&roll, &rolled, &created_event).await?;
        self.verifier.invalidate(&old_after.hash);
        Ok(created)
    }
}

/// The non-secret settings of a key, as recorded by `key.created`.
fn settings_json(settings: &KeySettings) -> serde_json::Value {
    json!({
        "name": settings.name,
        "scopes": settings.scopes,
        "hmac_required": settings.hmac_required,
        "rate_limit": settings.rate_limit,
        "expires_at": record::time_json(settings.expires_at),
        "ip_allowlist": record::ip_json(&settings.ip_allowlist),
        "phone_allowlist": settings.phone_allowlist,
        "channels": record::channels_json(&settings.channels),
        "environment": settings.environment.as_str(),
    })
}
