//! Upload of the finished MP4 to an object store (`object_store`): a local directory by
//! default, GCS or S3 by URL in production. The key is per attempt
//! (`video-jobs/{job}/attempts/{epoch}/final.mp4`): only the fenced finalize points the job
//! at it, so an upload by a worker that lost its lease is never the job's result. The
//! captions go beside it ([`captions_key`]: `…/attempts/{epoch}/captions.vtt`).

use std::path::Path;
use std::sync::Arc;

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, WriteMultipart};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::StageError;

/// The key of a film's captions: `captions.vtt` beside the film's key.
pub fn captions_key(artifact_key: &str) -> String {
    match artifact_key.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/captions.vtt"),
        None => "captions.vtt".to_owned(),
    }
}

/// Size of each uploaded part.
const CHUNK: usize = 8 << 20;

/// Why an object-store URL cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreUrlError {
    /// Nothing was given.
    #[error("empty URL")]
    Empty,
    /// The local directory cannot be created or used.
    #[error("{path}: {source}")]
    Directory {
        /// The directory.
        path: String,
        /// What the filesystem said.
        #[source]
        source: std::io::Error,
    },
    /// The local store refused the directory.
    #[error("{path}: {source}")]
    Local {
        /// The directory.
        path: String,
        /// What the store said.
        #[source]
        source: object_store::Error,
    },
    /// The URL does not parse.
    #[error("{url}: {source}")]
    Url {
        /// The URL.
        url: String,
        /// Why it does not parse.
        #[source]
        source: url::ParseError,
    },
    /// The cloud store cannot be configured from the URL and the environment.
    #[error("{url}: {source}")]
    Cloud {
        /// The URL.
        url: String,
        /// What the store's builder said.
        #[source]
        source: object_store::Error,
    },
    /// Not a path, `file://`, `gs://` or `s3://`.
    #[error("unsupported scheme {0:?}: use a path, file://, gs:// or s3://")]
    Scheme(String),
}

/// Opens the store named by `url`: a path or `file:///…` (a local directory, created if
/// missing), `gs://bucket/prefix` or `s3://bucket/prefix` (credentials from the usual
/// `GOOGLE_*` / `AWS_*` environment).
pub fn store_from_url(url: &str) -> Result<Arc<dyn ObjectStore>, StoreUrlError> {
    let url = url.trim();
    if url.is_empty() {
        return Err(StoreUrlError::Empty);
    }
    let scheme = url.split_once("://").map(|(s, _)| s);
    match scheme {
        None | Some("file") => {
            let path = url.strip_prefix("file://").unwrap_or(url);
            std::fs::create_dir_all(path).map_err(|source| StoreUrlError::Directory {
                path: path.to_owned(),
                source,
            })?;
            let store =
                object_store::local::LocalFileSystem::new_with_prefix(path).map_err(|source| {
                    StoreUrlError::Local {
                        path: path.to_owned(),
                        source,
                    }
                })?;
            Ok(Arc::new(store))
        }
        Some("gs") | Some("s3") => {
            let parsed = url::Url::parse(url).map_err(|source| StoreUrlError::Url {
                url: url.to_owned(),
                source,
            })?;
            let prefix = parsed.path().trim_matches('/').to_owned();
            let cloud = |source| StoreUrlError::Cloud {
                url: url.to_owned(),
                source,
            };
            let store: Arc<dyn ObjectStore> = if scheme == Some("gs") {
                Arc::new(
                    object_store::gcp::GoogleCloudStorageBuilder::from_env()
                        .with_url(url)
                        .build()
                        .map_err(cloud)?,
                )
            } else {
                Arc::new(
                    object_store::aws::AmazonS3Builder::from_env()
                        .with_url(url)
                        .build()
                        .map_err(cloud)?,
                )
            };
            Ok(if prefix.is_empty() {
                store
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
            })
        }
        Some(other) => Err(StoreUrlError::Scheme(other.to_owned())),
    }
}

fn unavailable(e: impl std::fmt::Display) -> StageError {
    StageError::retryable("store_unavailable", format!("upload failed: {e}"))
}

/// Streams `file` to `key` in parts; aborts the upload on error or cancel.
pub async fn upload(
    store: &Arc<dyn ObjectStore>,
    key: &str,
    file: &Path,
    cancel: &CancellationToken,
) -> Result<(), StageError> {
    let path = StorePath::parse(key)
        .map_err(|e| StageError::permanent("internal", format!("artifact key {key}: {e}")))?;
    let mut source = tokio::fs::File::open(file)
        .await
        .map_err(|e| StageError::retryable("io_failed", format!("{}: {e}", file.display())))?;
    let upload = store.put_multipart(&path).await.map_err(unavailable)?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK);
    let mut buf = vec![0u8; 1 << 20];
    let copy = async {
        loop {
            let n = source.read(&mut buf).await.map_err(|e| {
                StageError::retryable("io_failed", format!("{}: {e}", file.display()))
            })?;
            if n == 0 {
                break;
            }
            writer.wait_for_capacity(4).await.map_err(unavailable)?;
            writer.write(&buf[..n]);
        }
        Ok::<(), StageError>(())
    };
    let copied = tokio::select! {
        r = copy => r,
        () = cancel.cancelled() => Err(StageError::Canceled),
    };
    match copied {
        Ok(()) => {
            writer.finish().await.map_err(unavailable)?;
            Ok(())
        }
        Err(e) => {
            let _ = writer.abort().await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_directory_store_round_trips_and_bad_urls_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_from_url(dir.path().join("artifacts").to_str().unwrap()).unwrap();
        let src = dir.path().join("x.bin");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        tokio::fs::write(&src, &bytes).await.unwrap();
        upload(
            &store,
            "video-jobs/j/attempts/1/final.mp4",
            &src,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        let got = store
            .get(&StorePath::from("video-jobs/j/attempts/1/final.mp4"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(got.as_ref(), bytes.as_slice());
        assert!(
            dir.path()
                .join("artifacts/video-jobs/j/attempts/1/final.mp4")
                .is_file()
        );
        assert!(store_from_url("ftp://x/y").is_err());
        assert!(store_from_url("").is_err());
    }
}
