//! HTTP hooks (tusd's `--hooks-http`): every event is a POST of the
//! [`HookRequest`] JSON to one endpoint; the answer must be 2xx with
//! `Content-Type: application/json` and a [`HookResponse`] body.
//!
//! One `reqwest::Client` serves every call, so connections to the receiver
//! are kept alive and reused. An `https://` endpoint is verified against the
//! system's CA certificates (rustls; loaded once, when the hook is built),
//! unless `skip_verify`. A call is retried `retries` times, waiting
//! `backoff` before each retry (tusd's linear backoff), when the receiver
//! could not be reached, timed out, or answered 5xx; any other failure
//! (4xx, wrong content type, bad JSON, too large) is final.

use std::time::Duration;

use async_trait::async_trait;
use http::header::CONTENT_TYPE;

use crate::wire::{HookRequest, HookResponse};
use crate::{HookError, HookHandler};

/// Settings of an [`HttpHook`], with tusd's defaults.
#[derive(Clone, Debug)]
pub struct HttpHookOptions {
    pub endpoint: String,
    /// Retries after the first attempt (tusd: 3).
    pub retries: u32,
    /// Wait before each retry (tusd: 1 s).
    pub backoff: Duration,
    /// Request headers copied from the client's request onto the hook's
    /// request, looked up case-insensitively.
    pub forward_headers: Vec<String>,
    /// Timeout of one attempt (tusd: 15 s).
    pub timeout: Duration,
    /// Largest answer body accepted, in bytes (tusd: 5 KiB).
    pub size_limit: usize,
    /// Accept any certificate from an `https://` endpoint (tusd's
    /// `--hooks-http-skip-verify`): for a receiver with a self-signed
    /// certificate on a trusted network only, since anyone on the path can
    /// then answer in its place.
    pub skip_verify: bool,
}

impl HttpHookOptions {
    pub fn new(endpoint: impl Into<String>) -> HttpHookOptions {
        HttpHookOptions {
            endpoint: endpoint.into(),
            retries: 3,
            backoff: Duration::from_secs(1),
            forward_headers: Vec::new(),
            timeout: Duration::from_secs(15),
            size_limit: 5 * 1024,
            skip_verify: false,
        }
    }
}

/// Calls an HTTP hook receiver.
pub struct HttpHook {
    options: HttpHookOptions,
    client: reqwest::Client,
}

/// One attempt's failure, and whether another attempt may help.
struct Failure {
    retry: bool,
    error: HookError,
}

impl HttpHook {
    pub fn new(options: HttpHookOptions) -> Result<HttpHook, HookError> {
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .danger_accept_invalid_certs(options.skip_verify);
        if options.endpoint.starts_with("https://") && !options.skip_verify {
            for root in system_roots()? {
                builder = builder.add_root_certificate(root);
            }
        }
        let client = builder
            .build()
            .map_err(|e| HookError(format!("building the hook HTTP client: {e}")))?;
        Ok(HttpHook { options, client })
    }

    async fn attempt(&self, request: &HookRequest, body: &[u8]) -> Result<HookResponse, Failure> {
        let mut call = self
            .client
            .post(&self.options.endpoint)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        let headers = &request.event.http_request.header;
        for name in &self.options.forward_headers {
            let canonical = crate::wire::canonical_header_key(name);
            for value in headers.get(&canonical).into_iter().flatten() {
                call = call.header(name.as_str(), value.as_str());
            }
        }
        let response = call.send().await.map_err(|e| Failure {
            retry: true,
            error: HookError(format!("hook endpoint unreachable: {e}")),
        })?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await.map_err(|e| Failure {
            retry: true,
            error: HookError(format!("reading the hook response: {e}")),
        })?;
        let fail = |retry, message: String| Failure {
            retry,
            error: HookError(message),
        };
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(self.options.size_limit)]);
            return Err(fail(
                status.is_server_error(),
                format!(
                    "unexpected response code from hook endpoint ({}): {text}",
                    status.as_u16()
                ),
            ));
        }
        if bytes.len() > self.options.size_limit {
            return Err(fail(
                false,
                format!(
                    "hook response exceeded maximum size of {} bytes",
                    self.options.size_limit
                ),
            ));
        }
        let media = content_type.as_deref().map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
        match media.as_deref() {
            None => {
                return Err(fail(
                    false,
                    "hook response does not contain the 'Content-Type: application/json' header"
                        .into(),
                ))
            }
            Some("application/json") => {}
            Some(_) => {
                return Err(fail(
                    false,
                    format!(
                        "expected hook response Content-Type to be application/json, but got '{}'",
                        content_type.unwrap_or_default()
                    ),
                ))
            }
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| fail(false, format!("failed to parse hook response: {e}")))
    }
}

/// The system's CA certificates. Some stores hold certificates rustls
/// cannot parse; those are skipped, as reqwest's own loader does, but a
/// store with none usable is an error: no https:// endpoint could be
/// trusted.
fn system_roots() -> Result<Vec<reqwest::Certificate>, HookError> {
    let loaded = rustls_native_certs::load_native_certs();
    let roots: Vec<_> = loaded
        .certs
        .iter()
        .filter_map(|der| reqwest::Certificate::from_der(der).ok())
        .collect();
    if roots.is_empty() {
        let errors: Vec<_> = loaded.errors.iter().map(ToString::to_string).collect();
        return Err(HookError(format!(
            "no usable CA certificate in the system's store for an https:// hook endpoint ({})",
            errors.join("; ")
        )));
    }
    Ok(roots)
}

#[async_trait]
impl HookHandler for HttpHook {
    fn kind(&self) -> &'static str {
        "http"
    }

    async fn invoke(&self, request: &HookRequest) -> Result<HookResponse, HookError> {
        let body = serde_json::to_vec(request)
            .map_err(|e| HookError(format!("encoding the hook request: {e}")))?;
        let mut retries_left = self.options.retries;
        loop {
            match self.attempt(request, &body).await {
                Ok(response) => return Ok(response),
                Err(Failure { retry, error }) if retry && retries_left > 0 => {
                    tracing::warn!(hook = %request.kind, %error, retries_left, "hook call failed; retrying");
                    retries_left -= 1;
                    tokio::time::sleep(self.options.backoff).await;
                }
                Err(Failure { error, .. }) => return Err(error),
            }
        }
    }
}
