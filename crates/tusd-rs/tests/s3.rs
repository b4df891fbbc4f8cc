//! tusd-rs with `--s3-bucket`: uploads over HTTP land in a real Garage in
//! tusd's S3 layout, and a bucket that cannot be used stops the start with
//! one line naming the flag.
//!
//! One test function: the credentials come from the process environment
//! (`AWS_*`, as an operator would give them), which tests running side by
//! side would share.

mod common;

use common::*;
use tusd_s3store::{s3_client, S3ClientConfig};
use tusd_testsupport::{GarageServer, InProcessServer};

const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn s3_bucket_selects_the_s3_store_and_bad_buckets_fail_the_start() {
    let garage = GarageServer::start().await;
    std::env::set_var("AWS_ACCESS_KEY_ID", garage.access_key_id());
    std::env::set_var("AWS_SECRET_ACCESS_KEY", garage.secret_access_key());
    std::env::set_var("AWS_REGION", garage.region());
    let endpoint = garage.endpoint();
    let s3 = |bucket: &str| {
        vec![
            "--s3-bucket".to_owned(),
            bucket.to_owned(),
            "--s3-endpoint".to_owned(),
            endpoint.clone(),
            "--s3-object-prefix".to_owned(),
            "srv".to_owned(),
        ]
    };

    // An upload in two PATCHes (one full part, then the rest) through HTTP.
    let args = s3(garage.bucket());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = InProcessServer::with_args(&args).await;
    let options = tus(reqwest::Method::OPTIONS, &server.files_url())
        .send()
        .await
        .unwrap();
    let extensions = options.headers()["tus-extension"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(extensions.contains("concatenation"), "{extensions}");
    assert!(!extensions.contains("checksum"), "{extensions}");
    let data: Vec<u8> = (0..7 * MIB + 11).map(|i| (i % 251) as u8).collect();
    let url = create(&server, data.len() as u64).await;
    let cut = 5 * MIB + 3;
    assert_eq!(patch(&url, 0, data[..cut].to_vec()).await.status(), 204);
    assert_eq!(offset(&url).await, cut as u64);
    let r = patch(&url, cut as u64, data[cut..].to_vec()).await;
    assert_eq!(r.status(), 204);
    let (status, got) = get_bytes(&url).await;
    assert_eq!(status, 200);
    assert!(got == data, "GET gives the uploaded bytes");

    let client = s3_client(&S3ClientConfig {
        endpoint: Some(endpoint.clone()),
        ..S3ClientConfig::default()
    })
    .await;
    let id = id_of(&url);
    let object = format!("srv/{}", id.split_once('+').expect("tusd's S3 id").0);
    let head = client
        .head_object()
        .bucket(garage.bucket())
        .key(&object)
        .send()
        .await
        .expect("the finished upload is one object");
    assert_eq!(head.content_length(), Some(data.len() as i64));
    client
        .head_object()
        .bucket(garage.bucket())
        .key(format!("{object}.info"))
        .send()
        .await
        .expect("its .info stays");
    server.shutdown().await.expect("a clean stop");

    // A bucket that does not exist.
    let args = s3("no-such-bucket");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let error = InProcessServer::with_args(&args)
        .await
        .shutdown()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("--s3-bucket: "), "{error}");
    assert!(
        error.contains("no-such-bucket") && !error.contains('\n'),
        "{error}"
    );

    // Credentials the server refuses.
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "0".repeat(64));
    let args = s3(garage.bucket());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let error = InProcessServer::with_args(&args)
        .await
        .shutdown()
        .await
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("--s3-bucket: "), "{error}");
    assert!(
        error.contains("credentials") && !error.contains('\n'),
        "{error}"
    );
}
