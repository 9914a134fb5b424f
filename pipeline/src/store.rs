//! Object storage: turning a path or URL (`file://`, `s3://`, `gs://`, `az://`, `http(s)://`,
//! `memory://`) into an `object_store` with credentials and endpoints from the standard
//! environment, retries with backoff, and a bound on concurrent requests; listing inputs
//! by glob; and URLs with secrets removed for manifests and logs.

use futures::TryStreamExt;
use object_store::limit::LimitStore;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, RetryConfig};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use url::Url;

/// Concurrent requests allowed per store.
const MAX_REQUESTS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{url}: {message}")]
    Url { url: String, message: String },
    #[error("{url}: {source}")]
    Store {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("input {url} matched no files")]
    NoMatch { url: String },
}

/// A resolved location: the store, the key prefix inside it, and how to print it.
#[derive(Debug, Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    /// Key of this location inside the store.
    pub path: Path,
    /// The location as a URL without credentials (`file:///abs/dir`, `s3://bucket/prefix`).
    pub url: String,
    /// For local files: the directory or file on this machine.
    pub local: Option<PathBuf>,
}

impl Location {
    /// A location below this one.
    pub fn join(&self, rel: &str) -> Location {
        let mut path = self.path.clone();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            path = path.clone().join(part);
        }
        Location {
            store: self.store.clone(),
            path,
            url: format!("{}/{}", self.url.trim_end_matches('/'), rel),
            local: self.local.as_ref().map(|l| l.join(rel)),
        }
    }

    /// The URL of a key of this location's store.
    pub fn url_of(&self, key: &Path) -> String {
        let base = self.url.trim_end_matches('/');
        let mine = self.path.as_ref();
        let rel = key.as_ref().strip_prefix(mine).unwrap_or(key.as_ref());
        format!("{}/{}", base, rel.trim_start_matches('/'))
    }

    /// The local file of a key, for `file://` locations.
    pub fn local_of(&self, key: &Path) -> Option<PathBuf> {
        self.local
            .as_ref()
            .map(|_| PathBuf::from(format!("/{}", key.as_ref())))
    }
}

/// Remove credentials (user info) and query strings (signatures, tokens) from a URL.
pub fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.scheme() != "file" => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        _ => url.to_string(),
    }
}

fn retry() -> RetryConfig {
    RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: 10,
        retry_timeout: Duration::from_secs(180),
    }
}

fn memory_store(bucket: &str) -> Arc<dyn ObjectStore> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    let stores = STORES.get_or_init(Default::default);
    let mut map = stores.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(bucket.to_string())
        .or_insert_with(|| Arc::new(InMemory::new()))
        .clone()
}

fn limit<T: ObjectStore>(store: T) -> Arc<dyn ObjectStore> {
    Arc::new(LimitStore::new(store, MAX_REQUESTS))
}

/// Is this a URL (as opposed to a local path)?
pub fn is_url(s: &str) -> bool {
    s.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-')
    })
}

/// Resolve a path or URL. Relative paths are taken relative to `base_dir`.
pub fn resolve(target: &str, base_dir: &std::path::Path) -> Result<Location, StoreError> {
    let err = |message: String| StoreError::Url {
        url: redact(target),
        message,
    };
    if !is_url(target) || target.starts_with("file://") {
        let raw = target.strip_prefix("file://").unwrap_or(target);
        let p = std::path::Path::new(raw);
        let abs = if p.is_absolute() {
            p.to_path_buf()
        } else {
            base_dir.join(p)
        };
        let abs = std::path::absolute(&abs).map_err(|e| err(e.to_string()))?;
        let abs = normalize(&abs);
        let key = Path::from_iter(abs.components().filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        }));
        let store = object_store::local::LocalFileSystem::new();
        return Ok(Location {
            store: Arc::new(store),
            path: key,
            url: format!("file://{}", abs.display()),
            local: Some(abs),
        });
    }
    let url = Url::parse(target).map_err(|e| err(format!("not a valid URL: {e}")))?;
    let key = Path::from_url_path(url.path()).map_err(|e| err(e.to_string()))?;
    let host = url.host_str().unwrap_or_default().to_string();
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => limit(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(target)
                .with_retry(retry())
                .build()
                .map_err(|e| err(e.to_string()))?,
        ),
        "gs" => limit(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(target)
                .with_retry(retry())
                .build()
                .map_err(|e| err(e.to_string()))?,
        ),
        "az" | "abfs" | "abfss" | "adl" | "azure" => limit(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(target)
                .with_retry(retry())
                .build()
                .map_err(|e| err(e.to_string()))?,
        ),
        "http" | "https" => {
            let mut root = url.clone();
            root.set_path("/");
            root.set_query(None);
            limit(
                object_store::http::HttpBuilder::new()
                    .with_url(root.as_str())
                    .with_retry(retry())
                    .build()
                    .map_err(|e| err(e.to_string()))?,
            )
        }
        "memory" => memory_store(&host),
        other => {
            return Err(err(format!(
                "unsupported scheme `{other}`; use a local path, file://, s3://, gs://, az://, http(s):// or memory://"
            )))
        }
    };
    let shown = redact(target);
    Ok(Location {
        store,
        path: key,
        url: shown.trim_end_matches('/').to_string(),
        local: None,
    })
}

