//! Connecting to an etcd cluster, with a clear error when it is unreachable.
//!
//! etcd-client's `Client::connect` dials lazily: it can return a client for
//! endpoints nobody listens on. [`connect`] asks the cluster for its status
//! before handing the client out, under a time limit, so a server started
//! against a wrong or dead cluster fails at once with the endpoints in the
//! message instead of hanging on its first upload.
//!
//! [`connect`] also leaves the endpoints and client options behind, under
//! the id of the cluster that answered. etcd-client sends each request of a
//! client to a random endpoint and does not say which, nor hand out its
//! options; a locker on that cluster uses them to keep its lease alive
//! through every endpoint separately, so that one hung member cannot stall
//! all of its keep-alives (see the `keepalive` module).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use etcd_client::{Certificate, Client, Identity, TlsOptions};
use tokio::time::Instant;

use crate::call::{classify, Failure};
use crate::Error;

/// How to reach a cluster: endpoints, credentials, TLS material.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Client URLs such as `http://10.0.0.1:2379`; `https://` when TLS is used.
    /// Requests that fail on one endpoint are retried on the others.
    pub endpoints: Vec<String>,
    /// User name for a cluster with authentication enabled.
    pub username: Option<String>,
    /// Password of [`ConnectOptions::username`].
    pub password: Option<String>,
    /// PEM file of the CA that signed the servers' certificates.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for clusters that verify clients.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of [`ConnectOptions::cert_file`].
    pub key_file: Option<PathBuf>,
    /// How long [`connect`] may try before it gives up.
    pub connect_timeout: Duration,
}

impl ConnectOptions {
    /// Plain-text access to `endpoints`, giving up after 5 seconds.
    pub fn new(endpoints: Vec<String>) -> ConnectOptions {
        ConnectOptions {
            endpoints,
            username: None,
            password: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Connects to the cluster and checks that a member answers, within
/// `options.connect_timeout`. Fails with [`Error::Connect`] naming the
/// endpoints when no member answers, the credentials are refused or the
/// TLS files cannot be read.
pub async fn connect(options: &ConnectOptions) -> Result<Client, Error> {
    let failed = |reason: String| Error::Connect {
        endpoints: options.endpoints.join(","),
        reason,
    };
    if options.endpoints.is_empty() {
        return Err(failed("no endpoints given".to_owned()));
    }
    let client_options = client_options(options).map_err(failed)?;
    let deadline = Instant::now() + options.connect_timeout;
    let mut last_error = String::from("no answer");
    while Instant::now() < deadline {
        let attempt = async {
            let mut client =
                Client::connect(&options.endpoints, Some(client_options.clone())).await?;
            let status = client.status().await?;
            Ok::<_, etcd_client::Error>((client, status.header().map(|h| h.cluster_id())))
        };
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok((client, cluster_id))) => {
                if let Some(cluster_id) = cluster_id {
                    Endpoints::register(cluster_id, &options.endpoints, &client_options);
                }
                return Ok(client);
            }
            Ok(Err(e)) if classify(&e) == Failure::Unavailable => last_error = e.to_string(),
            Ok(Err(e)) => return Err(failed(e.to_string())),
            Err(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(failed(format!(
        "{last_error} (gave up after {:?})",
        options.connect_timeout
    )))
}

fn client_options(options: &ConnectOptions) -> Result<etcd_client::ConnectOptions, String> {
    let mut client_options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(options.connect_timeout)
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
    match (&options.username, &options.password) {
        (Some(user), Some(password)) => client_options = client_options.with_user(user, password),
        (None, None) => {}
        _ => return Err("a user name needs a password and vice versa".to_owned()),
    }
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    let mut tls = None;
    if let Some(ca) = &options.ca_file {
        tls = Some(TlsOptions::new().ca_certificate(Certificate::from_pem(read(ca)?)));
    }
    match (&options.cert_file, &options.key_file) {
        (Some(cert), Some(key)) => {
            let identity = Identity::from_pem(read(cert)?, read(key)?);
            tls = Some(tls.unwrap_or_default().identity(identity));
        }
        (None, None) => {}
        _ => return Err("a client certificate needs its key and vice versa".to_owned()),
    }
    if let Some(tls) = tls {
        client_options = client_options.with_tls(tls);
    }
    Ok(client_options)
}

/// The endpoints and client options [`connect`] last used for a cluster.
pub(crate) struct Endpoints {
    pub(crate) endpoints: Vec<String>,
    pub(crate) options: etcd_client::ConnectOptions,
}

fn registry() -> &'static Mutex<HashMap<u64, Arc<Endpoints>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<u64, Arc<Endpoints>>>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

impl Endpoints {
    fn register(cluster_id: u64, endpoints: &[String], options: &etcd_client::ConnectOptions) {
        let entry = Arc::new(Endpoints {
            endpoints: endpoints.to_vec(),
            options: options.clone(),
        });
        registry().lock().unwrap().insert(cluster_id, entry);
    }

    /// What [`connect`] used for the cluster `cluster_id`, if it connected
    /// to it in this process.
    pub(crate) fn of_cluster(cluster_id: u64) -> Option<Arc<Endpoints>> {
        registry().lock().unwrap().get(&cluster_id).cloned()
    }
}
