//! Making the S3 client and checking, at start-up, that it can use the
//! bucket.
//!
//! Credentials and region come from the standard AWS sources
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, the shared
//! config and credentials files, ...) through `aws-config`, so the store is
//! configured the way every AWS tool is. An endpoint other than AWS's is
//! addressed path-style (`{endpoint}/{bucket}/{key}`), which every
//! S3-compatible server understands without DNS set-up.
//!
//! HTTP goes through hyper 1 with rustls on the `ring` provider: pure Rust
//! plus ring's own C and assembly, so the build needs no cmake, clang or
//! Go, unlike the SDK's default aws-lc.

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::{Credentials, Region, RequestChecksumCalculation};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls;

use crate::error::code;

/// Where and as whom to reach S3.
#[derive(Clone, Debug, Default)]
pub struct S3ClientConfig {
    /// An S3-compatible server's URL (`--s3-endpoint`); AWS when `None`.
    pub endpoint: Option<String>,
    /// The region; from the AWS environment when `None` (`us-east-1` if
    /// that names none either, which S3-compatible servers often expect).
    pub region: Option<String>,
    /// Fixed credentials (access key id, secret); from the AWS environment
    /// when `None`.
    pub credentials: Option<(String, String)>,
    /// Sends no content checksums (see `S3StoreOptions`).
    pub disable_content_hashes: bool,
    /// How long one attempt of one request may take, its body's upload
    /// included (a part crosses the network inside it);
    /// [`DEFAULT_REQUEST_TIMEOUT`] when `None`.
    pub request_timeout: Option<std::time::Duration>,
}

/// Why the store cannot use its bucket: one line for a start-up error.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("S3 endpoint {endpoint} is unreachable: {detail}")]
    Unreachable { endpoint: String, detail: String },
    #[error("S3 refused the credentials for bucket {bucket:?} ({code}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the AWS profile")]
    CredentialsRefused { bucket: String, code: String },
    #[error("S3 bucket {bucket:?} does not exist at {endpoint}")]
    NoSuchBucket { bucket: String, endpoint: String },
    #[error("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or an AWS profile ({detail})")]
    NoCredentials { detail: String },
    #[error("S3 bucket {bucket:?} cannot be used: {detail}")]
    Other { bucket: String, detail: String },
}

/// How long connecting to S3 may take before the attempt fails.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long one attempt of a request may take unless configured: a 50 MiB
/// part (the default size) at 200 KiB/s, ten such parts sharing a slow link.
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// An S3 client configured from `config` and the AWS environment.
pub async fn s3_client(config: &S3ClientConfig) -> Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some((key, secret)) = &config.credentials {
        loader = loader.credentials_provider(Credentials::new(key, secret, None, None, "tusd-rs"));
    }
    let shared = loader.load().await;
    let mut builder = aws_sdk_s3::config::Builder::from(&shared);
    if shared.region().is_none() {
        builder = builder.region(Region::new("us-east-1"));
    }
    if let Some(endpoint) = &config.endpoint {
        builder = builder.endpoint_url(endpoint).force_path_style(true);
    }
    if config.disable_content_hashes {
        builder = builder.request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
    }
    // Without a limit a request whose answer never comes waits for ever,
    // holding its upload's write (seen once against Garage after a 503).
    // The limit is per attempt and covers sending the body: the HTTP
    // client's read timeout would as well (hyper sends the body while it
    // waits for the answer), so one bound, stated as such, is clearer.
    let attempt = config.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
    builder = builder.timeout_config(
        aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .operation_attempt_timeout(attempt)
            .build(),
    );
    Client::from_conf(builder.build())
}

/// Checks that `client` may use `bucket` (HeadBucket), so that a wrong
/// endpoint, refused credentials or a missing bucket is one clear line at
/// start-up rather than a 500 on the first upload.
/// `endpoint` names the server in the error.
pub async fn check_bucket(
    client: &Client,
    bucket: &str,
    endpoint: &str,
) -> Result<(), ConnectError> {
    let endpoint = endpoint.to_owned();
    let err = match client.head_bucket().bucket(bucket).send().await {
        Ok(_) => return Ok(()),
        Err(err) => err,
    };
    let detail = DisplayErrorContext(&err).to_string();
    let bucket = bucket.to_owned();
    Err(match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            ConnectError::Unreachable { endpoint, detail }
        }
        SdkError::ConstructionFailure(_) if detail.contains("credentials") => {
            ConnectError::NoCredentials { detail }
        }
        _ => match code(&err).as_deref() {
            Some("NotFound" | "NoSuchBucket") => ConnectError::NoSuchBucket { bucket, endpoint },
            Some(
                code @ ("AccessDenied"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "Forbidden"),
            ) => ConnectError::CredentialsRefused {
                bucket,
                code: code.to_owned(),
            },
            _ => ConnectError::Other { bucket, detail },
        },
    })
}
