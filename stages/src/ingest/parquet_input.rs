//! Parquet shards as ingest input: a configurable text column (any string type), optional id
//! and url columns, and metadata columns serialised as a JSON object per row. A null text is a
//! reject; the rest of the file is still read.

use super::builder::{DocRow, DocumentSink};
use super::jsonl::JsonlFields;
use super::warc::Stop;
use crate::parquet_io::ObjectParquetReader;
use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use harman_schemas::RejectReason;
use object_store::path::Path;
use object_store::ObjectStore;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use std::sync::Arc;

/// Errors that end a Parquet shard.
#[derive(Debug, thiserror::Error)]
pub enum ParquetInputError {
    #[error("{0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("{0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("column `{column}` not found; the file has columns {available:?} (set text_field/id_field/url_field/meta_fields to one of them)")]
    MissingColumn {
        column: String,
        available: Vec<String>,
    },
    #[error("stopped by the consumer")]
    Stopped,
}

impl From<Stop> for ParquetInputError {
    fn from(_: Stop) -> Self {
        ParquetInputError::Stopped
    }
}

fn strings(
    batch: &RecordBatch,
    name: &str,
) -> Result<Option<arrow::array::StringArray>, ParquetInputError> {
    let Some(col) = batch.column_by_name(name) else {
        return Ok(None);
    };
    let cast = arrow::compute::cast(col, &DataType::Utf8)?;
    Ok(Some(cast.as_string::<i32>().clone()))
}

/// Read a Parquet shard through the object store into `sink`. `emit_async` is called between
/// row groups so the sink's batches can be sent without blocking the runtime.
pub async fn read_parquet(
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    fields: &JsonlFields,
    sink: &mut DocumentSink<'_>,
) -> Result<(), ParquetInputError> {
    let reader = ObjectParquetReader::new(store, path, size);
    let builder = ParquetRecordBatchStreamBuilder::new(reader).await?;
    let file_schema = builder.schema().clone();
    let available: Vec<String> = file_schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut wanted: Vec<&str> = vec![fields.text.as_str()];
    wanted.extend(fields.id.as_deref());
    wanted.extend(fields.url.as_deref());
    wanted.extend(fields.meta.iter().map(String::as_str));
    for w in &wanted {
        if !available.iter().any(|a| a == w) {
            return Err(ParquetInputError::MissingColumn {
                column: w.to_string(),
                available,
            });
        }
    }
    let roots: Vec<usize> = available
        .iter()
        .enumerate()
        .filter(|(_, name)| wanted.contains(&name.as_str()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let mut stream = builder
        .with_projection(mask)
        .with_batch_size(4096)
        .build()?;
    let mut row: u64 = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let text = strings(&batch, &fields.text)?;
        let ids = match fields.id.as_deref() {
            Some(f) => strings(&batch, f)?,
            None => None,
        };
        let urls = match fields.url.as_deref() {
            Some(f) => strings(&batch, f)?,
            None => None,
        };
        let meta = meta_json(&batch, &fields.meta)?;
        let Some(text) = text else { break };
        for i in 0..batch.num_rows() {
            let index = row + i as u64;
            if text.is_null(i) {
                sink.add_reject(
                    index,
                    Some(index),
                    RejectReason::MissingField,
                    format!("row {index}: column `{}` is null", fields.text),
                );
                continue;
            }
            let body = text.value(i);
            sink.data.add("text_bytes", body.len() as u64);
            sink.push(&DocRow {
                offset: index,
                index,
                record_id: ids.as_ref().filter(|a| a.is_valid(i)).map(|a| a.value(i)),
                url: urls.as_ref().filter(|a| a.is_valid(i)).map(|a| a.value(i)),
                text: Some(body),
                meta: meta.as_ref().map(|m| m[i].as_str()),
                ..DocRow::default()
            })?;
        }
        row += batch.num_rows() as u64;
    }
    Ok(())
}

/// The metadata columns of each row as a JSON object (nulls left out).
fn meta_json(
    batch: &RecordBatch,
    meta: &[String],
) -> Result<Option<Vec<String>>, ParquetInputError> {
    if meta.is_empty() {
        return Ok(None);
    }
    let indices: Vec<usize> = meta
        .iter()
        .filter_map(|m| batch.schema().index_of(m).ok())
        .collect();
    let sub = batch.project(&indices)?;
    let mut buf = Vec::new();
    {
        let mut writer = arrow::json::LineDelimitedWriter::new(&mut buf);
        writer.write(&sub)?;
        writer.finish()?;
    }
    let text = String::from_utf8_lossy(&buf);
    let mut rows: Vec<String> = text.lines().map(str::to_string).collect();
    rows.resize(batch.num_rows(), "{}".to_string());
    Ok(Some(rows))
}
