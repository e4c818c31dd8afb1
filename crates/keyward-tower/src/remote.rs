//! Remote mode: `POST /v1/verify` on a keyward server, over hyper's pooled HTTP/1 client, in
//! plain HTTP or over TLS (rustls with aws-lc-rs; the server's certificate checked against the
//! system's roots and any CA given to [`RemoteBuilder`]). Anything but a readable answer from
//! keyward is a 503 for the caller: the layer never lets a request through on a guess.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use keyward_core::Code;
use keyward_server::answer::Refusal;
use serde::{Deserialize, Serialize};
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::key::{RateLimit, RemoteFacts};
use crate::{Error, KeywardLayer, VerifiedKey};

/// The largest answer read from keyward: a decision is a few hundred bytes (more with `meta`).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A pooled client of one keyward server.
pub(crate) struct Remote {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    verify_uri: Uri,
    /// `Bearer <operator token>`, marked sensitive.
    authorization: HeaderValue,
    answer_timeout: Duration,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The operator token is never shown.
        f.debug_struct("Remote")
            .field("verify_uri", &self.verify_uri)
            .field("answer_timeout", &self.answer_timeout)
            .finish_non_exhaustive()
    }
}

/// The settings of a remote layer: start one with [`KeywardLayer::remote_builder`], finish it
/// with [`RemoteBuilder::build`]. Nothing is checked or read before `build`.
pub struct RemoteBuilder {
    base_url: String,
    operator_token: String,
    connect_timeout: Duration,
    answer_timeout: Duration,
    native_roots: bool,
    root_certificates: Vec<Vec<u8>>,
}

impl fmt::Debug for RemoteBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The operator token is never shown.
        f.debug_struct("RemoteBuilder")
            .field("base_url", &self.base_url)
            .field("connect_timeout", &self.connect_timeout)
            .field("answer_timeout", &self.answer_timeout)
            .field("native_roots", &self.native_roots)
            .field("root_certificates", &self.root_certificates.len())
            .finish_non_exhaustive()
    }
}

impl RemoteBuilder {
    pub(crate) fn new(base_url: &str, operator_token: &str) -> Self {
        Self {
            base_url: base_url.to_owned(),
            operator_token: operator_token.to_owned(),
            connect_timeout: Duration::from_secs(1),
            answer_timeout: Duration::from_secs(2),
            native_roots: true,
            root_certificates: Vec::new(),
        }
    }

    /// How long a connection to keyward may take (TLS handshake included; 1 s by default), and
    /// a whole verification (2 s). Past either, the caller gets 503.
    #[must_use]
    pub fn timeouts(mut self, connect: Duration, answer: Duration) -> Self {
        self.connect_timeout = connect;
        self.answer_timeout = answer;
        self
    }

    /// Also trusts the CA certificates in `pem` (one or more `CERTIFICATE` blocks) to sign
    /// keyward's certificate: a private CA, or the certificate itself when it is self-signed.
    /// Call again for more. Only for `https://`.
    #[must_use]
    pub fn add_root_certificate(mut self, pem: impl AsRef<[u8]>) -> Self {
        self.root_certificates.push(pem.as_ref().to_vec());
        self
    }

    /// Whether the system's trusted roots are trusted too (by default they are). Off, only the
    /// CAs given with [`RemoteBuilder::add_root_certificate`] are.
    #[must_use]
    pub fn native_roots(mut self, trusted: bool) -> Self {
        self.native_roots = trusted;
        self
    }

    /// Checks the URL and the token, reads the trusted roots (for `https://`) and makes the
    /// pooled client. No connection is opened until the first request.
    pub fn build(self) -> Result<KeywardLayer, Error> {
        Ok(KeywardLayer::from_remote(self.remote()?))
    }

