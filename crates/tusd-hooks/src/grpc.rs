//! gRPC hooks (tusd's `--hooks-grpc`): every event is one
//! `proto.HookHandler/InvokeHook` call (proto/hook.proto, tusd v2's
//! messages field for field) on one channel to the hook server, kept open
//! and reused.
//!
//! As in tusd: the request's headers go as a map with each header's first
//! value; headers named in `forward_headers` also go as gRPC metadata; a
//! call that fails with `UNAVAILABLE` or `RESOURCE_EXHAUSTED` is retried
//! `retries` times after `backoff` (tusd's retry interceptor's codes); an
//! empty `metaData` / `storage` map in `changeFileInfo` keeps the upload's
//! (protobuf cannot tell an empty map from none). tusd's gRPC protocol has
//! no `rejectTermination`, so a gRPC pre-terminate hook cannot refuse.
//!
//! With [`GrpcTls`] (tusd's `--hooks-grpc-secure`) the channel is TLS
//! (rustls): the server must present a certificate that chains to the one
//! given, and a client certificate and key make it mutual TLS, as in tusd.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::wire::{FileInfoChanges, HookRequest, HookResponse, HttpResponse};
use crate::{HookError, HookHandler};

/// The code generated from proto/hook.proto.
pub mod proto {
    tonic::include_proto!("proto");
}

use proto::hook_handler_client::HookHandlerClient;

/// Settings of a [`GrpcHook`], with tusd's defaults.
#[derive(Clone, Debug)]
pub struct GrpcHookOptions {
    /// `host:port` as tusd takes it, or a `http://` URL; with `tls`, the
    /// connection is TLS whatever the scheme given.
    pub endpoint: String,
    pub retries: u32,
    pub backoff: Duration,
    pub forward_headers: Vec<String>,
    /// TLS to the hook server; `None` is plaintext (tusd's default).
    pub tls: Option<GrpcTls>,
}

/// TLS settings of a [`GrpcHook`], PEM files as tusd takes them.
#[derive(Clone, Debug)]
pub struct GrpcTls {
    /// The certificate the server's must chain to (tusd's
    /// `--hooks-grpc-server-tls-certificate`): the server's own certificate
    /// if self-signed, or the CA that signed it. No other root is trusted.
    pub server_certificate: PathBuf,
    /// Client certificate and key for mutual TLS (tusd's
    /// `--hooks-grpc-client-tls-certificate` and `-key`): both or neither.
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl GrpcTls {
    fn client_config(&self) -> Result<ClientTlsConfig, HookError> {
        let server = read_pem(
            &self.server_certificate,
            "gRPC hook server's TLS certificate",
        )?;
        let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(server));
        match (&self.client_certificate, &self.client_key) {
            (Some(cert), Some(key)) => Ok(config.identity(Identity::from_pem(
                read_pem(cert, "gRPC hook client TLS certificate")?,
                read_pem(key, "gRPC hook client TLS key")?,
            ))),
            (None, None) => Ok(config),
            _ => Err(HookError(
                "mutual TLS needs both the client certificate and its key".into(),
            )),
        }
    }
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, HookError> {
    std::fs::read(path)
        .map_err(|e| HookError(format!("reading the {what} {}: {e}", path.display())))
}

impl GrpcHookOptions {
    pub fn new(endpoint: impl Into<String>) -> GrpcHookOptions {
        GrpcHookOptions {
            endpoint: endpoint.into(),
            retries: 3,
            backoff: Duration::from_secs(1),
            forward_headers: Vec::new(),
            tls: None,
        }
    }
}

/// Calls a tusd gRPC hook server.
pub struct GrpcHook {
    options: GrpcHookOptions,
    client: HookHandlerClient<Channel>,
}

impl GrpcHook {
    /// Connects lazily: an unreachable server fails the first call, not
    /// this. Unreadable or invalid TLS files fail here.
    pub fn new(options: GrpcHookOptions) -> Result<GrpcHook, HookError> {
        let address = match options.endpoint.split_once("://") {
            Some((_, address)) => address,
            None => options.endpoint.as_str(),
        };
        let uri = match (&options.tls, options.endpoint.starts_with("https://")) {
            (Some(_), _) => format!("https://{address}"),
            (None, false) => format!("http://{address}"),
            (None, true) => {
                return Err(HookError(
                    "an https:// endpoint needs TLS settings (--hooks-grpc-secure and --hooks-grpc-server-tls-certificate)".into(),
                ))
            }
        };
        let mut endpoint = Endpoint::from_shared(uri)
            .map_err(|e| HookError(format!("invalid gRPC hook endpoint: {e}")))?;
        if let Some(tls) = &options.tls {
            endpoint = endpoint
                .tls_config(tls.client_config()?)
                .map_err(|e| HookError(format!("gRPC hook TLS settings: {e}")))?;
        }
        let channel = endpoint.connect_lazy();
        Ok(GrpcHook {
            options,
            client: HookHandlerClient::new(channel),
        })
    }

