//! Remote mode: `POST /v1/verify` on a keyward server, over hyper's pooled HTTP/1 client.
//! Anything but a readable answer from keyward is a 503 for the caller: the layer never lets a
//! request through on a guess.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use keyward_core::Code;
use keyward_server::answer::Refusal;
use serde::{Deserialize, Serialize};

use crate::key::{RateLimit, RemoteFacts};
use crate::{Error, VerifiedKey};

/// The largest answer read from keyward: a decision is a few hundred bytes (more with `meta`).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A pooled client of one keyward server.
#[derive(Clone)]
pub(crate) struct Remote {
    client: Client<HttpConnector, Full<Bytes>>,
    verify_uri: Uri,
    /// `Bearer <operator token>`, marked sensitive.
    authorization: HeaderValue,
    connect_timeout: Duration,
    answer_timeout: Duration,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The operator token is never shown.
        f.debug_struct("Remote")
            .field("verify_uri", &self.verify_uri)
            .field("connect_timeout", &self.connect_timeout)
            .field("answer_timeout", &self.answer_timeout)
            .finish_non_exhaustive()
    }
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
    pub(crate) fn new(
        base_url: &str,
        operator_token: &str,
        connect_timeout: Duration,
        answer_timeout: Duration,
    ) -> Result<Self, Error> {
        let base = base_url.trim_end_matches('/');
        let verify_uri: Uri = format!("{base}/v1/verify")
            .parse()
            .map_err(|_| Error::Config(format!("{base_url:?} is not a URL: use http://host:port")))?;
        match verify_uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(Error::Config(
                    "remote mode speaks plain HTTP: reach keyward over http:// on this host or a private network"
                        .to_owned(),
                ))
            }
            _ => return Err(Error::Config(format!("{base_url:?} is not an http:// URL"))),
        }
        let token = operator_token.trim();
        if token.is_empty() {
            return Err(Error::Config("the operator token is empty".to_owned()));
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| Error::Config("the operator token holds characters a header cannot carry".to_owned()))?;
        authorization.set_sensitive(true);
        Ok(Self { client: client(connect_timeout), verify_uri, authorization, connect_timeout, answer_timeout })
    }

    pub(crate) fn with_timeouts(&self, connect: Duration, answer: Duration) -> Self {
        Self { client: client(connect), connect_timeout: connect, answer_timeout: answer, ..self.clone() }
    }

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

fn client(connect_timeout: Duration) -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
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
