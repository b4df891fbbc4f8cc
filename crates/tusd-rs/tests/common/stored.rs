//! What a test server's store holds, on whichever store the tests run on
//! (`TUSD_TEST_STORE`, see `tusd_testsupport::test_store`): the files of
//! its upload directory, or the objects under its prefix in the bucket.
//! The protocol tests assert through these, so they hold on both stores.

use std::path::Path;

use tusd_testsupport::{s3_place_for, Server};

/// The names the store holds for the server of `dir`, sorted: file names,
/// or object keys without the server's prefix.
pub fn stored_names(dir: &Path) -> Vec<String> {
    match s3_place_for(dir) {
        None => super::files_in(dir),
        Some(place) => s3::names(place),
    }
}

/// The uploads the store holds (by their `.info`), as storage names (see
/// [`storage_name`]), sorted.
pub fn uploads_in(dir: &Path) -> Vec<String> {
    stored_names(dir)
        .into_iter()
        .filter_map(|name| name.strip_suffix(".info").map(str::to_owned))
        .collect()
}

/// The part of an upload id its stored names start with: the id on the
/// file store, the object id (before `+`) on S3.
pub fn storage_name(id: &str) -> &str {
    id.split_once('+').map_or(id, |(object, _)| object)
}

/// The bytes the store holds for the upload at `url`: the data file's
/// length, or on S3 the parts listed plus `.part` (the object's size once
/// finished); 0 when there is nothing yet.
pub fn data_len(server: &impl Server, url: &str) -> u64 {
    let id = super::id_of(url);
    match s3_place_for(server.upload_dir()) {
        None => std::fs::metadata(server.upload_dir().join(id)).map_or(0, |m| m.len()),
        Some(place) => s3::stored_len(place, id.to_owned()),
    }
}

/// The keys under `place`'s prefix in its bucket, without the prefix,
/// sorted (for tests that look at a bucket of their own).
pub fn object_names(place: tusd_testsupport::S3Place) -> Vec<String> {
    s3::names(place)
}

#[cfg(feature = "s3")]
mod s3 {
    use tusd_s3store::aws_sdk_s3::Client;
    use tusd_s3store::{s3_client, S3ClientConfig};
    use tusd_testsupport::S3Place;

    /// Runs `f` on a runtime of its own: the helpers are called from sync
    /// code inside the tests' async functions.
    fn blocking<T: Send + 'static>(
        place: S3Place,
        f: impl FnOnce(
                Client,
                S3Place,
            ) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>
            + Send
            + 'static,
    ) -> T {
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let client = s3_client(&S3ClientConfig {
                        endpoint: Some(place.endpoint.clone()),
                        ..S3ClientConfig::default()
                    })
                    .await;
                    f(client, place).await
                })
        })
        .join()
        .expect("an S3 look-up panicked")
    }

    pub fn names(place: S3Place) -> Vec<String> {
        blocking(place, |client, place| {
            Box::pin(async move {
                let listed = client
                    .list_objects_v2()
                    .bucket(&place.bucket)
                    .prefix(&place.prefix)
                    .send()
                    .await
                    .expect("ListObjectsV2");
                let mut names: Vec<String> = listed
                    .contents()
                    .iter()
                    .filter_map(|o| o.key()?.strip_prefix(&place.prefix).map(str::to_owned))
                    .collect();
                names.sort();
                names
            })
        })
    }

    pub fn stored_len(place: S3Place, id: String) -> u64 {
        blocking(place, move |client, place| {
            Box::pin(async move {
                let Some((object, multipart)) = id.split_once('+') else {
                    return 0;
                };
                let key = format!("{}{object}", place.prefix);
                let size = |key: String| {
                    let client = client.clone();
                    let bucket = place.bucket.clone();
                    async move {
                        client
                            .head_object()
                            .bucket(bucket)
                            .key(key)
                            .send()
                            .await
                            .ok()
                            .and_then(|h| h.content_length())
                            .unwrap_or(0) as u64
                    }
                };
                let parts = client
                    .list_parts()
                    .bucket(&place.bucket)
                    .key(&key)
                    .upload_id(multipart)
                    .send()
                    .await;
                match parts {
                    Ok(parts) => {
                        let in_parts: i64 = parts.parts().iter().filter_map(|p| p.size()).sum();
                        in_parts as u64 + size(format!("{key}.part")).await
                    }
                    // No multipart upload: completed (the object) or gone.
                    Err(_) => size(key).await,
                }
            })
        })
    }
}

#[cfg(not(feature = "s3"))]
mod s3 {
    use tusd_testsupport::S3Place;

    pub fn names(_: S3Place) -> Vec<String> {
        panic!("TUSD_TEST_STORE=s3 needs tusd-rs's `s3` feature")
    }

    pub fn stored_len(_: S3Place, _: String) -> u64 {
        panic!("TUSD_TEST_STORE=s3 needs tusd-rs's `s3` feature")
    }
}
