//! What a stage observed while processing one shard: counters (read, kept, skipped and
//! rejected by reason, bytes) and the rejected records themselves, for the manifest and the
//! `rejects` table.

use harman_schemas::RejectReason;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

/// Rejects kept per shard for the `rejects` table; beyond this only the counters grow.
pub const MAX_REJECT_ROWS: usize = 100_000;

/// Total of the `rejected.<reason>` counters.
pub fn rejected_total(counters: &BTreeMap<String, u64>) -> u64 {
    counters
        .iter()
        .filter(|(k, _)| k.starts_with("rejected."))
        .map(|(_, v)| v)
        .sum()
}

/// One rejected record.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectRow {
    pub offset: u64,
    pub index: Option<u64>,
    pub reason: RejectReason,
    pub detail: String,
}

/// The report's content.
#[derive(Debug, Default, Clone)]
pub struct ReportData {
    pub counters: BTreeMap<String, u64>,
    pub rejects: Vec<RejectRow>,
    /// sha256 of the input shard, when the stage read all of it.
    pub input_sha256: Option<String>,
}

impl ReportData {
    pub fn add(&mut self, counter: &str, n: u64) {
        match self.counters.get_mut(counter) {
            Some(v) => *v += n,
            None => {
                self.counters.insert(counter.to_string(), n);
            }
        }
    }

    pub fn reject(&mut self, row: RejectRow) {
        self.add(&format!("rejected.{}", row.reason), 1);
        self.reject_row_only(row);
    }

    /// Merge another report into this one (counters add up, rejects append).
    pub fn merge(&mut self, other: ReportData) {
        for (k, v) in other.counters {
            self.add(&k, v);
        }
        for r in other.rejects {
            self.reject_row_only(r);
        }
        if other.input_sha256.is_some() {
            self.input_sha256 = other.input_sha256;
        }
    }

    /// Keep a reject row whose `rejected.*` counter is already counted.
    fn reject_row_only(&mut self, row: RejectRow) {
        if self.rejects.len() < MAX_REJECT_ROWS {
            self.rejects.push(row);
        } else {
            self.add("rejects_not_listed", 1);
        }
    }

    /// Set `records_read`: every record met in the shard — kept, skipped by type, or rejected.
    pub fn count_records_read(&mut self) {
        let read: u64 = self
            .counters
            .iter()
            .filter(|(k, _)| {
                *k == "documents" || k.starts_with("skipped.") || k.starts_with("rejected.")
            })
            .map(|(_, v)| v)
            .sum();
        self.counters.insert("records_read".into(), read);
    }

    /// Total of the `rejected.*` counters.
    pub fn rejected(&self) -> u64 {
        rejected_total(&self.counters)
    }
}

/// A shard's report, shared between the reader thread and the executor.
#[derive(Debug, Default)]
pub struct ShardReport {
    inner: Mutex<ReportData>,
    /// Input bytes read so far, for progress bars.
    pub bytes_read: Arc<AtomicU64>,
}

impl ShardReport {
    pub fn new() -> Self {
        Self::default()
    }

    /// Fold a reader's local tallies in (readers count locally and merge once, so the hot
    /// loop takes no lock).
    pub fn merge(&self, data: ReportData) {
        self.lock().merge(data);
    }

    pub fn snapshot(&self) -> ReportData {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReportData> {
        // A poisoned lock only means a reader panicked mid-update; the counts stay usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
