//! The objects the S3 store leaves in the bucket (tusd's layout), resuming
//! an upload from another store instance, server-side concatenation, and
//! the start-up errors, all on a real Garage.

mod common;

use base64::Engine as _;
use bytes::Bytes;
use futures::{stream, StreamExt};
use tusd_core::{Concater, DataStore, NewUpload, UploadId, UploadInfo};
use tusd_s3store::{ConnectError, S3Store, S3StoreOptions, MIN_PART_SIZE};
use tusd_testsupport::GarageServer;

use common::{
    client_for, config_for, create_sized, keys_under, part_sizes, pattern, read_all, store_for,
};

const MIB: usize = 1024 * 1024;

fn body(bytes: &[u8], chunk: usize) -> tusd_core::ChunkStream {
    let chunks: Vec<std::io::Result<Bytes>> = bytes
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(chunks).boxed()
}

fn object_id(info: &UploadInfo) -> &str {
    info.id
        .split_once('+')
        .expect("{object id}+{multipart id}")
        .0
}

/// An upload cut mid-way keeps a full part in the multipart upload and the
/// small rest in `.part`; another store instance (a restarted or other
/// server) finds the offset from ListParts + `.part` and finishes it; the
/// finished upload is the object and its `.info`, nothing else.
#[tokio::test]
async fn layout_while_a_tail_waits_then_resume_elsewhere_and_finish() {
    let garage = GarageServer::start().await;
    let client = client_for(&garage).await;
    let first = store_for(&garage, "up").await;
    let data = pattern(13 * MIB + 123, 7);
    let info = first
        .create_upload(NewUpload {
            size: Some(data.len() as u64),
            metadata: [("filename".to_owned(), "Menü.bin".to_owned())].into(),
            ..NewUpload::default()
        })
        .await
        .unwrap();
    let id = UploadId::parse(&info.id).unwrap();
    let object = format!("up/{}", object_id(&info));
    assert_eq!(info.storage["Type"], "s3store");
    assert_eq!(info.storage["Key"], object);
    assert_eq!(
        keys_under(&client, garage.bucket(), "up/").await,
        [format!("{object}.info")]
    );

    // 5 MiB + 1 MiB + 5: one part of the 5 MiB part size, the rest waits.
    let cut = 6 * MIB + 5;
    let mut options = S3StoreOptions::new(garage.bucket());
    options.object_prefix = "up".to_owned();
    options.part_size = MIN_PART_SIZE;
    let small_parts = S3Store::new(client.clone(), options);
    let written = small_parts
        .write_chunk(&id, 0, None, body(&data[..cut], 64 * 1024))
        .await
        .unwrap();
    assert_eq!(written, cut as u64);
    assert_eq!(
        keys_under(&client, garage.bucket(), "up/").await,
        [format!("{object}.info"), format!("{object}.part")]
    );
    let head = client
        .head_object()
        .bucket(garage.bucket())
        .key(format!("{object}.part"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some((cut - 5 * MIB) as i64));
    let parts = client
        .list_parts()
        .bucket(garage.bucket())
        .key(&object)
        .upload_id(id.as_str().split_once('+').unwrap().1)
        .send()
        .await
        .unwrap();
    let sizes: Vec<i64> = parts.parts().iter().filter_map(|p| p.size()).collect();
    assert_eq!(sizes, [5 * MIB as i64]);
    // The .info is tusd's JSON, metadata unchanged.
    let json = client
        .get_object()
        .bucket(garage.bucket())
        .key(format!("{object}.info"))
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    let recorded: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(recorded["ID"], info.id.as_str());
    assert_eq!(recorded["Size"], data.len() as u64);
    assert_eq!(recorded["MetaData"]["filename"], "Menü.bin");
    assert_eq!(recorded["Storage"]["Type"], "s3store");

    // Another instance, with its own client, resumes.
    let second = store_for(&garage, "up").await;
    let resumed = second.get_info(&id).await.unwrap();
    assert_eq!(resumed.offset, cut as u64);
    let written = second
        .write_chunk(&id, cut as u64, None, body(&data[cut..], 100_000))
        .await
        .unwrap();
    assert_eq!(written, (data.len() - cut) as u64);
    let info = second.get_info(&id).await.unwrap();
    assert!(info.is_complete(), "{info:?}");
    second.finish_upload(&id, None).await.unwrap();
    assert_eq!(
        keys_under(&client, garage.bucket(), "up/").await,
        [object.clone(), format!("{object}.info")]
    );
    let finished = client
        .head_object()
        .bucket(garage.bucket())
        .key(&object)
        .send()
        .await
        .unwrap();
    assert_eq!(finished.content_length(), Some(data.len() as i64));
    assert_eq!(read_all(&first, &id, data.len() as u64).await, data);
    assert_eq!(first.get_info(&id).await.unwrap().offset, data.len() as u64);
    // Finishing again (a retried request) changes nothing.
    first.finish_upload(&id, None).await.unwrap();
}

/// Partials of at least 5 MiB are joined inside S3 (UploadPartCopy); the
/// final object holds their bytes in order and the partials stay.
#[tokio::test]
async fn concatenation_of_large_partials_copies_parts_server_side() {
    let garage = GarageServer::start().await;
    let store = store_for(&garage, "").await;
    let mut partials = Vec::new();
    let mut want = Vec::new();
    for seed in [1u8, 2] {
        let data = pattern(5 * MIB + 17 * seed as usize, seed);
        let info = store
            .create_upload(NewUpload {
                size: Some(data.len() as u64),
                is_partial: true,
                ..NewUpload::default()
            })
            .await
            .unwrap();
        let id = UploadId::parse(&info.id).unwrap();
        store
            .write_chunk(&id, 0, None, body(&data, 256 * 1024))
            .await
            .unwrap();
        store.finish_upload(&id, None).await.unwrap();
        want.extend_from_slice(&data);
        partials.push(id);
    }
    let info = store
        .create_upload(NewUpload {
            size: None,
            is_final: true,
            partial_uploads: partials.clone(),
            ..NewUpload::default()
        })
        .await
        .unwrap();
    let id = UploadId::parse(&info.id).unwrap();
    store.concat(&id, &partials, None).await.unwrap();
    let info = store.get_info(&id).await.unwrap();
    assert!(
        info.is_complete() && info.size == want.len() as u64,
        "{info:?}"
    );
    store.finish_upload(&id, None).await.unwrap();
    assert!(read_all(&store, &id, want.len() as u64).await == want);
    let first = read_all(&store, &partials[0], 5 * MIB as u64 + 17).await;
    assert!(first == want[..5 * MIB + 17]);
}

/// Wrong credentials, a missing bucket and an endpoint nobody serves each
/// give their own one-line error at start-up.
#[tokio::test]
async fn start_up_errors_are_clear() {
    let garage = GarageServer::start().await;
    let mut config = config_for(&garage);
    config.credentials = Some((
        garage.access_key_id().to_owned(),
        "0".repeat(64), // the wrong secret
    ));
    let err = S3Store::connect(&config, S3StoreOptions::new(garage.bucket()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ConnectError::CredentialsRefused { .. }),
        "{err}"
    );
    let line = err.to_string();
    assert!(
        !line.contains('\n') && line.contains("credentials"),
        "{line}"
    );

    let err = S3Store::connect(&config_for(&garage), S3StoreOptions::new("no-such-bucket"))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::NoSuchBucket { .. }), "{err}");
    assert!(err.to_string().contains("no-such-bucket"), "{err}");

    let mut config = config_for(&garage);
    let port = tusd_testsupport::ports::free_port();
    config.endpoint = Some(format!("http://127.0.0.1:{port}"));
    let err = S3Store::connect(&config, S3StoreOptions::new(garage.bucket()))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
}

