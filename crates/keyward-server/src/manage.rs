//! Management operations shared by the JSON API and the CLI: validate with core, write through
//! the org-bound store with the audit event in the same transaction, then drop the verifier's
//! cached copy before answering.

use keyward_core::crypto::SigningSecret;
use keyward_core::ids::{ChannelId, KeyId, MemberId, OrgId, PhoneNumberId};
use keyward_core::key::KeySecret;
use keyward_core::record::{self, Actor, KeyRecord, KeySettings, Role};
use keyward_core::validate::{self, KeyPatchInput, NewKeyInput, Rules};
use keyward_core::Code;
use keyward_store::{
    ChannelRecord, MemberRecord, OrgRecord, OrgStore, PhoneNumberRecord, RevokeKey, RollKey, SessionRecord,
};
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
        if name.is_empty() || name.chars().count() > 100 {
            return Err(ApiError::field("name", "Organization name must be 1–100 characters"));
        }
        if let Some(problem) = validate::display_name_problem(name) {
            return Err(ApiError::field("name", format!("Organization name {problem}")));
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
        if name.is_empty() || name.chars().count() > 100 {
            errors.push(validate::FieldError::new("name", "Channel name must be 1–100 characters"));
        } else if let Some(problem) = validate::display_name_problem(name) {
            errors.push(validate::FieldError::new("name", format!("Channel name {problem}")));
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
        ceiling: Option<&[String]>,
    ) -> Result<CreatedKey, ApiError> {
        let (numbers, channels) = self.org_context(org).await?;
        let now = self.clock.now();
        let rules = self.rules(&numbers, &channels, now);
        let settings = validate::new_key(input, &rules)?;
        within_ceiling(&settings.scopes, ceiling)?;
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
        // Hashed and sealed under the current master key version.
        let keyring = self.verifier.keyring();
        let sealed = signing_secret.as_ref().map(|s| keyring.seal(s, id.as_str(), &mut rng));
        let (hash_version, hash) = keyring.hash(secret.expose());
        let record = KeyRecord {
            id,
            org_id: org_id.clone(),
            prefix: secret.prefix_field().to_owned(),
            hash,
            hash_version,
            seal_version: sealed.as_ref().map_or(hash_version, |(version, _)| *version),
            sealed_signing_secret: sealed.map(|(_, sealed)| sealed),
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
        ceiling: Option<&[String]>,
    ) -> Result<KeyRecord, ApiError> {
        let current = org.find_key(id).await?.ok_or(ApiError::NotFound)?;
        within_ceiling(&current.settings.scopes, ceiling)?;
        if current.revoked_at.is_some() {
            return Err(ApiError::code(Code::ApiKeyInactive, "The API key is revoked and can no longer be changed"));
        }
        let (numbers, channels) = self.org_context(org).await?;
        let now = self.clock.now();
        let patch = validate::key_patch(input, &self.rules(&numbers, &channels, now))?;
        if let Some(scopes) = &patch.scopes {
            within_ceiling(scopes, ceiling)?;
        }
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
        ceiling: Option<&[String]>,
    ) -> Result<KeyRecord, ApiError> {
        let current = org.find_key(id).await?.ok_or(ApiError::NotFound)?;
        within_ceiling(&current.settings.scopes, ceiling)?;
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
        ceiling: Option<&[String]>,
    ) -> Result<CreatedKey, ApiError> {
        if !(0..=MAX_GRACE_SECONDS).contains(&grace_seconds) {
            return Err(ApiError::field(
                "grace_seconds",
                "Grace period must be an integer between 0 and 604800 seconds",
            ));
        }
        let old = org.find_key(id).await?.ok_or(ApiError::NotFound)?;
        within_ceiling(&old.settings.scopes, ceiling)?;
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

/// A key managing keys may only create, edit, roll or revoke keys within the scopes it holds:
/// otherwise a leaked `keys:write` key could mint itself a `*` key.
fn within_ceiling(scopes: &[String], ceiling: Option<&[String]>) -> Result<(), ApiError> {
    let Some(ceiling) = ceiling else { return Ok(()) };
    match scopes.iter().find(|scope| !ceiling.contains(scope)) {
        None => Ok(()),
        Some(scope) => Err(ApiError::code(
            Code::Forbidden,
            format!("An API key cannot manage keys with scopes it does not hold itself ({scope})"),
        )),
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

/// How long a console session lasts.
pub const SESSION_TTL: time::Duration = time::Duration::hours(12);

/// A fresh login: the cookie token and CSRF token are shown this once; only hashes are stored.
// No Debug: it holds secrets that must never reach a log line.
pub struct NewSession {
    pub token: String,
    pub csrf_token: String,
    pub max_age_seconds: i64,
    pub member: MemberRecord,
    pub org: OrgRecord,
}

#[derive(Debug)]
pub enum LoginError {
    Throttled { retry_after_seconds: u64 },
    Api(ApiError),
}

impl From<ApiError> for LoginError {
    fn from(error: ApiError) -> Self {
        Self::Api(error)
    }
}

impl From<keyward_store::StoreError> for LoginError {
    fn from(error: keyward_store::StoreError) -> Self {
        Self::Api(error.into())
    }
}

/// Password hashing runs on at most this many blocking threads at once. Each argon2id hash takes
/// tens of milliseconds and 19 MiB: a burst of logins waits its turn here instead of filling the
/// blocking pool the database shares, or the memory.
static PASSWORD_WORK: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(PASSWORD_WORKERS);
const PASSWORD_WORKERS: usize = 2;

async fn password_work<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    let _permit = PASSWORD_WORK.acquire().await.map_err(|e| ApiError::Internal(e.into()))?;
    // argon2id takes tens of milliseconds of CPU: keep it off the async workers.
    tokio::task::spawn_blocking(work).await.map_err(|e| ApiError::Internal(e.into()))
}

async fn hash_password(password: String) -> Result<String, ApiError> {
    password_work(move || keyward_core::password::hash(&password, &mut rand::rngs::OsRng)).await
}

async fn verify_password(password: String, stored: String) -> Result<bool, ApiError> {
    password_work(move || keyward_core::password::verify(&password, &stored)).await
}

impl Keyward {
    pub async fn add_member(
        &self,
        org: &dyn OrgStore,
        actor: &Actor,
        meta: &RequestMeta,
        email: &str,
        password: &str,
        role: &str,
    ) -> Result<MemberRecord, ApiError> {
        let mut errors = Vec::new();
        let email = keyward_core::password::normalize_email(email);
        if email.is_none() {
            errors.push(validate::FieldError::new("email", "Not a valid email address"));
        }
        if let Err(message) = keyward_core::password::check_strength(password) {
            errors.push(validate::FieldError::new("password", message));
        }
        let role = Role::parse(role);
        if role.is_none() {
            errors.push(validate::FieldError::new("role", "Role must be owner, admin, user or readonly"));
        }
        let (Some(email), Some(role), true) = (email, role, errors.is_empty()) else {
            return Err(ApiError::Validation(errors));
        };
        let password_hash = hash_password(password.to_owned()).await?;
        let member = MemberRecord {
            id: MemberId::generate(&mut rand::thread_rng()),
            org_id: org.org_id().clone(),
            email,
            password_hash,
            role,
            created_at: self.clock.now(),
        };
        let event = audit_event(
            actor,
            meta,
            member.created_at,
            "member.added",
            ("member", member.id.as_str(), &member.email),
            json!({ "email": member.email, "role": member.role.as_str() }),
        );
        org.add_member(&member, &event).await?;
        Ok(member)
    }

    pub async fn remove_member(
        &self,
        org: &dyn OrgStore,
        actor: &Actor,
        meta: &RequestMeta,
        id: &MemberId,
    ) -> Result<(), ApiError> {
        let member = org.find_member(id).await?.ok_or(ApiError::NotFound)?;
        let event = audit_event(
            actor,
            meta,
            self.clock.now(),
            "member.removed",
            ("member", member.id.as_str(), &member.email),
            json!({ "email": member.email, "role": member.role.as_str() }),
        );
        org.remove_member(id, &event).await?;
        Ok(())
    }

    /// Checks the password (as slowly for an unknown email as for a known one), throttles
    /// repeated failures, and opens a session with its `member.login` event.
    pub async fn login(&self, email: &str, password: &str, meta: &RequestMeta) -> Result<NewSession, LoginError> {
        let now = self.clock.now();
        let email = keyward_core::password::normalize_email(email).unwrap_or_else(|| email.trim().to_lowercase());
        let ip = meta.client_ip.map(|ip| ip.to_string());
        if let Err(retry_after_seconds) = self.login_throttle.begin(&email, ip.as_deref(), now) {
            return Err(LoginError::Throttled { retry_after_seconds });
        }
        let checking = std::time::Instant::now();
        let member = self.store.find_member_by_email(&email).await?;
        let stored = member.as_ref().map_or(keyward_core::password::DUMMY_HASH, |m| m.password_hash.as_str());
        let matches = verify_password(password.to_owned(), stored.to_owned()).await?;
        let known_account = member.is_some();
        let member = match member {
            Some(member) if matches => member,
            other => {
                if let Some(member) = other {
                    // An attempt *on* the account, by someone unauthenticated: the member did nothing.
                    let event = audit_event(
                        &Actor::anonymous(),
                        meta,
                        now,
                        "member.login_failed",
                        ("member", member.id.as_str(), &member.email),
                        json!({ "reason": "wrong password" }),
                    );
                    self.store.org(&member.org_id).record_event(&event).await?;
                }
                self.login_throttle.even_out_failure(known_account, checking).await;
                return Err(ApiError::code(Code::InvalidCredentials, "The email or password is not correct").into());
            }
        };
        self.login_throttle.succeeded(&email, ip.as_deref(), now);
        let org = self.store.find_org(&member.org_id).await?.ok_or(ApiError::NotFound)?;
        let mut rng = rand::rngs::OsRng;
        let token = keyward_core::base62::random_string(&mut rng, 43);
        let keyring = self.verifier.keyring();
        let pepper = keyring.current_pepper();
        let csrf_token = crate::master_key::csrf_token(pepper, &token);
        let session = SessionRecord {
            token_hash: pepper.hash(&token),
            csrf_hash: pepper.hash(&csrf_token),
            member_id: member.id.clone(),
            org_id: member.org_id.clone(),
            created_at: now,
            expires_at: now + SESSION_TTL,
        };
        let event = audit_event(
            &member_actor(&member),
            meta,
            now,
            "member.login",
            ("member", member.id.as_str(), &member.email),
            json!({}),
        );
        self.store.insert_session(&session, &event).await?;
        if let Err(error) = self.store.delete_expired_sessions(now).await {
            tracing::warn!(%error, "could not remove expired sessions");
        }
        Ok(NewSession { token, csrf_token, max_age_seconds: SESSION_TTL.whole_seconds(), member, org })
    }

    pub async fn logout(
        &self,
        principal: &crate::auth::Principal,
        session: &keyward_core::key::KeyHash,
        meta: &RequestMeta,
    ) -> Result<(), ApiError> {
        self.store.delete_session(session).await?;
        if let crate::auth::Principal::Member { id, org_id, email, .. } = principal {
            let event = audit_event(
                &principal.actor(),
                meta,
                self.clock.now(),
                "member.logout",
                ("member", id.as_str(), email),
                json!({}),
            );
            self.store.org(org_id).record_event(&event).await?;
        }
        Ok(())
    }
}

fn member_actor(member: &MemberRecord) -> Actor {
    Actor { kind: keyward_core::record::ActorKind::Member, id: member.id.to_string(), name: member.email.clone() }
}