    fn remote(self) -> Result<Remote, Error> {
        let base = self.base_url.trim_end_matches('/');
        let verify_uri: Uri = format!("{base}/v1/verify").parse().map_err(|_| {
            Error::Config(format!("{:?} is not a URL: use http://host:port or https://host", self.base_url))
        })?;
        let https = match verify_uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(Error::Config(format!("{:?} is not an http:// or https:// URL", self.base_url))),
        };
        if !https && !self.root_certificates.is_empty() {
            return Err(Error::Config(format!(
                "root certificates are given but {:?} is plain http://: use https://",
                self.base_url
            )));
        }
        let token = self.operator_token.trim();
        if token.is_empty() {
            return Err(Error::Config("the operator token is empty".to_owned()));
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| Error::Config("the operator token holds characters a header cannot carry".to_owned()))?;
        authorization.set_sensitive(true);
        // Plain HTTP gets a config with no roots, never used: the connector is told http:// only.
        let tls = if https { self.tls_config()? } else { tls_config(RootCertStore::empty())? };
        let client = client(tls, https, self.connect_timeout);
        Ok(Remote { client, verify_uri, authorization, answer_timeout: self.answer_timeout })
    }

    /// The roots keyward's certificate is checked against (its name must also match the URL's
    /// host), in a TLS client config.
    fn tls_config(&self) -> Result<ClientConfig, Error> {
        let mut roots = RootCertStore::empty();
        if self.native_roots {
            // Unreadable system certificates are skipped: the store may hold what is needed.
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
        for pem in &self.root_certificates {
            let mut found = false;
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| Error::Config(format!("a root certificate is not PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| Error::Config(format!("a root certificate cannot be used as a CA: {e}")))?;
                found = true;
            }
            if !found {
                return Err(Error::Config("a root certificate holds no CERTIFICATE block".to_owned()));
            }
        }
        if roots.is_empty() {
            return Err(Error::Config(
                "https:// needs a trusted root: none in the system's store; give keyward's CA with add_root_certificate"
                    .to_owned(),
            ));
        }
        tls_config(roots)
    }
}

/// TLS 1.2 and 1.3 with aws-lc-rs (named, as keyward's listener does: another crate in the same
/// build may enable a second provider, and rustls then picks none), trusting `roots`.
fn tls_config(roots: RootCertStore) -> Result<ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS cannot start: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The question, borrowing from the request.
#[derive(Serialize)]
struct Question<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    scope: &'a [Cow<'static, str>],
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ip: Option<IpAddr>,
}

/// `/v1/verify`'s 200 answer: the valid shape and the refused shape in one (SPEC §5).
#[derive(Deserialize)]
struct Answer {
    valid: bool,
    code: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    retry_after_ms: Option<u64>,
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    org_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    channels: Option<ChannelsIn>,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    rate_limit: Option<RateIn>,
}

/// `"all"` or a list of slugs.
#[derive(Deserialize)]
#[serde(untagged)]
enum ChannelsIn {
    All(String),
    Only(Vec<String>),
}

#[derive(Deserialize)]
struct RateIn {
    limit: u32,
    remaining: u32,
    reset_ms: u64,
}

/// A problem+json error of keyward's.
#[derive(Deserialize)]
struct Problem {
    code: String,
    #[serde(default)]
    detail: String,
}

impl Remote {
    pub(crate) async fn verify(
        &self,
        key: &str,
        scopes: &[Cow<'static, str>],
        client_ip: Option<IpAddr>,
    ) -> Result<VerifiedKey, Refusal> {
        let body = serde_json::to_vec(&Question { key, scope: scopes, client_ip }).map_err(|_| unreachable())?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.verify_uri.clone())
            .header(header::AUTHORIZATION, self.authorization.clone())
            .header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| unreachable())?;
        let (status, bytes) = match tokio::time::timeout(self.answer_timeout, self.ask(request)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => {
                // The causes say why (refused, reset, the certificate's issuer unknown…).
                let error = crate::chain(error.as_ref());
                tracing::warn!(uri = %self.verify_uri, %error, "keyward did not answer a verification");
                return Err(unreachable());
            }
            Err(_) => {
                tracing::warn!(uri = %self.verify_uri, timeout = ?self.answer_timeout, "keyward did not answer a verification in time");
                return Err(unreachable());
            }
        };
        match status {
            StatusCode::OK => decide(&bytes, key),
            StatusCode::UNAUTHORIZED => {
                // Not the caller's fault: this service holds a wrong operator token.
                tracing::error!(uri = %self.verify_uri, "keyward refused this service's operator token");
                Err(unreachable())
            }
            status if status.is_client_error() => Err(passed_on(&bytes)),
            status => {
                tracing::warn!(uri = %self.verify_uri, %status, "keyward could not verify");
                Err(unreachable())
            }
        }
    }

    async fn ask(&self, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), BoxError> {
        let response = self.client.request(request).await?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES).collect().await?;
        Ok((status, body.to_bytes()))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The pooled client: https:// only over TLS with `tls`, else http:// only.
