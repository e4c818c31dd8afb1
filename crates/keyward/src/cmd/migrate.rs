//! `keyward migrate`.

use crate::boot::{self, GlobalArgs};

pub async fn run(global: &GlobalArgs) -> anyhow::Result<()> {
    boot::load_config(global)?;
    boot::open_store(global).await?;
    eprintln!("keyward: database {} is up to date", boot::redacted_url(&global.database_url));
    Ok(())
}
