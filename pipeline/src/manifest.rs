//! Manifests: the per-shard commit marker (`_markers/part-NNNNN.json`) and the stage manifest
//! (`_manifest.json`, written last) that record what went in and what came out, with hashes,
//! counters and the canonical config hash. Both are deterministic JSON: no clocks, no random
//! ids, keys in a fixed order.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Version of the manifest format.
pub const MANIFEST_VERSION: u32 = 1;

/// harman's version, and the git revision it was built from.
pub fn harman_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

pub fn git_revision() -> &'static str {
    option_env!("HARMAN_GIT_REVISION").unwrap_or("unknown")
}

/// JSON with object keys sorted recursively: the form that is hashed.
pub fn canonical(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<&String, serde_json::Value> =
                map.iter().map(|(k, v)| (k, canonical(v))).collect();
            serde_json::Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(canonical).collect())
        }
        other => other.clone(),
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hash of a stage's configuration: its kind, parameters, output table and schema version,
/// and the config hashes of the stages it reads.
pub fn config_hash(
    kind: &str,
    params: &serde_json::Value,
    table: &str,
    schema_version: u32,
    upstream: &[(String, String)],
) -> String {
    let doc = serde_json::json!({
        "kind": kind,
        "params": params,
        "table": table,
        "schema_version": schema_version,
        "upstream": upstream,
    });
    sha256_hex(canonical(&doc).to_string().as_bytes())
}

/// An input shard as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputEntry {
    pub url: String,
    pub size: u64,
    pub sha256: String,
    /// ETag from the object store, for remote stores (local ETags depend on inodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// An output file as recorded (path relative to the stage folder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputEntry {
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// The commit marker of one shard: written after its outputs are in place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardMarker {
    pub shard: usize,
    pub config_hash: String,
    /// What identifies the input without reading it (size + ETag/version), for resume checks.
    pub input_identity: String,
    pub input: InputEntry,
    pub output: OutputEntry,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejects: Option<OutputEntry>,
    pub counters: BTreeMap<String, u64>,
}

/// The commit marker of a global stage's whole-input step (dedup's clusters): written after
/// its tables are in place and before any shard runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlobalMarker {
    pub config_hash: String,
    /// Digest of every input's URL and identity.
    pub inputs_identity: String,
    pub tables: Vec<OutputEntry>,
    pub counters: BTreeMap<String, u64>,
}

/// The commit marker of a finishing stage's whole-output step (tokenize's training shards):
/// written after its files are in place, once every part is committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinishMarker {
    pub config_hash: String,
    /// Digest of every committed part's sha256, in order.
    pub parts_identity: String,
    pub files: Vec<OutputEntry>,
    pub counters: BTreeMap<String, u64>,
}

/// The manifest of a stage's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageManifest {
    pub manifest_version: u32,
    pub pipeline: String,
    pub stage: String,
    pub kind: String,
    pub table: String,
    pub schema_version: u32,
    pub config_hash: String,
    pub harman_version: String,
    pub git_revision: String,
    pub depends_on: Vec<String>,
    pub params: serde_json::Value,
    pub inputs: Vec<InputEntry>,
    pub outputs: Vec<OutputEntry>,
    pub rejects: Vec<OutputEntry>,
    /// Summary files the stage wrote next to the manifest (e.g. the filter funnel plot).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<OutputEntry>,
    pub counters: BTreeMap<String, u64>,
    /// rejected / (documents + rejected).
    pub rejected_fraction: f64,
    pub max_reject_fraction: f64,
    /// `ok`, or `rejects_exceeded` when the reject fraction is over the limit.
    pub status: String,
}

impl StageManifest {
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Rows of the stage's output.
    pub fn rows(&self) -> u64 {
        self.outputs.iter().map(|o| o.rows).sum()
    }

    /// Records rejected by the stage.
    pub fn rejected(&self) -> u64 {
        harman_stages::rejected_total(&self.counters)
    }
}

/// The fraction of rejected records given a stage's counters.
pub fn rejected_fraction(counters: &BTreeMap<String, u64>) -> f64 {
    let rejected = harman_stages::rejected_total(counters);
    let kept = counters.get("documents").copied().unwrap_or(0);
    if rejected == 0 {
        0.0
    } else {
        rejected as f64 / (rejected + kept) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_hash_ignores_key_order_but_not_values() {
        let a = serde_json::json!({"x": 1, "y": [1, 2]});
        let b: serde_json::Value = serde_json::from_str(r#"{"y": [1, 2], "x": 1}"#).unwrap();
        let c = serde_json::json!({"x": 2, "y": [1, 2]});
        let h = |p| config_hash("ingest", p, "documents", 1, &[]);
        assert_eq!(h(&a), h(&b));
        assert_ne!(h(&a), h(&c));
        assert_ne!(h(&a), config_hash("ingest", &a, "documents", 2, &[]));
    }
}