    fn message(&self, request: &HookRequest) -> tonic::Request<proto::HookRequest> {
        let upload = &request.event.upload;
        let http = &request.event.http_request;
        let header: HashMap<String, String> = http
            .header
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.first()?.clone())))
            .collect();
        let mut message = tonic::Request::new(proto::HookRequest {
            r#type: request.kind.name().to_owned(),
            event: Some(proto::Event {
                upload: Some(proto::FileInfo {
                    id: upload.id.clone(),
                    size: upload.size as i64,
                    size_is_deferred: upload.size_is_deferred,
                    offset: upload.offset as i64,
                    meta_data: upload.metadata.clone().into_iter().collect(),
                    is_partial: upload.is_partial,
                    is_final: upload.is_final,
                    partial_uploads: upload.partial_uploads.clone(),
                    storage: upload.storage.clone().into_iter().collect(),
                }),
                http_request: Some(proto::HttpRequest {
                    method: http.method.clone(),
                    uri: http.uri.clone(),
                    remote_addr: http.remote_addr.clone(),
                    header,
                }),
            }),
        });
        for name in &self.options.forward_headers {
            let canonical = crate::wire::canonical_header_key(name);
            let Some(value) = http.header.get(&canonical).and_then(|v| v.first()) else {
                continue;
            };
            match (
                tonic::metadata::MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes()),
                value.parse(),
            ) {
                (Ok(key), Ok(value)) => {
                    message.metadata_mut().insert(key, value);
                }
                _ => tracing::warn!(header = %name, "header cannot be forwarded as gRPC metadata"),
            }
        }
        message
    }
}

fn response(res: proto::HookResponse) -> HookResponse {
    let http = res.http_response.unwrap_or_default();
    let changes = res.change_file_info.unwrap_or_default();
    let map = |m: HashMap<String, String>| (!m.is_empty()).then(|| m.into_iter().collect());
    HookResponse {
        http_response: HttpResponse {
            status_code: http.status_code,
            body: http.body,
            header: http.header.into_iter().collect(),
        },
        reject_upload: res.reject_upload,
        reject_termination: false,
        change_file_info: FileInfoChanges {
            id: changes.id,
            metadata: map(changes.meta_data),
            storage: map(changes.storage),
        },
        stop_upload: res.stop_upload,
    }
}

#[async_trait]
impl HookHandler for GrpcHook {
    fn kind(&self) -> &'static str {
        "grpc"
    }

    async fn invoke(&self, request: &HookRequest) -> Result<HookResponse, HookError> {
        let mut retries_left = self.options.retries;
        loop {
            let mut client = self.client.clone();
            match client.invoke_hook(self.message(request)).await {
                Ok(answer) => return Ok(response(answer.into_inner())),
                Err(status)
                    if retries_left > 0
                        && matches!(
                            status.code(),
                            tonic::Code::Unavailable | tonic::Code::ResourceExhausted
                        ) =>
                {
                    tracing::warn!(hook = %request.kind, error = %status, retries_left, "gRPC hook call failed; retrying");
                    retries_left -= 1;
                    tokio::time::sleep(self.options.backoff).await;
                }
                Err(status) => {
                    return Err(HookError(format!(
                        "gRPC hook call failed: {}: {}",
                        status.code(),
                        status.message()
                    )))
                }
            }
        }
    }
}
