//! `keyward serve`.

use std::net::SocketAddr;

use anyhow::Context as _;

use crate::boot::{self, GlobalArgs, UsageError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "KEYWARD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
}

pub async fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<()> {
    let listen: SocketAddr = args.listen.parse().map_err(|_| {
        UsageError(format!("--listen / KEYWARD_LISTEN: {:?} is not an address such as 127.0.0.1:8080", args.listen))
    })?;
    boot::load_config(global)?;
    let keyward = boot::keyward(global, true).await?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, database = %boot::redacted_url(&global.database_url), "keyward is serving");
    keyward_server::serve(listener, keyward, shutdown_signal()).await?;
    tracing::info!("stopped; pending last-used times were flushed");
    Ok(())
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