/// Lexically normalise `a/./b/../c` (paths may not exist yet).
fn normalize(p: &std::path::Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// One input file found for a stage.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub url: String,
    pub store: Arc<dyn ObjectStore>,
    pub meta: ObjectMeta,
    pub local: Option<PathBuf>,
}

const GLOB_CHARS: [char; 4] = ['*', '?', '[', '{'];

/// Files matching a path, URL or glob, sorted by URL. A pattern without glob characters
/// names one file or a folder (all files under it).
pub async fn list_inputs(
    pattern: &str,
    base_dir: &std::path::Path,
) -> Result<Vec<InputFile>, StoreError> {
    let glob_at = pattern.find(GLOB_CHARS);
    let (literal, glob) = match glob_at {
        Some(i) => {
            let cut = pattern[..i].rfind('/').map(|j| j + 1).unwrap_or(0);
            (&pattern[..cut], Some(&pattern[cut..]))
        }
        None => (pattern, None),
    };
    let literal = if literal.is_empty() { "." } else { literal };
    let root = resolve(literal, base_dir)?;
    let store_err = |source| StoreError::Store {
        url: root.url.clone(),
        source,
    };
    let mut found: Vec<ObjectMeta> = Vec::new();
    match glob {
        None => {
            use object_store::ObjectStoreExt;
            match root.store.head(&root.path).await {
                Ok(meta) => found.push(meta),
                Err(object_store::Error::NotFound { .. }) => {
                    found = root
                        .store
                        .list(Some(&root.path))
                        .try_collect()
                        .await
                        .map_err(store_err)?;
                }
                Err(e) => return Err(store_err(e)),
            }
        }
        Some(glob) => {
            let matcher = globset::GlobBuilder::new(glob)
                .literal_separator(true)
                .build()
                .map_err(|e| StoreError::Url {
                    url: pattern.to_string(),
                    message: format!("bad glob: {e}"),
                })?
                .compile_matcher();
            let prefix = root.path.as_ref().to_string();
            let all: Vec<ObjectMeta> = root
                .store
                .list(Some(&root.path))
                .try_collect()
                .await
                .map_err(store_err)?;
            for meta in all {
                let key = meta.location.as_ref();
                let rel = key
                    .strip_prefix(prefix.as_str())
                    .unwrap_or(key)
                    .trim_start_matches('/');
                if matcher.is_match(rel) {
                    found.push(meta);
                }
            }
        }
    }
    // Hidden files and our own bookkeeping are never inputs.
    found.retain(|m| {
        m.location
            .filename()
            .is_some_and(|f| !f.starts_with('.') && !f.starts_with('_'))
    });
    if found.is_empty() {
        return Err(StoreError::NoMatch {
            url: redact(pattern),
        });
    }
    let mut files: Vec<InputFile> = found
        .into_iter()
        .map(|meta| InputFile {
            url: if glob.is_none() && meta.location == root.path {
                root.url.clone()
            } else {
                root.url_of(&meta.location)
            },
            store: root.store.clone(),
            local: root.local_of(&meta.location),
            meta,
        })
        .collect();
    files.sort_by(|a, b| a.url.cmp(&b.url));
    files.dedup_by(|a, b| a.url == b.url);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_survive_redaction() {
        assert_eq!(
            redact("https://user:pass@host/a.warc?X-Amz-Signature=abc"),
            "https://host/a.warc"
        );
        assert_eq!(redact("s3://bucket/key"), "s3://bucket/key");
    }

    #[test]
    fn local_paths_resolve_against_the_base() {
        let loc = resolve("data/x.warc.gz", std::path::Path::new("/tmp/cfg")).unwrap();
        assert_eq!(loc.url, "file:///tmp/cfg/data/x.warc.gz");
        let loc = resolve("../out", std::path::Path::new("/tmp/cfg")).unwrap();
        assert_eq!(loc.url, "file:///tmp/out");
        assert!(is_url("s3://b/k") && !is_url("/a/b") && !is_url("a:b"));
    }

    #[tokio::test]
    async fn globs_match_within_folders() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "a/1.warc.gz",
            "a/2.warc.gz",
            "b/3.warc.gz",
            "a/skip.txt",
            "a/_manifest.json",
        ] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let base = dir.path();
        let got = list_inputs("*/*.warc.gz", base).await.unwrap();
        let names: Vec<String> = got
            .iter()
            .map(|f| f.url.rsplit('/').next().unwrap().to_string())
            .collect();
        assert_eq!(names, ["1.warc.gz", "2.warc.gz", "3.warc.gz"]);
        assert!(got[0].local.as_ref().unwrap().exists());
        let got = list_inputs("a", base).await.unwrap();
        assert_eq!(
            got.len(),
            3,
            "a folder lists its files, not the bookkeeping"
        );
        assert!(matches!(
            list_inputs("*.nothing", base).await,
            Err(StoreError::NoMatch { .. })
        ));
    }
}
