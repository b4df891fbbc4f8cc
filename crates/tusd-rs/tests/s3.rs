//! tusd-rs with `--s3-bucket`: uploads over HTTP land in a real Garage in
//! tusd's S3 layout, a chunk with a wrong checksum leaves no trace in the
//! bucket, the expiration sweep removes expired uploads' objects and aborts
//! their multipart uploads, and a bucket that cannot be used stops the start with
//! one line naming the flag.
//!
//! One test function: the credentials come from the process environment
//! (`AWS_*`, as an operator would give them), which tests running side by
//! side would share.

mod common;

use common::*;
use tusd_s3store::{s3_client, S3ClientConfig};
use tusd_testsupport::{GarageServer, InProcessServer, S3Place};

const MIB: usize = 1024 * 1024;

fn sha1_of(bytes: &[u8]) -> String {
    use base64::Engine;
    use sha1::Digest;
    let digest = sha1::Sha1::digest(bytes);
    format!(
        "sha1 {}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

async fn checksum_patch(url: &str, offset: u64, body: &[u8], checksum: &str) -> u16 {
    patch_request(url, offset, body.to_vec())
        .header("Upload-Checksum", checksum)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The ids of the multipart uploads open under `prefix`.
async fn multipart_ids(
    client: &tusd_s3store::aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Vec<String> {
    let listed = client
        .list_multipart_uploads()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    listed
        .uploads()
        .iter()
        .filter_map(|u| u.upload_id().map(str::to_owned))
        .collect()
}

/// What the bucket holds of one upload: its objects (key, size, ETag) and
/// its multipart upload's parts (number, size, ETag).
type BucketState = (Vec<(String, i64, String)>, Vec<(i32, i64, String)>);

async fn bucket_state(
    client: &tusd_s3store::aws_sdk_s3::Client,
    bucket: &str,
    object: &str,
    multipart: &str,
) -> BucketState {
    let listed = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(object)
        .send()
        .await
        .unwrap();
    let objects = listed
        .contents()
        .iter()
        .map(|o| {
            (
                o.key().unwrap_or_default().to_owned(),
                o.size().unwrap_or_default(),
                o.e_tag().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let parts = client
        .list_parts()
        .bucket(bucket)
        .key(object)
        .upload_id(multipart)
        .send()
        .await
        .unwrap();
    let parts = parts
        .parts()
        .iter()
        .map(|p| {
            (
                p.part_number().unwrap_or_default(),
                p.size().unwrap_or_default(),
                p.e_tag().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    (objects, parts)
}

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
    assert!(extensions.contains("checksum"), "{extensions}");
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
    let head_object = client
        .head_object()
        .bucket(garage.bucket())
        .key(&object)
        .send()
        .await
        .expect("the finished upload is one object");
    assert_eq!(head_object.content_length(), Some(data.len() as i64));
    client
        .head_object()
        .bucket(garage.bucket())
        .key(format!("{object}.info"))
        .send()
        .await
        .expect("its .info stays");

    // Checksums: a chunk big enough to be a part is staged, verified, and
    // only then sent; a mismatch leaves the bucket as it was.
    let data: Vec<u8> = (0..12 * MIB).map(|i| (i % 241) as u8).collect();
    let url = create(&server, data.len() as u64).await;
    let half = 6 * MIB;
    let r = checksum_patch(&url, 0, &data[..half], &sha1_of(&data[..half])).await;
    assert_eq!(r, 204);
    let (object, multipart) = id_of(&url).split_once('+').unwrap();
    let object = format!("srv/{object}");
    let before = bucket_state(&client, garage.bucket(), &object, multipart).await;
    assert_eq!(
        before.1.len(),
        1,
        "the verified chunk is one part: {before:?}"
    );
    let mut wrong = data[half..].to_vec();
    wrong[17] ^= 1;
    let r = checksum_patch(&url, half as u64, &wrong, &sha1_of(&data[half..])).await;
    assert_eq!(r, 460, "a wrong digest is 460");
    assert_eq!(offset(&url).await, half as u64);
    let after = bucket_state(&client, garage.bucket(), &object, multipart).await;
    assert_eq!(
        before, after,
        "a mismatching chunk leaves no trace in the bucket"
    );
    let r = checksum_patch(&url, half as u64, &data[half..], &sha1_of(&data[half..])).await;
    assert_eq!(r, 204);
    let (status, got) = get_bytes(&url).await;
    assert!(
        status == 200 && got == data,
        "the verified chunks, byte for byte"
    );

    server.shutdown().await.expect("a clean stop");

    // Expiration end to end: the sweeper of a server with --expire-after
    // removes an unfinished upload's objects and aborts its multipart upload
    // (holding one part), and keeps a finished upload.
    let mut args = s3(garage.bucket());
    args[5] = "exp".to_owned();
    args.extend(["--expire-after", "2s", "--expire-sweep-interval", "1s"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = InProcessServer::with_args(&args).await;
    let data: Vec<u8> = (0..5 * MIB + 7).map(|i| (i % 239) as u8).collect();
    let expiring = create(&server, 2 * data.len() as u64).await;
    assert_eq!(patch(&expiring, 0, data.clone()).await.status(), 204);
    let kept = create(&server, 3).await;
    assert_eq!(patch(&kept, 0, &b"abc"[..]).await.status(), 204);
    let (object, multipart) = id_of(&expiring).split_once('+').unwrap();
    let object = format!("exp/{object}");
    let state = bucket_state(&client, garage.bucket(), &object, multipart).await;
    assert!(
        state.0.iter().any(|(key, ..)| key.ends_with(".info")) && state.1.len() == 1,
        "before the sweep: the .info and one part; {state:?}"
    );
    assert!(multipart_ids(&client, garage.bucket(), "exp/")
        .await
        .contains(&multipart.to_owned()));
    let (client_ref, bucket, object_ref) = (&client, garage.bucket(), &object);
    eventually(
        "the sweeper removed the expired upload's objects",
        1500,
        || async move {
            let listed = client_ref
                .list_objects_v2()
                .bucket(bucket)
                .prefix(object_ref)
                .send()
                .await
                .unwrap();
            listed.contents().is_empty()
        },
    )
    .await;
    let open = multipart_ids(&client, garage.bucket(), "exp/").await;
    assert!(
        !open.contains(&multipart.to_owned()),
        "its multipart upload is aborted; still open: {open:?}"
    );
    assert_eq!(head(&expiring).await.status(), 404);
    assert_eq!(
        get_bytes(&kept).await,
        (200, b"abc".to_vec()),
        "finished uploads stay"
    );
    server.shutdown().await.expect("a clean stop");

    // --s3-metadata-object-prefix (tusd's MetadataObjectPrefix): .info,
    // .part (and our .fence, the memory locker giving tokens) under their
    // own prefix, only the bytes under the object prefix;
    // a restarted server resumes from them, and the sweeper finds uploads
    // by their .info there.
    let mut args = s3(garage.bucket());
    args[5] = "data".to_owned();
    args.extend(["--s3-metadata-object-prefix", "meta"].map(String::from));
    let with_args = |extra: &[&str]| {
        let mut all = args.clone();
        all.extend(extra.iter().map(|a| a.to_string()));
        all
    };
    let first_args = with_args(&[]);
    let first_args: Vec<&str> = first_args.iter().map(String::as_str).collect();
    let server = InProcessServer::with_args(&first_args).await;
    let data: Vec<u8> = (0..7 * MIB + 13).map(|i| (i % 233) as u8).collect();
    let url = create(&server, data.len() as u64).await;
    let (object_id, multipart) = id_of(&url).split_once('+').unwrap();
    let (object_id, multipart) = (object_id.to_owned(), multipart.to_owned());
    let part = 5 * MIB + 3;
    let cut = part + MIB;
    assert_eq!(patch(&url, 0, data[..part].to_vec()).await.status(), 204);
    let r = patch(&url, part as u64, data[part..cut].to_vec()).await;
    assert_eq!(r.status(), 204);
    // Every key under a prefix, whole (the helper strips the prefix).
    let keys = |prefix: &'static str| {
        let names = object_names(S3Place {
            endpoint: endpoint.clone(),
            bucket: garage.bucket().to_owned(),
            prefix: prefix.to_owned(),
        });
        async move {
            names
                .into_iter()
                .map(|name| format!("{prefix}{name}"))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        keys("meta/").await,
        [
            format!("meta/{object_id}.fence"),
            format!("meta/{object_id}.info"),
            format!("meta/{object_id}.part")
        ],
        "the state and the small tail under the metadata prefix"
    );
    assert_eq!(keys("data/").await, Vec::<String>::new());
    let state = bucket_state(
        &client,
        garage.bucket(),
        &format!("data/{object_id}"),
        &multipart,
    )
    .await;
    assert_eq!(
        state.1.len(),
        1,
        "one part under the object prefix: {state:?}"
    );
    server.shutdown().await.expect("a clean stop");

    let server = InProcessServer::with_args(&first_args).await;
    let url = format!("{}{}", server.files_url(), id_of(&url));
    assert_eq!(
        offset(&url).await,
        cut as u64,
        "a new server reads the offset"
    );
    let r = patch(&url, cut as u64, data[cut..].to_vec()).await;
    assert_eq!(r.status(), 204);
    let (status, got) = get_bytes(&url).await;
    assert!(
        status == 200 && got == data,
        "the resumed upload, byte for byte"
    );
    assert_eq!(keys("data/").await, [format!("data/{object_id}")]);
    assert_eq!(
        keys("meta/").await,
        [
            format!("meta/{object_id}.fence"),
            format!("meta/{object_id}.info")
        ]
    );
    server.shutdown().await.expect("a clean stop");

    let sweeping = with_args(&["--expire-after", "2s", "--expire-sweep-interval", "1s"]);
    let sweeping: Vec<&str> = sweeping.iter().map(String::as_str).collect();
    let server = InProcessServer::with_args(&sweeping).await;
    let expiring = create(&server, 10).await;
    assert_eq!(patch(&expiring, 0, &b"abc"[..]).await.status(), 204);
    let expiring_object = id_of(&expiring).split_once('+').unwrap().0.to_owned();
    assert!(keys("meta/")
        .await
        .contains(&format!("meta/{expiring_object}.part")));
    let (keys, finished) = (
        &keys,
        &[
            format!("meta/{object_id}.fence"),
            format!("meta/{object_id}.info"),
        ],
    );
    eventually(
        "the sweeper removed the expired upload's .info and .part",
        1500,
        || async move { keys("meta/").await == finished },
    )
    .await;
    let url = format!("{}{}", server.files_url(), id_of(&url));
    assert_eq!(get_bytes(&url).await, (200, data), "finished uploads stay");
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
