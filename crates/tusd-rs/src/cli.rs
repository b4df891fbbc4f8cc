//! The server's settings: the command line, with tusd's flag names where
//! tusd has one, each also readable from a `TUSD_*` environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, ValueEnum};

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 20s, 500ms, 1h)"))
}

/// How the binary writes its log (one line per request either way).
/// [`crate::run`] does not look at it: logging is the caller's to set up.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The settings of [`crate::run`], one field per flag.
///
/// Make one with [`Config::from_args`], or with clap's `Parser` as the
/// binary does, then change fields as you like. Either way the `TUSD_*`
/// environment variables count, as for the binary. `host` and `port` only
/// tell the binary where to bind: `run` serves the listener it is given.
#[derive(Clone, Debug, Parser)]
#[command(name = "tusd-rs", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "TUSD_HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Port to listen on (0 picks a free one; the log says which).
    #[arg(long, env = "TUSD_PORT", default_value_t = 8080)]
    pub port: u16,
    /// URL path the uploads live under.
    #[arg(long, env = "TUSD_BASE_PATH", default_value = "/files/")]
    pub base_path: String,
    /// Directory of the file store (created if missing; several servers may share it).
    #[arg(long, env = "TUSD_UPLOAD_DIR", default_value = "./data")]
    pub upload_dir: PathBuf,
    /// What the file store syncs to disk: none (nothing, as tusd does),
    /// create (each .info, before it is renamed into place) or complete
    /// (create, plus a completed upload's bytes before its 204). See
    /// docs/reliability.md.
    #[arg(long, env = "TUSD_DURABILITY", default_value = "complete")]
    pub durability: tusd_filestore::Durability,
    /// Where the file store reads upload state and writes bytes: inline (on
    /// the request's worker thread; fastest on a local disk) or pool (on a
    /// pool of blocking threads, for directories where a call can stall,
    /// such as network file systems). Syncs always run on the pool.
    #[arg(long, env = "TUSD_FILESTORE_IO", default_value = "inline")]
    pub filestore_io: tusd_filestore::FileIo,
    /// Largest upload accepted in bytes (0: no limit).
    #[arg(long, env = "TUSD_MAX_SIZE", default_value_t = 0)]
    pub max_size: u64,
    /// Trust X-Forwarded-Host, X-Forwarded-Proto and Forwarded for upload URLs.
    #[arg(long, env = "TUSD_BEHIND_PROXY")]
    pub behind_proxy: bool,
    /// Serve Prometheus metrics at --metrics-path.
    #[arg(long, env = "TUSD_EXPOSE_METRICS", default_value_t = true, action = ArgAction::Set)]
    pub expose_metrics: bool,
    /// Path of the Prometheus metrics.
    #[arg(long, env = "TUSD_METRICS_PATH", default_value = "/metrics")]
    pub metrics_path: String,
    /// Refuse downloads (GET).
    #[arg(long, env = "TUSD_DISABLE_DOWNLOAD")]
    pub disable_download: bool,
    /// Refuse termination (DELETE).
    #[arg(long, env = "TUSD_DISABLE_TERMINATION")]
    pub disable_termination: bool,
    /// Send no CORS headers at all.
    #[arg(long, env = "TUSD_DISABLE_CORS")]
    pub disable_cors: bool,
    /// Regular expression an Origin must match in full to get CORS headers.
    #[arg(long, env = "TUSD_CORS_ALLOW_ORIGIN", default_value = tusd_handler::cors::DEFAULT_ALLOW_ORIGIN)]
    pub cors_allow_origin: String,
    /// Allow credentialed cross-origin requests.
    #[arg(long, env = "TUSD_CORS_ALLOW_CREDENTIALS")]
    pub cors_allow_credentials: bool,
    /// Methods allowed in cross-origin requests.
    #[arg(
        long,
        env = "TUSD_CORS_ALLOW_METHODS",
        default_value = tusd_handler::cors::DEFAULT_ALLOW_METHODS
    )]
    pub cors_allow_methods: String,
    /// Extra request headers allowed cross-origin, added to the tus ones.
    #[arg(long, env = "TUSD_CORS_ALLOW_HEADERS", default_value = "")]
    pub cors_allow_headers: String,
    /// How long browsers may cache a preflight answer, in seconds.
    #[arg(long, env = "TUSD_CORS_MAX_AGE", default_value_t = tusd_handler::cors::DEFAULT_MAX_AGE)]
    pub cors_max_age: u64,
    /// Extra response headers exposed cross-origin, added to the tus ones.
    #[arg(long, env = "TUSD_CORS_EXPOSE_HEADERS", default_value = "")]
    pub cors_expose_headers: String,
    /// How long a request waits for an upload's lock before answering 423.
    #[arg(long, env = "TUSD_ACQUIRE_LOCK_TIMEOUT", default_value = "20s", value_parser = duration)]
    pub acquire_lock_timeout: Duration,
    /// A request body idle for this long is ended (what arrived is kept), and a
    /// connection whose client stops reading a response for this long is closed.
    #[arg(long, env = "TUSD_NETWORK_TIMEOUT", default_value = "60s", value_parser = duration)]
    pub network_timeout: Duration,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    #[arg(long, env = "TUSD_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub shutdown_timeout: Duration,
    /// A request head (request line and headers) must arrive in full within
    /// this, counted from the connection's start or from the head's first
    /// byte; the connection is closed otherwise. 0 turns it off.
    #[arg(long, env = "TUSD_HEADER_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub header_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after
    /// this (longer than the 60 s proxies keep idle upstream connections, so
    /// they close first). 0 turns it off.
    #[arg(long, env = "TUSD_IDLE_TIMEOUT", default_value = "75s", value_parser = duration)]
    pub idle_timeout: Duration,
    /// Client connections open at once; past it a new connection is answered
    /// 503 with Retry-After and closed. [default: 10000, or less if the
    /// open-file limit is too low for that: 2 descriptors per connection]
    #[arg(long, env = "TUSD_MAX_CONNECTIONS", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections: Option<usize>,
    /// Largest request head (request line and headers) in bytes; a larger one
    /// is answered 431 and the connection closed.
    #[arg(long, env = "TUSD_MAX_HEADER_SIZE", default_value_t = 65536, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..))]
    pub max_header_size: usize,
    /// Largest read buffer of one HTTP/1 connection in bytes (at least 8192):
    /// bounds what an upload in flight holds, and each read from the socket.
    #[arg(long, env = "TUSD_MAX_READ_BUFFER", default_value_t = 65536, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(8192..))]
    pub max_read_buffer: usize,
    /// Also serve cleartext HTTP/2 to clients that start with its preface
    /// (h2c with prior knowledge), under the same limits.
    #[arg(long, env = "TUSD_ENABLE_H2C")]
    pub enable_h2c: bool,
    /// How often memory freed after bursts of uploads is handed back to the
    /// system (glibc's malloc_trim); 0 turns it off.
    #[arg(long, env = "TUSD_MEMORY_TRIM_INTERVAL", default_value = "10s", value_parser = duration)]
    pub memory_trim_interval: Duration,
    /// Unfinished uploads idle this long expire (410, then removed); 0 turns expiration off.
    #[arg(long, env = "TUSD_EXPIRE_AFTER", default_value = "0s", value_parser = duration)]
    pub expire_after: Duration,
    /// How often expired uploads are removed.
    #[arg(long, env = "TUSD_EXPIRE_SWEEP_INTERVAL", default_value = "60s", value_parser = duration)]
    pub expire_sweep_interval: Duration,
    /// The most partial uploads one final upload (Upload-Concat) may name.
    #[arg(long, env = "TUSD_MAX_CONCAT_PARTIALS", default_value_t = 1000)]
    pub max_concat_partials: usize,
    /// Uploads one client address may create per minute (429 past it); 0 is
    /// no limit. With --behind-proxy the address is the proxy's last
    /// X-Forwarded-For / Forwarded entry.
    #[arg(long, env = "TUSD_CREATIONS_PER_MINUTE", default_value_t = 0)]
    pub creations_per_minute: u32,
    /// Fault injection for tests, never for production (hidden from --help):
    /// request bodies ignore lock loss and release requests.
    #[arg(long, env = "TUSD_FAULT_IGNORE_LOCK_SIGNALS", hide = true)]
    pub fault_ignore_lock_signals: bool,
    /// While a body arrives, how often a post-receive (progress) hook reports
    /// its offset (when it moved), and once more when the body ends.
    #[arg(long, env = "TUSD_PROGRESS_HOOKS_INTERVAL", default_value = "1s", value_parser = duration)]
    pub progress_hooks_interval: Duration,
    /// Comma-separated hook events to call (pre-create, post-create,
    /// post-receive, pre-finish, post-finish, pre-terminate,
    /// post-terminate, and pre-access, beyond tusd); empty enables tusd's
    /// seven (pre-access only when named).
    #[arg(long, env = "TUSD_HOOKS_ENABLED_EVENTS", default_value = tusd_hooks::HookType::DEFAULT)]
    pub hooks_enabled_events: String,
    /// Directory of file hooks: an executable per event, named as the event.
    #[arg(long, env = "TUSD_HOOKS_DIR")]
    pub hooks_dir: Option<PathBuf>,
    /// Endpoint every hook event is POSTed to (tusd's JSON).
    #[arg(long, env = "TUSD_HOOKS_HTTP")]
    pub hooks_http: Option<String>,
    /// Retries of an HTTP hook call that could not reach the endpoint,
    /// timed out or got a 5xx.
    #[arg(long, env = "TUSD_HOOKS_HTTP_RETRY", default_value_t = 3)]
    pub hooks_http_retry: u32,
    /// Wait before each retry of an HTTP hook call.
    #[arg(long, env = "TUSD_HOOKS_HTTP_BACKOFF", default_value = "1s", value_parser = duration)]
    pub hooks_http_backoff: Duration,
    /// Client request headers copied onto HTTP hook requests, comma-separated.
    #[arg(long, env = "TUSD_HOOKS_HTTP_FORWARD_HEADERS", value_delimiter = ',')]
    pub hooks_http_forward_headers: Vec<String>,
    /// Timeout of one HTTP hook call.
    #[arg(long, env = "TUSD_HOOKS_HTTP_TIMEOUT", default_value = "15s", value_parser = duration)]
    pub hooks_http_timeout: Duration,
    /// Largest HTTP hook response body accepted, in bytes.
    #[arg(long, env = "TUSD_HOOKS_HTTP_SIZE_LIMIT", default_value_t = 5 * 1024)]
    pub hooks_http_size_limit: usize,
    /// Accept any TLS certificate from an https:// hook endpoint (tusd's
    /// InsecureSkipVerify): for self-signed receivers on trusted networks.
    #[arg(long, env = "TUSD_HOOKS_HTTP_SKIP_VERIFY")]
    pub hooks_http_skip_verify: bool,
    /// gRPC hook server (host:port) every hook event is sent to, with tusd
    /// v2's HookHandler.InvokeHook (an error without the grpc-hooks feature).
    #[arg(long, env = "TUSD_HOOKS_GRPC")]
    pub hooks_grpc: Option<String>,
    /// Retries of a gRPC hook call that failed as UNAVAILABLE or RESOURCE_EXHAUSTED.
    #[arg(long, env = "TUSD_HOOKS_GRPC_RETRY", default_value_t = 3)]
    pub hooks_grpc_retry: u32,
    /// Wait before each retry of a gRPC hook call.
    #[arg(long, env = "TUSD_HOOKS_GRPC_BACKOFF", default_value = "1s", value_parser = duration)]
    pub hooks_grpc_backoff: Duration,
    /// Client request headers sent as gRPC metadata, comma-separated.
    #[arg(long, env = "TUSD_HOOKS_GRPC_FORWARD_HEADERS", value_delimiter = ',')]
    pub hooks_grpc_forward_headers: Vec<String>,
    /// TLS to the gRPC hook server; needs --hooks-grpc-server-tls-certificate.
    #[arg(long, env = "TUSD_HOOKS_GRPC_SECURE")]
    pub hooks_grpc_secure: bool,
    /// PEM certificate the gRPC hook server's must chain to (its own if
    /// self-signed, or its CA); the only root trusted.
    #[arg(long, env = "TUSD_HOOKS_GRPC_SERVER_TLS_CERTIFICATE")]
    pub hooks_grpc_server_tls_certificate: Option<PathBuf>,
    /// PEM client certificate for mutual TLS with the gRPC hook server.
    #[arg(long, env = "TUSD_HOOKS_GRPC_CLIENT_TLS_CERTIFICATE")]
    pub hooks_grpc_client_tls_certificate: Option<PathBuf>,
    /// PEM key of --hooks-grpc-client-tls-certificate.
    #[arg(long, env = "TUSD_HOOKS_GRPC_CLIENT_TLS_KEY")]
    pub hooks_grpc_client_tls_key: Option<PathBuf>,
    /// Log format: one line per request either way.
    #[arg(long, env = "TUSD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// S3 bucket to store uploads in; setting this switches from the upload
    /// directory to the S3 store (tusd's s3store layout). Credentials and
    /// region come from the standard AWS environment variables and files.
    #[arg(long, env = "TUSD_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// Prefix of every object key in the bucket (a `/` is added).
    #[arg(long, env = "TUSD_S3_OBJECT_PREFIX", default_value = "")]
    pub s3_object_prefix: String,
    /// Prefix of the `.info` and `.part` objects (and `.fence`) instead of
    /// --s3-object-prefix, e.g. to keep them apart from the uploaded files;
    /// empty: the object prefix.
    #[arg(long, env = "TUSD_S3_METADATA_OBJECT_PREFIX", default_value = "")]
    pub s3_metadata_object_prefix: String,
    /// Endpoint of an S3-compatible server (e.g. http://127.0.0.1:3900),
    /// addressed path-style; AWS when not set.
    #[arg(long, env = "TUSD_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Size of the parts uploads are cut into, in bytes (at least 5 MiB;
    /// larger for uploads that would need more than 10,000 parts).
    #[arg(long, env = "TUSD_S3_PART_SIZE", default_value_t = 50 * 1024 * 1024)]
    pub s3_part_size: u64,
    /// Parts of one upload that may wait on local disk while earlier ones
    /// are sent to S3.
    #[arg(long, env = "TUSD_S3_MAX_BUFFERED_PARTS", default_value_t = 20, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub s3_max_buffered_parts: usize,
    /// Part uploads to S3 in flight at once, for the whole server.
    #[arg(long, env = "TUSD_S3_CONCURRENT_PART_UPLOADS", default_value_t = 10, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub s3_concurrent_part_uploads: usize,
    /// Send parts without content checksums: less CPU, no integrity check
    /// by S3.
    #[arg(long, env = "TUSD_S3_DISABLE_CONTENT_HASHES")]
    pub s3_disable_content_hashes: bool,
    /// Seconds one attempt of one S3 request may take, sending a part
    /// included; the SDK then retries. Raise it for large parts over a slow
    /// link.
    #[arg(long, env = "TUSD_S3_REQUEST_TIMEOUT", default_value_t = 300, value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..))]
    pub s3_request_timeout: u64,
    /// etcd endpoints, comma-separated; setting this switches to the etcd locker
    /// (an error in a build without the `etcd` feature).
    #[arg(long, env = "TUSD_ETCD_ENDPOINTS", value_delimiter = ',')]
    pub etcd_endpoints: Vec<String>,
    /// Key prefix of the etcd locks.
    #[arg(long, env = "TUSD_ETCD_PREFIX", default_value = "/tusd")]
    pub etcd_prefix: String,
    /// Lease TTL of the etcd locker in seconds.
    #[arg(long, env = "TUSD_ETCD_TTL", default_value_t = 60)]
    pub etcd_ttl: i64,
    /// etcd user name (with --etcd-password).
    #[arg(long, env = "TUSD_ETCD_USERNAME")]
    pub etcd_username: Option<String>,
    /// etcd password.
    #[arg(long, env = "TUSD_ETCD_PASSWORD", hide_env_values = true)]
    pub etcd_password: Option<String>,
    /// CA certificate (PEM) that signed the etcd servers' certificates; enables TLS.
    #[arg(long, env = "TUSD_ETCD_CA_FILE")]
    pub etcd_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for etcd mutual TLS.
    #[arg(long, env = "TUSD_ETCD_CERT_FILE")]
    pub etcd_cert_file: Option<PathBuf>,
    /// Client key (PEM) for etcd mutual TLS.
    #[arg(long, env = "TUSD_ETCD_KEY_FILE")]
    pub etcd_key_file: Option<PathBuf>,
    /// How long start-up waits for etcd before giving up.
    #[arg(long, env = "TUSD_ETCD_CONNECT_TIMEOUT", default_value = "5s", value_parser = duration)]
    pub etcd_connect_timeout: Duration,
}

impl Config {
    /// Parses `args` as the binary parses its command line (without the
    /// program name), `TUSD_*` environment variables included. The error
    /// is clap's: its message names the flag and says what is wrong.
    pub fn from_args<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let program = std::iter::once(std::ffi::OsString::from("tusd-rs"));
        Config::try_parse_from(program.chain(args.into_iter().map(Into::into)))
    }
}
