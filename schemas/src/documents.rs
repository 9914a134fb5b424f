//! The `documents` table: one row per ingested record (a WARC record, a JSONL line or a
//! Parquet row), with its stable id, where it came from, and its payload.

use crate::with_table_metadata;
use arrow::datatypes::{DataType, Field, Schema};

pub const DOCUMENTS_TABLE: &str = "documents";
/// Version 1: first release.
pub const DOCUMENTS_VERSION: u32 = 1;

/// Columns of `documents` v1.
///
/// | column | meaning |
/// |---|---|
/// | `id` | 32 hex chars: sha256(source_url ‖ 0 ‖ source_index) truncated to 128 bits; the same on every rerun |
/// | `source_url` | URL of the input shard (credentials and query strings removed) |
/// | `source_offset` | byte offset of the record in the shard: of its gzip member for compressed WARC, of the line in the decompressed stream for JSONL, the row number for Parquet |
/// | `source_index` | ordinal of the record in the shard (WARC record number from 0, JSONL line number from 1, Parquet row from 0) |
/// | `source_format` | `warc`, `arc`, `jsonl` or `parquet` |
/// | `record_type` | WARC-Type (`response`, `resource`, `conversion`, `metadata`); null for JSONL/Parquet |
/// | `warc_record_id` | WARC-Record-ID, or the configured id field of JSONL/Parquet |
/// | `url` | WARC-Target-URI (brackets removed), or the configured url field |
/// | `warc_date` | WARC-Date as written (not reparsed: real files carry invalid dates) |
/// | `http_status` | HTTP status code of a `response` record |
/// | `content_type` | media type, lowercased, without parameters (HTTP header, else WARC header) |
/// | `charset` | charset parameter of that Content-Type, lowercased |
/// | `payload` | body bytes (HTTP headers removed, chunked/gzip/deflate/br transfer decoded); null for text records |
/// | `text` | UTF-8 text for WET `conversion` records, JSONL and Parquet; null for binary payloads |
/// | `meta` | JSON object of the configured metadata fields (JSONL/Parquet), null otherwise |
///
/// `payload` and `text` are view types (`BinaryView`, `Utf8View`): ingest hands decoded
/// bytes to the batch by reference instead of copying them, and DataFusion reads Parquet
/// byte columns as views anyway. In Parquet they are plain `BYTE_ARRAY` columns.
pub fn documents_schema() -> Schema {
    with_table_metadata(
        vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("source_url", DataType::Utf8, false),
            Field::new("source_offset", DataType::UInt64, false),
            Field::new("source_index", DataType::UInt64, false),
            Field::new("source_format", DataType::Utf8, false),
            Field::new("record_type", DataType::Utf8, true),
            Field::new("warc_record_id", DataType::Utf8, true),
            Field::new("url", DataType::Utf8, true),
            Field::new("warc_date", DataType::Utf8, true),
            Field::new("http_status", DataType::UInt16, true),
            Field::new("content_type", DataType::Utf8, true),
            Field::new("charset", DataType::Utf8, true),
            Field::new("payload", DataType::BinaryView, true),
            Field::new("text", DataType::Utf8View, true),
            Field::new("meta", DataType::Utf8, true),
        ],
        DOCUMENTS_TABLE,
        DOCUMENTS_VERSION,
    )
}