fn client(
    tls: ClientConfig,
    https: bool,
    connect_timeout: Duration,
) -> Client<HttpsConnector<HttpConnector>, Full<Bytes>> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    // The TLS connector wraps this one, which must pass https:// URLs on to it.
    http.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
    let connector = if https {
        builder.https_only().enable_http1().wrap_connector(http)
    } else {
        // https_or_http lets http:// through in plain; the URL, checked at build, is never https://.
        builder.https_or_http().enable_http1().wrap_connector(http)
    };
    Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector)
}

/// keyward could not be asked, or its answer could not be read: fail closed.
fn unreachable() -> Refusal {
    Refusal::unavailable()
}

/// A 200 answer: the valid key's facts, or the refusal keyward decided.
fn decide(bytes: &[u8], key: &str) -> Result<VerifiedKey, Refusal> {
    let Ok(answer) = serde_json::from_slice::<Answer>(bytes) else {
        tracing::warn!("keyward's verification answer could not be read");
        return Err(unreachable());
    };
    if !answer.valid {
        let code = known_code(&answer.code);
        return Err(Refusal {
            code,
            message: answer.message.unwrap_or_else(|| code.title().to_owned()),
            retry_after_ms: answer.retry_after_ms,
            rate: None,
        });
    }
    let (Some(key_id), Some(org_id), Some(rate)) = (answer.key_id, answer.org_id, answer.rate_limit) else {
        tracing::warn!("keyward's valid answer lacks the key's id, org or rate limit");
        return Err(unreachable());
    };
    let channels = match answer.channels {
        None => None,
        Some(ChannelsIn::All(text)) if text == "all" => None,
        Some(ChannelsIn::All(_)) => {
            tracing::warn!("keyward's valid answer has channels that are neither \"all\" nor a list");
            return Err(unreachable());
        }
        Some(ChannelsIn::Only(list)) => Some(list),
    };
    let facts = RemoteFacts {
        key_id,
        org_id,
        name: answer.name.unwrap_or_default(),
        scopes: answer.scopes,
        channels,
        environment: answer.environment.unwrap_or_default(),
    };
    let rate = RateLimit { limit: rate.limit, remaining: rate.remaining, reset_ms: rate.reset_ms };
    Ok(VerifiedKey::remote(facts, key, rate))
}

/// keyward's own 4xx about the request (a body it will not read, say): its code, passed on.
fn passed_on(bytes: &[u8]) -> Refusal {
    match serde_json::from_slice::<Problem>(bytes) {
        Ok(problem) => Refusal::new(known_code(&problem.code), problem.detail),
        Err(_) => unreachable(),
    }
}

/// The code of a refusal. One this build does not know (a newer keyward) still refuses, and
/// one that is not a refusal (`VALID` on a refused answer) cannot let the request through.
fn known_code(text: &str) -> Code {
    match Code::parse(text) {
        Some(code) if code.verify_status() >= 400 => code,
        Some(_) => {
            tracing::warn!(code = text, "keyward refused with a code that is not a refusal; refusing");
            Code::ServiceUnavailable
        }
        None => {
            tracing::warn!(code = text, "keyward answered a code this layer does not know; refusing");
            Code::Forbidden
        }
    }
}
