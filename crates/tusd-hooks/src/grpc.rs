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

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use tonic::transport::{Channel, Endpoint};

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
    /// `host:port` as tusd takes it, or a `http://` URL.
    pub endpoint: String,
    pub retries: u32,
    pub backoff: Duration,
    pub forward_headers: Vec<String>,
}

impl GrpcHookOptions {
    pub fn new(endpoint: impl Into<String>) -> GrpcHookOptions {
        GrpcHookOptions {
            endpoint: endpoint.into(),
            retries: 3,
            backoff: Duration::from_secs(1),
            forward_headers: Vec::new(),
        }
    }
}

/// Calls a tusd gRPC hook server.
pub struct GrpcHook {
    options: GrpcHookOptions,
    client: HookHandlerClient<Channel>,
}

impl GrpcHook {
    /// Connects lazily: an unreachable server fails the first call, not this.
    pub fn new(options: GrpcHookOptions) -> Result<GrpcHook, HookError> {
        let uri = match options.endpoint.contains("://") {
            true => options.endpoint.clone(),
            false => format!("http://{}", options.endpoint),
        };
        let channel = Endpoint::from_shared(uri)
            .map_err(|e| HookError(format!("invalid gRPC hook endpoint: {e}")))?
            .connect_lazy();
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
