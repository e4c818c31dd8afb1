//! `keyward audit verify`: walks every org's hash chain and reports the first broken link.

use crate::boot::{self, GlobalArgs};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check every org's audit chain, and the operator's (master-key rotations); exit 1 at the
    /// first broken link.
    Verify,
}

pub async fn run(global: &GlobalArgs, command: Command) -> anyhow::Result<()> {
    let Command::Verify = command;
    boot::load_config(global)?;
    let (store, _) = boot::open_store(global).await?;
    let mut checked = 0;
    for org in store.list_orgs().await? {
        let chain = store.org(&org.id).audit_chain().await?;
        match keyward_store::verify_chain(&chain) {
            Ok(count) => checked += count,
            Err(broken) => anyhow::bail!("org {}: {broken}", org.id),
        }
    }
    let operator = store.operator_audit().await?;
    let operator = keyward_store::keyring::verify_operator_chain(&operator)
        .map_err(|broken| anyhow::anyhow!("operator log: {broken}"))?;
    if operator == 0 {
        println!("audit log intact: {checked} events checked");
    } else {
        println!("audit log intact: {checked} events checked, and {operator} operator events");
    }
    Ok(())
}
