//! `keyward member add`.

use std::io::BufRead as _;

use keyward_core::ids::OrgId;
use keyward_core::record::Actor;
use keyward_server::api::members::MemberView;
use keyward_server::auth::RequestMeta;

use crate::boot::{self, GlobalArgs, UsageError};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add a member to an org. The password is read from `KEYWARD_MEMBER_PASSWORD` or standard input.
    Add {
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = ["owner", "admin", "user", "readonly"])]
        role: String,
    },
}

pub async fn run(global: &GlobalArgs, command: Command) -> anyhow::Result<()> {
    let Command::Add { org, email, role } = command;
    let org_id = OrgId::parse(&org).map_err(|_| UsageError(format!("--org: {org:?} is not an org id (org_…)")))?;
    let password = if let Ok(password) = std::env::var("KEYWARD_MEMBER_PASSWORD") {
        password
    } else {
        eprintln!("password (one line on standard input):");
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    let keyward = boot::keyward(global, false).await?;
    if keyward.store.find_org(&org_id).await?.is_none() {
        anyhow::bail!("no organization {org_id}");
    }
    let store = keyward.store.org(&org_id);
    let member = keyward
        .add_member(store.as_ref(), &Actor::operator(), &RequestMeta::local(), &email, &password, &role)
        .await
        .map_err(super::keys::api_error)?;
    println!("{}", serde_json::to_string_pretty(&MemberView::from_record(&member))?);
    Ok(())
}
