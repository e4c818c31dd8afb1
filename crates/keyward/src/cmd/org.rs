//! `keyward org create`.

use keyward_server::api::orgs::OrgView;

use crate::boot::{self, GlobalArgs};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create an organization; prints it as JSON.
    Create {
        /// The organization's display name.
        #[arg(long)]
        name: String,
    },
}

pub async fn run(global: &GlobalArgs, command: Command) -> anyhow::Result<()> {
    let keyward = boot::keyward(global, false).await?;
    match command {
        Command::Create { name } => {
            let org = keyward.create_org(&name).await.map_err(super::keys::api_error)?;
            println!("{}", serde_json::to_string_pretty(&OrgView::from_record(&org))?);
        }
    }
    Ok(())
}
