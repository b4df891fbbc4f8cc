//! Choosing the store: the file store on `--upload-dir`, or the S3 store as
//! soon as `--s3-bucket` is given (only with the `s3` feature).

use tusd_filestore::FileStore;
use tusd_handler::StoreComposer;

use crate::cli::Config;
use crate::error::Error;

/// Puts the store the flags ask for into `composer` and returns how to name
/// it in the start-up log line. The S3 store checks its bucket first, so a
/// wrong endpoint, refused credentials or a missing bucket is one line at
/// start-up, not a 500 on the first upload.
pub async fn install(cli: &Config, composer: &mut StoreComposer) -> Result<String, Error> {
    match &cli.s3_bucket {
        Some(bucket) => install_s3(cli, bucket, composer).await,
        None => {
            FileStore::new(&cli.upload_dir)
                .map_err(|source| Error::UploadDir {
                    path: cli.upload_dir.clone(),
                    source,
                })?
                .with_durability(cli.durability)
                .with_io(cli.filestore_io)
                .use_in(composer);
            Ok(format!(
                "upload dir {}, durability {}, file I/O {}",
                cli.upload_dir.display(),
                cli.durability,
                cli.filestore_io
            ))
        }
    }
}

#[cfg(feature = "s3")]
async fn install_s3(
    cli: &Config,
    bucket: &str,
    composer: &mut StoreComposer,
) -> Result<String, Error> {
    use tusd_s3store::{S3ClientConfig, S3Store, S3StoreOptions};

    let client = S3ClientConfig {
        endpoint: cli.s3_endpoint.clone(),
        region: None,
        credentials: None,
        disable_content_hashes: cli.s3_disable_content_hashes,
        request_timeout: Some(std::time::Duration::from_secs(cli.s3_request_timeout)),
    };
    let mut options = S3StoreOptions::new(bucket);
    options.object_prefix = cli.s3_object_prefix.clone();
    options.metadata_object_prefix = cli.s3_metadata_object_prefix.clone();
    options.part_size = cli.s3_part_size;
    options.max_buffered_parts = cli.s3_max_buffered_parts;
    options.concurrent_part_uploads = cli.s3_concurrent_part_uploads;
    options.disable_content_hashes = cli.s3_disable_content_hashes;
    let store = S3Store::connect(&client, options)
        .await
        .map_err(|e| Error::Store(format!("--s3-bucket: {e}")))?;
    let description = format!(
        "S3 bucket {bucket} at {}, prefix {:?}, metadata prefix {:?}",
        cli.s3_endpoint.as_deref().unwrap_or("AWS"),
        store.prefix(),
        store.metadata_prefix()
    );
    store.use_in(composer);
    Ok(description)
}

#[cfg(not(feature = "s3"))]
async fn install_s3(_: &Config, _: &str, _: &mut StoreComposer) -> Result<String, Error> {
    Err(Error::Store(
        "--s3-bucket given, but this tusd-rs was built without the S3 store (build it with the `s3` feature, which is on by default)".to_owned(),
    ))
}
