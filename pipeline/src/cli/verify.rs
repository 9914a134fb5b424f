//! `harman verify URL`: re-hash every output listed in a stage manifest (or in every stage
//! manifest of a run folder), compare sizes, hashes and Parquet row counts, and flag files in
//! the folder that the manifest does not list.

use super::Failure;
use crate::exec::{find_manifests, hash_object};
use crate::manifest::StageManifest;
use crate::store::{self, Location};
use futures::TryStreamExt;
use harman_stages::parquet_io::ObjectParquetReader;
use object_store::ObjectStoreExt;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use std::collections::BTreeSet;

pub async fn verify(url: &str) -> Result<(), Failure> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let loc = store::resolve(url, &cwd)?;
    let stages = find_manifests(&loc).await?;
    if stages.is_empty() {
        return Err(anyhow::anyhow!(
            "{}: no _manifest.json here or in its stage folders",
            loc.url
        )
        .into());
    }
    let mut problems = 0usize;
    for (dir, m) in &stages {
        problems += verify_stage(dir, m).await?;
    }
    if problems > 0 {
        return Err(anyhow::anyhow!("{problems} problem(s) found").into());
    }
    println!("all outputs match their manifests");
    Ok(())
}

async fn verify_stage(dir: &Location, m: &StageManifest) -> anyhow::Result<usize> {
    let mut problems = 0;
    let mut listed_files = BTreeSet::new();
    for out in m.outputs.iter().chain(&m.rejects).chain(&m.reports) {
        listed_files.insert(out.path.clone());
        let loc = dir.join(&out.path);
        let meta = match loc.store.head(&loc.path).await {
            Ok(meta) => meta,
            Err(e) => {
                println!("MISSING   {} ({e})", loc.url);
                problems += 1;
                continue;
            }
        };
        let sha = hash_object(&loc.store, &loc.path, &loc.url).await?;
        // Summary files (reports) are not tables: their row count is recorded as 0; a token
        // shard's is its token count, checked against its header and length.
        let rows = if out.path.ends_with(".bin") {
            match loc.store.get(&loc.path).await {
                Ok(got) => got
                    .bytes()
                    .await
                    .ok()
                    .and_then(|b| harman_tokenizer::shard::read_tokens(&b).ok())
                    .map(|t| t.len() as u64),
                Err(_) => None,
            }
        } else if out.path.ends_with(".parquet") {
            let reader = ObjectParquetReader::new(loc.store.clone(), loc.path.clone(), meta.size);
            match ParquetRecordBatchStreamBuilder::new(reader).await {
                Ok(b) => Some(b.metadata().file_metadata().num_rows() as u64),
                Err(_) => None,
            }
        } else {
            Some(0)
        };
        let mut wrong = Vec::new();
        if meta.size != out.bytes {
            wrong.push(format!("size {} ≠ {}", meta.size, out.bytes));
        }
        if sha != out.sha256 {
            wrong.push(format!(
                "sha256 {} ≠ {}",
                &sha[..12],
                &out.sha256[..out.sha256.len().min(12)]
            ));
        }
        if rows != Some(out.rows) {
            wrong.push(format!(
                "rows {} ≠ {}",
                rows.map_or("unreadable".into(), |r| r.to_string()),
                out.rows
            ));
        }
        if wrong.is_empty() {
            println!("OK        {}", loc.url);
        } else {
            println!("MISMATCH  {}: {}", loc.url, wrong.join(", "));
            problems += 1;
        }
    }
    let present: Vec<object_store::ObjectMeta> =
        dir.store.list(Some(&dir.path)).try_collect().await?;
    for meta in present {
        let key = meta.location.as_ref();
        let rel = key
            .strip_prefix(dir.path.as_ref())
            .unwrap_or(key)
            .trim_start_matches('/');
        let data_file = rel.ends_with(".parquet") && !rel.starts_with('_');
        if data_file && !listed_files.contains(rel) {
            println!("UNLISTED  {}/{rel}", dir.url);
            problems += 1;
        }
    }
    Ok(problems)
}
