//! Checking a record batch against the schema of the table it is written to.

use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;

/// A batch that does not match its table.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SchemaError {
    #[error("table expects {expected} columns, the batch has {found}")]
    ColumnCount { expected: usize, found: usize },
    #[error("column {index} should be `{expected}`, found `{found}`")]
    ColumnName {
        index: usize,
        expected: String,
        found: String,
    },
    #[error("column `{column}` should be {expected}, found {found}")]
    ColumnType {
        column: String,
        expected: String,
        found: String,
    },
    #[error("column `{column}` is not nullable but has {nulls} null value(s)")]
    UnexpectedNulls { column: String, nulls: usize },
}

/// Check names, types, order and nullability of `batch` against `schema`.
pub fn validate_batch(batch: &RecordBatch, schema: &Schema) -> Result<(), SchemaError> {
    let found = batch.schema();
    if found.fields().len() != schema.fields().len() {
        return Err(SchemaError::ColumnCount {
            expected: schema.fields().len(),
            found: found.fields().len(),
        });
    }
    for (index, (want, have)) in schema.fields().iter().zip(found.fields()).enumerate() {
        if want.name() != have.name() {
            return Err(SchemaError::ColumnName {
                index,
                expected: want.name().clone(),
                found: have.name().clone(),
            });
        }
        if want.data_type() != have.data_type() {
            return Err(SchemaError::ColumnType {
                column: want.name().clone(),
                expected: want.data_type().to_string(),
                found: have.data_type().to_string(),
            });
        }
        let nulls = batch.column(index).null_count();
        if !want.is_nullable() && nulls > 0 {
            return Err(SchemaError::UnexpectedNulls {
                column: want.name().clone(),
                nulls,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{documents_schema, rejects_schema, VERSION_KEY};
    use arrow::array::{StringArray, UInt64Array};
    use std::sync::Arc;

    #[test]
    fn every_table_carries_name_and_version() {
        for table in crate::all_tables() {
            assert_eq!(
                table.schema.metadata()[VERSION_KEY],
                table.version.to_string()
            );
            assert_eq!(table.schema.metadata()[crate::TABLE_KEY], table.name);
        }
    }

    #[test]
    fn mismatched_batches_are_named() {
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("id", arrow::datatypes::DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(vec![None::<&str>]))],
        )
        .unwrap();
        assert!(matches!(
            validate_batch(&batch, &documents_schema()),
            Err(SchemaError::ColumnCount { .. })
        ));
        let rejects = Arc::new(rejects_schema());
        let wrong = arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
            "stage",
            arrow::datatypes::DataType::UInt64,
            false,
        )]);
        let batch = RecordBatch::try_new(
            Arc::new(wrong.clone()),
            vec![Arc::new(UInt64Array::from(vec![1u64]))],
        )
        .unwrap();
        let one_col = arrow::datatypes::Schema::new(vec![rejects.field(0).clone()]);
        assert_eq!(
            validate_batch(&batch, &one_col),
            Err(SchemaError::ColumnType {
                column: "stage".into(),
                expected: "Utf8".into(),
                found: "UInt64".into()
            })
        );
        let nullable = arrow::datatypes::Schema::new(vec![arrow::datatypes::Field::new(
            "stage",
            arrow::datatypes::DataType::Utf8,
            true,
        )]);
        let batch = RecordBatch::try_new(
            Arc::new(nullable),
            vec![Arc::new(StringArray::from(vec![None::<&str>]))],
        )
        .unwrap();
        assert!(matches!(
            validate_batch(&batch, &one_col),
            Err(SchemaError::UnexpectedNulls { nulls: 1, .. })
        ));
    }
}
