//! The `tokens` table the tokenize stage writes per part (each document's token ids, its
//! split and shuffle key), and the `token_index` table written next to the training shards
//! (where each document sits in which shard), for audits.

use crate::with_table_metadata;
use arrow::datatypes::{DataType, Field, Schema};

pub const TOKENS_TABLE: &str = "tokens";
/// Version 1: first release.
pub const TOKENS_VERSION: u32 = 1;

/// Columns of `tokens` v1, one row per tokenized document, sorted by `order` within a part.
///
/// | column | meaning |
/// |---|---|
/// | `id` | the document's id |
/// | `source` | the ingest stage the document came from (followed back through the manifests) |
/// | `lang` | the input's `lang` column (`und` when it has none) |
/// | `split` | `train` or `val`: from sha256(seed ‖ id), so the same document always lands in the same split |
/// | `order` | the shuffle key (more bits of the same hash; input position when shuffling is off); shards list documents by it |
/// | `n_bytes` | UTF-8 bytes of the text |
/// | `n_tokens` | tokens of the text (the end-of-text separator not counted) |
/// | `tokens` | the ids, little-endian uint32 |
pub fn tokens_schema() -> Schema {
    with_table_metadata(
        vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("lang", DataType::Utf8, false),
            Field::new("split", DataType::Utf8, false),
            Field::new("order", DataType::UInt64, false),
            Field::new("n_bytes", DataType::UInt64, false),
            Field::new("n_tokens", DataType::UInt32, false),
            Field::new("tokens", DataType::Binary, false),
        ],
        TOKENS_TABLE,
        TOKENS_VERSION,
    )
}

pub const TOKEN_INDEX_TABLE: &str = "token_index";
/// Version 1: first release.
pub const TOKEN_INDEX_VERSION: u32 = 1;

/// Columns of `token_index` v1 (`index.parquet`), one row per document piece in shard order.
///
/// | column | meaning |
/// |---|---|
/// | `shard` | the shard file, e.g. `train_000000.bin` |
/// | `id` | the document's id |
/// | `offset` | position of the document's first token in the shard (tokens after the header; the end-of-text token before it is at `offset - 1`, or ends the previous shard) |
/// | `length` | tokens of the document in this shard |
/// | `piece` | 0, or 1, 2 … for the rest of a document that continues into the next shard |
pub fn token_index_schema() -> Schema {
    with_table_metadata(
        vec![
            Field::new("shard", DataType::Utf8, false),
            Field::new("id", DataType::Utf8, false),
            Field::new("offset", DataType::UInt64, false),
            Field::new("length", DataType::UInt64, false),
            Field::new("piece", DataType::UInt32, false),
        ],
        TOKEN_INDEX_TABLE,
        TOKEN_INDEX_VERSION,
    )
}
