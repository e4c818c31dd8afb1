//! `keyward keys create|list|revoke`: the same operations as the API, acting as the operator.

use keyward_core::ids::{KeyId, OrgId};
use keyward_core::record::Actor;
use keyward_core::validate::NewKeyInput;
use keyward_server::api::keys::{CreatedKeyResponse, KeyView};
use keyward_server::api::ListResponse;
use keyward_server::auth::RequestMeta;
use keyward_server::problem::ApiError;
use keyward_store::{KeyFilter, StatusFilter};
use serde_json::{json, Value};

use crate::boot::{self, GlobalArgs, UsageError};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a key; prints it with its secret (shown once) as JSON.
    Create(CreateArgs),
    /// List an org's keys, newest first, as JSON.
    List {
        #[arg(long)]
        org: String,
        /// active, revoked or expired.
        #[arg(long, value_parser = ["active", "revoked", "expired"])]
        status: Option<String>,
        /// How many (1–100).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: u32,
    },
    /// Revoke a key (immediate and irreversible).
    Revoke {
        #[arg(long)]
        org: String,
        /// The key's id (key_…).
        id: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[arg(long)]
    org: String,
    /// A label to recognize the key (1–64 characters).
    #[arg(long)]
    name: String,
    /// A scope to grant; repeat for several (default: messages:send).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Require an HMAC signature on every request (a signing secret is generated).
    #[arg(long)]
    hmac: bool,
    /// Requests per second (1–1000; default: the platform default).
    #[arg(long)]
    rate_limit: Option<u32>,
    /// RFC 3339 expiry, e.g. 2030-01-31T12:00:00Z.
    #[arg(long)]
    expires_at: Option<String>,
    /// An allowed client IP or CIDR; repeat for several.
    #[arg(long = "ip")]
    ips: Vec<String>,
    /// An allowed sender phone number (registered in the org); repeat for several.
    #[arg(long = "phone")]
    phones: Vec<String>,
    /// A channel slug the key is limited to; repeat for several (default: all).
    #[arg(long = "channel")]
    channels: Vec<String>,
    /// live or test.
    #[arg(long, default_value = "live", value_parser = ["live", "test"])]
    environment: String,
}

pub async fn run(global: &GlobalArgs, command: Command) -> anyhow::Result<()> {
    let keyward = boot::keyward(global, false).await?;
    let actor = Actor::operator();
    let meta = RequestMeta::local();
    let org_id =
        |text: &str| OrgId::parse(text).map_err(|_| UsageError(format!("--org: {text:?} is not an org id (org_…)")));
    let output = match command {
        Command::Create(args) => {
            let org_id = org_id(&args.org)?;
            require_org(&keyward, &org_id).await?;
            let store = keyward.store.org(&org_id);
            let input = NewKeyInput {
                name: Some(args.name.into()),
                scopes: (!args.scopes.is_empty()).then(|| json!(args.scopes)),
                hmac_required: Some(args.hmac.into()),
                rate_limit: args.rate_limit.map(Value::from),
                expires_at: args.expires_at.map(Value::from),
                ip_allowlist: Some(json!(args.ips)),
                phone_allowlist: Some(json!(args.phones)),
                channels: (!args.channels.is_empty()).then(|| json!(args.channels)),
                environment: Some(args.environment.into()),
                external_id: None,
                meta: None,
            };
            let created = keyward.create_key(store.as_ref(), &actor, &meta, &input, None).await.map_err(api_error)?;
            serde_json::to_string_pretty(&CreatedKeyResponse::new(&created, keyward.clock.now()))?
        }
        Command::List { org, status, limit } => {
            let org_id = org_id(&org)?;
            require_org(&keyward, &org_id).await?;
            let status = status.as_deref().map(|s| match s {
                "revoked" => StatusFilter::Revoked,
                "expired" => StatusFilter::Expired,
                _ => StatusFilter::Active,
            });
            let now = keyward.clock.now();
            let filter = KeyFilter { status, created_by: None, search: None, now };
            let page = keyward_store::Page { limit, cursor: None };
            let paged = keyward.store.org(&org_id).list_keys(&filter, page).await?;
            serde_json::to_string_pretty(&ListResponse::from_paged(paged, |k| KeyView::from_record(&k, now)))?
        }
        Command::Revoke { org, id } => {
            let org_id = org_id(&org)?;
            let key_id = KeyId::parse(&id).map_err(|_| UsageError(format!("{id:?} is not a key id (key_…)")))?;
            require_org(&keyward, &org_id).await?;
            let store = keyward.store.org(&org_id);
            let key = keyward.revoke_key(store.as_ref(), &actor, &meta, &key_id, None).await.map_err(api_error)?;
            serde_json::to_string_pretty(&json!({ "key": KeyView::from_record(&key, keyward.clock.now()) }))?
        }
    };
    println!("{output}");
    Ok(())
}

async fn require_org(keyward: &keyward_server::Keyward, org: &OrgId) -> anyhow::Result<()> {
    if keyward.store.find_org(org).await?.is_none() {
        anyhow::bail!("no organization {org}");
    }
    Ok(())
}

/// Renders an API error for the terminal: validation problems name each field.
pub fn api_error(error: ApiError) -> anyhow::Error {
    match error {
        ApiError::Validation(errors) => {
            let fields: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
            UsageError(fields.join("; ")).into()
        }
        ApiError::NotFound => anyhow::anyhow!("not found"),
        other => anyhow::anyhow!("{}", other.detail()),
    }
}
