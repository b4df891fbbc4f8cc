//! The stateless cluster: three tusd-rs nodes with the S3 store (a real
//! Garage) and the etcd locker, no shared directory, nginx round-robin in
//! front. Uploads that go through nginx land on whichever node, resume on
//! others and finish byte-identical; a node killed with SIGKILL mid-upload
//! loses only what it had not stored, and the client resumes elsewhere from
//! the offset the store reports.

mod common;

use std::collections::BTreeSet;

use common::*;
use tokio::io::AsyncWriteExt;
use tusd_s3store::{s3_client, S3ClientConfig};
use tusd_testsupport::{EtcdServer, GarageServer, Nginx, TusServer};

const MIB: usize = 1024 * 1024;

/// Dropped in field order: nginx, the nodes, then etcd and Garage.
struct Cluster {
    nginx: Nginx,
    nodes: Vec<TusServer>,
    _etcd: EtcdServer,
    garage: GarageServer,
}

impl Cluster {
    async fn start() -> Cluster {
        let garage = GarageServer::start().await;
        let etcd = EtcdServer::start().await;
        std::env::set_var("AWS_ACCESS_KEY_ID", garage.access_key_id());
        std::env::set_var("AWS_SECRET_ACCESS_KEY", garage.secret_access_key());
        std::env::set_var("AWS_REGION", garage.region());
        let (endpoint, etcd_endpoint) = (garage.endpoint(), etcd.endpoint());
        let args = [
            "--s3-bucket",
            garage.bucket(),
            "--s3-endpoint",
            &endpoint,
            "--s3-part-size",
            "5242880",
            "--etcd-endpoints",
            &etcd_endpoint,
            "--etcd-ttl",
            "3",
            "--behind-proxy",
        ];
        // Each node gets a directory of its own, which the S3 store never
        // uses: nothing is shared but etcd and the bucket.
        let nodes: Vec<TusServer> = (0..3).map(|_| TusServer::start(BIN, &args)).collect();
        let ports: Vec<u16> = nodes.iter().map(TusServer::port).collect();
        let nginx = Nginx::start(&ports);
        Cluster {
            nginx,
            nodes,
            _etcd: etcd,
            garage,
        }
    }

    /// Checks the upload by GET through nginx and as the finished object.
    async fn assert_stored(&self, url: &str, expected: &[u8]) {
        let (status, body) = get_bytes(url).await;
        assert_eq!(status, 200, "GET {url}");
        assert!(
            body == expected,
            "GET: {} bytes, want {}",
            body.len(),
            expected.len()
        );
        let client = s3_client(&S3ClientConfig {
            endpoint: Some(self.garage.endpoint()),
            ..S3ClientConfig::default()
        })
        .await;
        let object = id_of(url).split_once('+').expect("tusd's S3 id").0;
        let stored = client
            .get_object()
            .bucket(self.garage.bucket())
            .key(object)
            .send()
            .await
            .expect("the finished object")
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        assert!(
            stored == expected,
            "object: {} bytes, want {}",
            stored.len(),
            expected.len()
        );
    }

    /// The nodes nginx sent PATCHes to, from its access log.
    fn patch_upstreams(&self) -> BTreeSet<String> {
        self.nginx
            .access_log()
            .lines()
            .filter(|l| l.starts_with("\"PATCH "))
            .filter_map(|l| l.split("upstream=").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ seed)
        .collect()
}

/// A PATCH through nginx, retried while nginx answers 502 (a dead node it
/// has not yet marked failed) or the upload is locked by a dead node's
/// lease (423), as a tus client would retry.
async fn patch_through(url: &str, offset: u64, body: &[u8]) -> u16 {
    for _ in 0..40 {
        let status = patch(url, offset, body.to_vec()).await.status().as_u16();
        if status != 502 && status != 423 {
            return status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    panic!("PATCH {url} kept failing with 502/423");
}

/// The offset through nginx, retried like [`patch_through`].
async fn offset_through(url: &str) -> u64 {
    for _ in 0..40 {
        let r = head(url).await;
        if r.status() == 200 {
            return header_u64(&r, "upload-offset");
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    panic!("HEAD {url} kept failing");
}

#[tokio::test]
async fn uploads_through_nginx_move_between_nodes_and_finish_byte_identical() {
    let cluster = Cluster::start().await;
    let data = pattern(12 * MIB + 77, 1);
    let url = create_at(&cluster.nginx.files_url(), data.len() as u64).await;
    let step = 3 * MIB / 2;
    let mut offset = 0;
    while offset < data.len() {
        // Each request may land on another node: the offset comes from S3.
        assert_eq!(offset_through(&url).await, offset as u64);
        let end = (offset + step).min(data.len());
        assert_eq!(
            patch_through(&url, offset as u64, &data[offset..end]).await,
            204
        );
        offset = end;
    }
    cluster.assert_stored(&url, &data).await;
    let upstreams = cluster.patch_upstreams();
    assert!(upstreams.len() >= 2, "PATCHes reached {upstreams:?}");
}

#[tokio::test]
async fn a_node_killed_mid_upload_loses_only_what_it_had_not_stored() {
    let cluster = Cluster::start().await;
    let data = pattern(9 * MIB + 5, 2);
    let url = create_at(&cluster.nginx.files_url(), data.len() as u64).await;
    // A PATCH straight to node 0 that sends 6 MiB (one 5 MiB part and a
    // tail) and then stalls, holding the upload's lock.
    let direct = format!("{}{}", cluster.nodes[0].files_url(), id_of(&url));
    let (mut body, response) = start_patch(&direct, 0);
    body.write_all(&data[..6 * MIB]).await.unwrap();
    body.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    cluster.nodes[0].signal(libc::SIGKILL);
    let _ = response.await;
    drop(body);

    // Another node takes the lock once node 0's lease is gone, and the
    // store says how much node 0 made durable: never more than it got.
    let stored = offset_through(&url).await;
    assert!(stored <= 6 * MIB as u64, "offset {stored}");
    let status = patch_through(&url, stored, &data[stored as usize..]).await;
    assert_eq!(status, 204);
    cluster.assert_stored(&url, &data).await;
}

async fn create_at(files_url: &str, length: u64) -> String {
    let r = tus(reqwest::Method::POST, files_url)
        .header("Upload-Length", length.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "POST {files_url}");
    r.headers()["location"].to_str().unwrap().to_owned()
}
