//! Reading Parquet through `object_store`: an [`AsyncFileReader`] over one object of known
//! size, used for Parquet inputs and for reading stage outputs back; [`UpstreamPartition`],
//! an upstream stage's output part as a DataFusion partition.

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use std::ops::Range;
use std::sync::Arc;

use crate::report::ShardReport;
use crate::stage::ShardInput;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;

/// One Parquet object in a store.
#[derive(Debug, Clone)]
pub struct ObjectParquetReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

impl ObjectParquetReader {
    pub fn new(store: Arc<dyn ObjectStore>, path: Path, size: u64) -> Self {
        ObjectParquetReader { store, path, size }
    }
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectParquetReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes>> {
        self.store
            .get_range(&self.path, range)
            .map_err(external)
            .boxed()
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// One part of an upstream stage's output, read as a stream of batches of its table's
/// schema (a part with other columns is an error naming it).
#[derive(Debug)]
pub struct UpstreamPartition {
    shard: ShardInput,
    schema: SchemaRef,
    report: Arc<ShardReport>,
}

impl UpstreamPartition {
    pub fn new(shard: ShardInput, schema: SchemaRef, report: &Arc<ShardReport>) -> Self {
        UpstreamPartition {
            shard,
            schema,
            report: report.clone(),
        }
    }

    /// The upstream part `shard`, a part of a table with `schema`, as a DataFrame (the
    /// starting point of an upstream-reading stage's plan).
    pub fn frame(
        ctx: &datafusion::prelude::SessionContext,
        shard: &ShardInput,
        schema: arrow::datatypes::Schema,
        report: &Arc<ShardReport>,
    ) -> datafusion::error::Result<datafusion::prelude::DataFrame> {
        let schema = Arc::new(schema);
        let partition = UpstreamPartition::new(shard.clone(), schema.clone(), report);
        let table = datafusion::catalog::streaming::StreamingTable::try_new(
            schema,
            vec![Arc::new(partition)],
        )?;
        ctx.read_table(Arc::new(table))
    }
}

/// The record batches of a stage output part, in file order, with DataFusion errors.
pub async fn read_part(
    shard: &ShardInput,
) -> Result<impl futures::Stream<Item = Result<RecordBatch, DataFusionError>>, DataFusionError> {
    let reader = ObjectParquetReader::new(shard.store.clone(), shard.path.clone(), shard.size);
    let stream = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?
        .build()
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    Ok(stream.map(|b| b.map_err(|e| DataFusionError::External(Box::new(e)))))
}

impl PartitionStream for UpstreamPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let shard = self.shard.clone();
        let schema = self.schema.clone();
        let bytes_read = self.report.bytes_read.clone();
        let url = shard.url.clone();
        let open = async move {
            bytes_read.fetch_add(shard.size, std::sync::atomic::Ordering::Relaxed);
            let stream = read_part(&shard).await?;
            let schema = schema.clone();
            Ok::<_, DataFusionError>(stream.map(move |b| {
                let b = b?;
                // Same columns, same types: anything else is not a documents part.
                RecordBatch::try_new(schema.clone(), b.columns().to_vec()).map_err(|e| {
                    DataFusionError::Execution(format!(
                        "{url} is not a part of the expected table: {e}"
                    ))
                })
            }))
        };
        let stream = futures::stream::once(open).try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}
