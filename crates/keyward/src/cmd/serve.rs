//! `keyward serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use keyward_server::config::TlsFiles;
use keyward_server::tls::Tls;

use crate::boot::{self, GlobalArgs, UsageError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "KEYWARD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// TLS certificate chain (PEM): serve HTTPS. Overrides the config file's `tls_cert`.
    #[arg(long, env = "KEYWARD_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM), with --tls-cert. Overrides the config file's `tls_key`.
    #[arg(long, env = "KEYWARD_TLS_KEY")]
    tls_key: Option<PathBuf>,
}

pub async fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<()> {
    let listen: SocketAddr = args.listen.parse().map_err(|_| {
        UsageError(format!("--listen / KEYWARD_LISTEN: {:?} is not an address such as 127.0.0.1:8080", args.listen))
    })?;
    let mut config = boot::load_config(global)?;
    // The flags (or their environment variables) replace the file's pair, and are a pair too.
    if args.tls_cert.is_some() || args.tls_key.is_some() {
        config.tls = TlsFiles::pair(args.tls_cert, args.tls_key)
            .map_err(|e| UsageError(format!("--tls-cert / --tls-key (KEYWARD_TLS_CERT / KEYWARD_TLS_KEY): {e}")))?;
    }
    // Before anything is opened: a certificate that cannot be served stops the start.
    let tls = match &config.tls {
        Some(files) => Some(Arc::new(Tls::load(files).map_err(|e| UsageError(e.to_string()))?)),
        None => None,
    };
    let keyward = boot::keyward_with(global, config, true).await?;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    if tls.is_none() && !listen.ip().is_loopback() && keyward.config.trusted_proxies.is_empty() {
        tracing::warn!(
            address = %listen,
            "serving plain HTTP beyond loopback: set tls_cert and tls_key, or list the TLS proxy in front in trusted_proxies"
        );
    }
    // Registered before the start is announced, so a SIGHUP sent from then on reloads.
    #[cfg(unix)]
    let hangup =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    #[cfg(unix)]
    tokio::spawn(reload_on_hangup(hangup, tls.clone()));
    #[cfg(unix)]
    tokio::spawn(reload_keyring_on_hangup(
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("cannot listen for SIGHUP")?,
        keyward.clone(),
    ));
    let gateway = match keyward.config.gateway.clone() {
        Some(config) => {
            let address = config.listen;
            let gateway_listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on the gateway address {address}"))?;
            if tls.is_none() && !address.ip().is_loopback() && keyward.config.trusted_proxies.is_empty() {
                tracing::warn!(
                    gateway_address = %address,
                    "the gateway serves plain HTTP beyond loopback: set tls_cert and tls_key, or list the TLS proxy in front in trusted_proxies"
                );
            }
            tracing::info!(
                gateway_address = %gateway_listener.local_addr()?,
                https = tls.is_some(),
                upstream = %config.upstream.authority,
                routes = config.routes.len(),
                "keyward gateway is serving"
            );
            let gateway = keyward_server::gateway::proxy::Gateway::new(keyward.clone(), config);
            Some((gateway_listener, gateway))
        }
        None => None,
    };
    tracing::info!(
        address = %listener.local_addr()?,
        https = tls.is_some(),
        database = %boot::redacted_url(&global.database_url),
        "keyward is serving"
    );
    // Both listeners drain on the same signal, and the process exits once both have finished.
    keyward_server::serve_with_gateway(listener, keyward, tls, gateway, shutdown_signal()).await?;
    tracing::info!("stopped; pending last-used times were flushed");
    Ok(())
}

/// SIGHUP: read `tls_cert` and `tls_key` again. New connections get the new certificate; files
/// that cannot be served leave the current one in place.
#[cfg(unix)]
async fn reload_on_hangup(mut hangup: tokio::signal::unix::Signal, tls: Option<Arc<Tls>>) {
    while hangup.recv().await.is_some() {
        match &tls {
            None => tracing::info!("SIGHUP: no TLS certificate to reload"),
            Some(tls) => match tls.reload() {
                Ok(()) => tracing::info!(
                    cert = %tls.files().cert.display(),
                    "SIGHUP: TLS certificate reloaded; new connections get it"
                ),
                Err(error) => {
                    tracing::error!(%error, "SIGHUP: TLS certificate not reloaded; still serving the previous one");
                }
            },
        }
    }
}

/// SIGHUP: read the master keyring again (a key added ahead of a rotation). The database's
/// versions are followed anyway, every second.
#[cfg(unix)]
async fn reload_keyring_on_hangup(mut hangup: tokio::signal::unix::Signal, keyward: Arc<keyward_server::Keyward>) {
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP: reading the master keyring again");
        keyward.master_keys.request_reload();
    }
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
