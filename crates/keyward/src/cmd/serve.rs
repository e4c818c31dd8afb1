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
    // Both listeners stop on the same signal.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let gateway = match keyward.config.gateway.clone() {
        Some(config) => {
            let address = config.listen;
            let gateway_listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on the gateway address {address}"))?;
            tracing::info!(
                gateway_address = %gateway_listener.local_addr()?,
                upstream = %config.upstream.authority,
                routes = config.routes.len(),
                "keyward gateway is serving"
            );
            let gateway = keyward_server::gateway::proxy::Gateway::new(keyward.clone(), config);
            // The gateway keeps serving through the main listener's drain, and stops with it.
            let drain = keyward.config.shutdown_drain;
            let stop_gateway = until(stopped.clone());
            let stop_gateway = async move {
                stop_gateway.await;
                tokio::time::sleep(drain).await;
            };
            Some(tokio::spawn(keyward_server::gateway::proxy::serve(gateway_listener, gateway, stop_gateway)))
        }
        None => None,
    };
    tracing::info!(address = %listener.local_addr()?, database = %boot::redacted_url(&global.database_url), "keyward is serving");
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    keyward_server::serve(listener, keyward, until(stopped)).await?;
    if let Some(gateway) = gateway {
        gateway.await.context("the gateway task failed")?.context("the gateway failed")?;
    }
    tracing::info!("stopped; pending last-used times were flushed");
    Ok(())
}

/// Resolves once `stopped` turns true.
async fn until(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
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
