//! The `clusters` table the dedup stage writes next to its parts: one row per document that
//! has at least one duplicate (documents not listed are unique), so clusters can be
//! inspected and a removal traced back to the document that was kept.

use crate::with_table_metadata;
use arrow::datatypes::{DataType, Field, Schema};

pub const CLUSTERS_TABLE: &str = "clusters";
/// Version 1: first release.
pub const CLUSTERS_VERSION: u32 = 1;

/// Columns of `clusters` v1, sorted by (`part`, `row`).
///
/// | column | meaning |
/// |---|---|
/// | `id` | the document's id |
/// | `cluster_id` | the cluster's key: the (`part`, `row`) key of its kept document, `part << 40 \| row` |
/// | `cluster_size` | documents in the cluster (≥ 2) |
/// | `kept` | true for the one document kept: the cluster's first by (`part`, `row`) |
/// | `match` | `exact` (same normalized text as an earlier document), `near` (joined by a MinHash-LSH pair), null for the kept one |
/// | `part` | the input part the document is in (its index in the stage's input list) |
/// | `row` | the document's row in that part |
pub fn clusters_schema() -> Schema {
    with_table_metadata(
        vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("cluster_id", DataType::UInt64, false),
            Field::new("cluster_size", DataType::UInt64, false),
            Field::new("kept", DataType::Boolean, false),
            Field::new("match", DataType::Utf8, true),
            Field::new("part", DataType::UInt32, false),
            Field::new("row", DataType::UInt64, false),
        ],
        CLUSTERS_TABLE,
        CLUSTERS_VERSION,
    )
}
