//! The Arrow schemas of every table harman writes, one module per table, each with a
//! version number that is stored in the Parquet metadata, plus helpers that check a
//! record batch against its table before it is written.

mod clusters;
mod documents;
mod eval_results;
mod filtered;
mod rejects;
mod text;
mod tokens;
mod train_log;
mod validate;

pub use clusters::{clusters_schema, CLUSTERS_TABLE, CLUSTERS_VERSION};
pub use documents::{documents_schema, DOCUMENTS_TABLE, DOCUMENTS_VERSION};
pub use eval_results::{eval_results_schema, EVAL_RESULTS_TABLE, EVAL_RESULTS_VERSION};
pub use filtered::{annotation_fields, filtered_schema, FILTERED_TABLE, FILTERED_VERSION};
pub use rejects::{rejects_schema, RejectReason, REJECTS_TABLE, REJECTS_VERSION};
pub use text::{text_schema, TEXT_TABLE, TEXT_VERSION};
pub use tokens::{
    token_index_schema, tokens_schema, TOKENS_TABLE, TOKENS_VERSION, TOKEN_INDEX_TABLE,
    TOKEN_INDEX_VERSION,
};
pub use train_log::{train_log_schema, TRAIN_LOG_TABLE, TRAIN_LOG_VERSION};
pub use validate::{validate_batch, SchemaError};

use arrow::datatypes::Schema;
use std::collections::HashMap;

/// Metadata key holding the table name in every schema harman writes.
pub const TABLE_KEY: &str = "harman.table";
/// Metadata key holding the table's schema version.
pub const VERSION_KEY: &str = "harman.schema_version";

/// A table harman knows: its name, version and Arrow schema.
#[derive(Debug, Clone)]
pub struct TableSchema {
    pub name: &'static str,
    pub version: u32,
    pub schema: Schema,
}

/// Every table this version of harman writes.
pub fn all_tables() -> Vec<TableSchema> {
    vec![
        TableSchema {
            name: DOCUMENTS_TABLE,
            version: DOCUMENTS_VERSION,
            schema: documents_schema(),
        },
        TableSchema {
            name: TEXT_TABLE,
            version: TEXT_VERSION,
            schema: text_schema(),
        },
        TableSchema {
            name: FILTERED_TABLE,
            version: FILTERED_VERSION,
            schema: filtered_schema(),
        },
        TableSchema {
            name: CLUSTERS_TABLE,
            version: CLUSTERS_VERSION,
            schema: clusters_schema(),
        },
        TableSchema {
            name: TOKENS_TABLE,
            version: TOKENS_VERSION,
            schema: tokens_schema(),
        },
        TableSchema {
            name: TOKEN_INDEX_TABLE,
            version: TOKEN_INDEX_VERSION,
            schema: token_index_schema(),
        },
        TableSchema {
            name: TRAIN_LOG_TABLE,
            version: TRAIN_LOG_VERSION,
            schema: train_log_schema(),
        },
        TableSchema {
            name: EVAL_RESULTS_TABLE,
            version: EVAL_RESULTS_VERSION,
            schema: eval_results_schema(),
        },
        TableSchema {
            name: REJECTS_TABLE,
            version: REJECTS_VERSION,
            schema: rejects_schema(),
        },
    ]
}

/// Attach the table name and version to a list of fields.
pub(crate) fn with_table_metadata(
    fields: Vec<arrow::datatypes::Field>,
    table: &str,
    version: u32,
) -> Schema {
    let metadata = HashMap::from([
        (TABLE_KEY.to_string(), table.to_string()),
        (VERSION_KEY.to_string(), version.to_string()),
    ]);
    Schema::new_with_metadata(fields, metadata)
}
