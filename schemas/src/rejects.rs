//! The `rejects` table: one row per input record that could not be turned into a document,
//! with where it was and why, so nothing is dropped silently.

use crate::with_table_metadata;
use arrow::datatypes::{DataType, Field, Schema};
use std::fmt;

pub const REJECTS_TABLE: &str = "rejects";
/// Version 1: first release.
pub const REJECTS_VERSION: u32 = 1;

/// Why a record was rejected. The string forms are the values of the `reason` column and the
/// keys of the manifest's `rejected` counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectReason {
    /// A gzip member whose header, deflate stream or CRC is broken.
    CorruptGzip,
    /// A zstd frame that fails to decode.
    CorruptZstd,
    /// The input ended (or a gzip member ended) inside a record.
    TruncatedRecord,
    /// A WARC/ARC header that cannot be parsed (no version line, bad Content-Length, ...).
    MalformedHeader,
    /// An HTTP response block whose status line or headers cannot be parsed.
    MalformedHttp,
    /// Text that is not valid UTF-8 where UTF-8 is required.
    InvalidUtf8,
    /// A record, line or decoded body larger than the configured limit.
    OversizedRecord,
    /// A JSONL line that is not a JSON object.
    InvalidJson,
    /// The configured text field is missing or not a string.
    MissingField,
    /// Bytes between records that belong to no record (skipped while resynchronising).
    Garbage,
}

impl RejectReason {
    pub const ALL: [RejectReason; 10] = [
        RejectReason::CorruptGzip,
        RejectReason::CorruptZstd,
        RejectReason::TruncatedRecord,
        RejectReason::MalformedHeader,
        RejectReason::MalformedHttp,
        RejectReason::InvalidUtf8,
        RejectReason::OversizedRecord,
        RejectReason::InvalidJson,
        RejectReason::MissingField,
        RejectReason::Garbage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::CorruptGzip => "corrupt_gzip",
            RejectReason::CorruptZstd => "corrupt_zstd",
            RejectReason::TruncatedRecord => "truncated_record",
            RejectReason::MalformedHeader => "malformed_header",
            RejectReason::MalformedHttp => "malformed_http",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::OversizedRecord => "oversized_record",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::MissingField => "missing_field",
            RejectReason::Garbage => "garbage",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Columns of `rejects` v1: `stage`, `source_url`, `source_offset` (byte offset in the shard
/// where the bad record or member starts), `source_index` (record/line ordinal when known),
/// `reason` (see [`RejectReason`]) and `detail` (a human sentence: what was wrong).
pub fn rejects_schema() -> Schema {
    with_table_metadata(
        vec![
            Field::new("stage", DataType::Utf8, false),
            Field::new("source_url", DataType::Utf8, false),
            Field::new("source_offset", DataType::UInt64, false),
            Field::new("source_index", DataType::UInt64, true),
            Field::new("reason", DataType::Utf8, false),
            Field::new("detail", DataType::Utf8, false),
        ],
        REJECTS_TABLE,
        REJECTS_VERSION,
    )
}