/// One body of many parts, sent with at most 2 parts buffered and 2 in
/// flight, without content hashes (`--s3-disable-content-hashes`): every
/// part but the last is the part size and the object is the body.
#[tokio::test]
async fn many_parts_through_small_buffers_without_content_hashes() {
    let garage = GarageServer::start().await;
    let client = client_for(&garage).await;
    let mut config = config_for(&garage);
    config.disable_content_hashes = true;
    let mut options = S3StoreOptions::new(garage.bucket());
    options.part_size = MIN_PART_SIZE;
    options.max_buffered_parts = 2;
    options.concurrent_part_uploads = 2;
    let store = S3Store::connect(&config, options).await.unwrap();
    let data = pattern(23 * MIB + 3, 9);
    let (info, id) = create_sized(&store, data.len()).await;
    let written = store
        .write_chunk(&id, 0, None, body(&data, 64 * 1024))
        .await
        .unwrap();
    assert_eq!(written, data.len() as u64);
    let sizes = part_sizes(&client, garage.bucket(), "", &info.id).await;
    let part = MIN_PART_SIZE as i64;
    assert_eq!(sizes, [part, part, part, part, 3 * MIB as i64 + 3]);
    store.finish_upload(&id, None).await.unwrap();
    assert!(read_all(&store, &id, data.len() as u64).await == data);
}

/// With content hashes on, each part is sent with the CRC32 the store
/// computed while writing it to disk, and S3 refuses a part whose bytes do
/// not match the CRC32 it is sent with: so the parts S3 took carried the
/// right one (batches and parts not lined up with the body's chunks).
#[tokio::test]
async fn parts_carry_the_crc32_of_their_bytes() {
    let garage = GarageServer::start().await;
    let client = client_for(&garage).await;
    let mut options = S3StoreOptions::new(garage.bucket());
    options.part_size = MIN_PART_SIZE;
    let store = S3Store::connect(&config_for(&garage), options)
        .await
        .unwrap();
    let data = pattern(11 * MIB + 5, 3);
    let (_, id) = create_sized(&store, data.len()).await;
    let written = store
        .write_chunk(&id, 0, None, body(&data, 37 * 1024 + 1))
        .await
        .unwrap();
    assert_eq!(written, data.len() as u64);
    let crc32 = |bytes: &[u8]| {
        let value = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32IsoHdlc, bytes) as u32;
        base64::engine::general_purpose::STANDARD.encode(value.to_be_bytes())
    };
    // Elsewhere in the bucket: on Garage a refused part still takes its
    // number's place in the multipart upload.
    let refused = client
        .put_object()
        .bucket(garage.bucket())
        .key("crc-check")
        .checksum_crc32(crc32(&data[1..MIB + 1]))
        .body(Bytes::copy_from_slice(&data[..MIB]).into())
        .send()
        .await;
    assert!(
        refused.is_err(),
        "bytes whose CRC32 does not match are refused"
    );
    store.finish_upload(&id, None).await.unwrap();
    assert!(read_all(&store, &id, data.len() as u64).await == data);
}
