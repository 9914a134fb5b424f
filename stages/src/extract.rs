//! The `extract` stage: the `documents` table's HTML payloads to clean main text (the `text`
//! table), through the `harman-extract` crate. In DataFusion terms it is a scalar UDF,
//! `html_extract(payload, text, content_type, charset)`, applied to each batch of the
//! upstream shard; WET conversions and JSONL text pass through the text fixes only.

use crate::parquet_io::UpstreamPartition;
use crate::report::{ReportData, ShardReport};
use crate::stage::{OptionError, ShardInput, Stage, StageError, StageInputs};
use crate::struct_udf::{spread, StructFunction, StructUdf};
use arrow::array::{Array, ArrayRef, AsArray, StringBuilder, StructArray, UInt64Builder};
use arrow::datatypes::{DataType, Fields, SchemaRef};
use async_trait::async_trait;
use datafusion::common::{exec_err, Result as DfResult};
use datafusion::logical_expr::Volatility;
use datafusion::prelude::{col, DataFrame, SessionContext};
use harman_extract::{ExtractOptions, Extraction, Status};
use std::sync::Arc;

/// The kind name in configs.
pub const KIND: &str = "extract";

/// Upper bounds of the size limits (the tree addresses text and nodes with 32-bit indexes).
const MAX_HTML_BYTES: usize = 1 << 30;
const MAX_NODES: usize = 1 << 28;

/// Extract one document: text records pass through the fixes, payloads are parsed as HTML.
pub fn extract_document(
    payload: Option<&[u8]>,
    text: Option<&str>,
    content_type: Option<&str>,
    charset: Option<&str>,
    opts: &ExtractOptions,
) -> Extraction {
    match (text, payload) {
        (Some(t), _) => harman_extract::pass_through(t, opts),
        (None, Some(p)) => harman_extract::extract_html(p, content_type, charset, opts),
        (None, None) => Extraction {
            status: Status::NoContent,
            reason: Some("the document has neither payload nor text".into()),
            text: None,
            title: None,
            lang: None,
            charset: None,
            bytes_in: 0,
        },
    }
}

/// The stage.
#[derive(Debug)]
pub struct ExtractStage {
    opts: ExtractOptions,
    schema: SchemaRef,
}

impl ExtractStage {
    pub fn new(opts: ExtractOptions) -> Result<Self, OptionError> {
        if opts.max_html_bytes == 0 || opts.max_html_bytes > MAX_HTML_BYTES {
            return Err(OptionError::field(
                "max_html_bytes",
                format!(
                    "max_html_bytes = {} is out of range; use 1 to {MAX_HTML_BYTES} bytes (pages larger than it are cut before parsing; the default is 8388608)",
                    opts.max_html_bytes
                ),
            ));
        }
        if opts.max_depth == 0 || opts.max_nodes == 0 || opts.max_nodes > MAX_NODES {
            return Err(OptionError::field(
                if opts.max_depth == 0 { "max_depth" } else { "max_nodes" },
                format!("the tree limits must be at least 1 and max_nodes at most {MAX_NODES} (defaults: max_depth = 512, max_nodes = 1048576)"),
            ));
        }
        Ok(ExtractStage {
            opts,
            schema: Arc::new(harman_schemas::text_schema()),
        })
    }

    pub fn factory(
        options: &serde_json::Value,
        _context: &crate::stage::StageContext,
    ) -> Result<Arc<dyn Stage>, OptionError> {
        let opts: ExtractOptions = OptionError::parse(options)?;
        Ok(Arc::new(ExtractStage::new(opts)?))
    }
}

#[async_trait]
impl Stage for ExtractStage {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn output_table(&self) -> &'static str {
        harman_schemas::TEXT_TABLE
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn params(&self) -> serde_json::Value {
        serde_json::to_value(&self.opts).unwrap_or(serde_json::Value::Null)
    }

    fn inputs(&self) -> StageInputs {
        StageInputs::Upstream
    }

    fn input_table(&self) -> Option<&'static str> {
        Some(harman_schemas::DOCUMENTS_TABLE)
    }

    async fn plan_shard(
        &self,
        ctx: &SessionContext,
        shard: &ShardInput,
        report: Arc<ShardReport>,
    ) -> Result<DataFrame, StageError> {
        let documents =
            UpstreamPartition::frame(ctx, shard, harman_schemas::documents_schema(), &report)?;
        self.transform(documents, report)
    }
}

impl ExtractStage {
    /// The stage's plan over any `documents` input: `html_extract` on each batch, its struct
    /// spread into the `text` table's columns.
    pub fn transform(
        &self,
        documents: DataFrame,
        report: Arc<ShardReport>,
    ) -> Result<DataFrame, StageError> {
        let udf = StructUdf::udf(
            HtmlExtract::new(self.opts.clone(), report),
            Volatility::Volatile,
        );
        let args = vec![
            col("payload"),
            col("text"),
            col("content_type"),
            col("charset"),
        ];
        Ok(spread(
            documents,
            &["id", "url"],
            &udf,
            args,
            &HtmlExtract::fields(),
        )?)
    }
}

/// `html_extract(payload, text, content_type, charset)` → struct of the `text` columns.
#[derive(Debug)]
pub struct HtmlExtract {
    opts: ExtractOptions,
    report: Arc<ShardReport>,
}

impl HtmlExtract {
    pub fn new(opts: ExtractOptions, report: Arc<ShardReport>) -> Self {
        HtmlExtract { opts, report }
    }

    /// The struct it returns: the `text` table's columns after `id` and `url`, in order.
    fn fields() -> Fields {
        harman_schemas::text_schema()
            .fields()
            .iter()
            .filter(|f| !matches!(f.name().as_str(), "id" | "url"))
            .cloned()
            .collect()
    }

    /// Extract every row of a batch of documents columns.
    pub fn extract_arrays(
        &self,
        payload: &dyn Array,
        text: &dyn Array,
        content_type: &dyn Array,
        charset: &dyn Array,
    ) -> DfResult<StructArray> {
        let payload = payload.as_binary_view_opt();
        let text = text.as_string_view_opt();
        let content_type = content_type.as_string_opt::<i32>();
        let charset = charset.as_string_opt::<i32>();
        let (Some(payload), Some(text), Some(content_type), Some(charset)) =
            (payload, text, content_type, charset)
        else {
            return exec_err!("html_extract takes (BinaryView, Utf8View, Utf8, Utf8)");
        };
        let n = payload.len();
        let mut status = StringBuilder::new();
        let mut reason = StringBuilder::new();
        let mut out_text = StringBuilder::new();
        let mut title = StringBuilder::new();
        let mut lang = StringBuilder::new();
        let mut cs = StringBuilder::new();
        let mut bytes_in = UInt64Builder::with_capacity(n);
        let mut bytes_out = UInt64Builder::with_capacity(n);
        let mut counts = ReportData::default();
        let get = |a: &dyn Array, i: usize| a.is_valid(i);
        for i in 0..n {
            let e = extract_document(
                get(payload, i).then(|| payload.value(i)),
                get(text, i).then(|| text.value(i)),
                get(content_type, i).then(|| content_type.value(i)),
                get(charset, i).then(|| charset.value(i)),
                &self.opts,
            );
            counts.add("documents", 1);
            counts.add(&format!("status.{}", e.status.as_str()), 1);
            status.append_value(e.status.as_str());
            reason.append_option(e.reason.as_deref());
            bytes_out.append_value(e.text.as_ref().map_or(0, |t| t.len() as u64));
            out_text.append_option(e.text.as_deref());
            title.append_option(e.title.as_deref());
            lang.append_option(e.lang.as_deref());
            cs.append_option(e.charset.as_deref());
            bytes_in.append_value(e.bytes_in);
        }
        self.report.merge(counts);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(status.finish()),
            Arc::new(reason.finish()),
            Arc::new(out_text.finish()),
            Arc::new(title.finish()),
            Arc::new(lang.finish()),
            Arc::new(cs.finish()),
            Arc::new(bytes_in.finish()),
            Arc::new(bytes_out.finish()),
        ];
        Ok(StructArray::try_new(Self::fields(), columns, None)?)
    }
}

impl StructFunction for HtmlExtract {
    fn name(&self) -> &'static str {
        "html_extract"
    }

    fn arg_types(&self) -> Vec<DataType> {
        vec![
            DataType::BinaryView,
            DataType::Utf8View,
            DataType::Utf8,
            DataType::Utf8,
        ]
    }

    fn fields(&self) -> Fields {
        HtmlExtract::fields()
    }

    fn compute(&self, args: &[ArrayRef]) -> DfResult<StructArray> {
        let [payload, text, content_type, charset] = args else {
            return exec_err!("html_extract takes 4 arguments");
        };
        self.extract_arrays(payload, text, content_type, charset)
    }

    fn identity(&self) -> String {
        serde_json::to_string(&self.opts).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BinaryViewArray, StringArray, StringViewArray};
    use arrow::record_batch::RecordBatch;
    use datafusion::datasource::MemTable;

    fn documents(payloads: Vec<Option<&[u8]>>, texts: Vec<Option<&str>>) -> RecordBatch {
        let n = payloads.len();
        let schema = Arc::new(harman_schemas::documents_schema());
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                match f.name().as_str() {
                    "id" => Arc::new(StringArray::from_iter_values(
                        (0..n).map(|i| format!("doc{i}")),
                    )),
                    "source_url" | "source_format" => {
                        Arc::new(StringArray::from_iter_values((0..n).map(|_| "x")))
                    }
                    "source_offset" | "source_index" => {
                        Arc::new(arrow::array::UInt64Array::from_iter_values(0..n as u64))
                    }
                    "http_status" => Arc::new(arrow::array::UInt16Array::from(vec![None; n])),
                    "payload" => Arc::new(BinaryViewArray::from(payloads.clone())),
                    "text" => Arc::new(StringViewArray::from(texts.clone())),
                    _ => Arc::new(StringArray::from(vec![None::<&str>; n])),
                }
            })
            .collect();
        RecordBatch::try_new(schema, columns).unwrap()
    }

    #[tokio::test]
    async fn udf_runs_once_per_row_and_fills_the_text_table() {
        let batch = documents(
            vec![
                Some(b"<html lang=de><title>T</title><body><article><p>Ein langer Absatz mit genug Text, damit er als Inhalt gilt.</p></article></body></html>".as_slice()),
                None,
                None,
                Some(b"\x00\x01\x02binary".as_slice()),
            ],
            vec![None, Some("already text"), None, None],
        );
        let ctx = SessionContext::new();
        let mem = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
        let report = Arc::new(ShardReport::new());
        let stage = ExtractStage::new(ExtractOptions::default()).unwrap();
        let df = stage
            .transform(ctx.read_table(Arc::new(mem)).unwrap(), report.clone())
            .unwrap();
        let out = df.collect().await.unwrap();
        let out = arrow::compute::concat_batches(&out[0].schema(), &out).unwrap();
        let out = RecordBatch::try_new(stage.output_schema(), out.columns().to_vec()).unwrap();
        let status = out.column_by_name("status").unwrap().as_string::<i32>();
        let got: Vec<&str> = (0..4).map(|i| status.value(i)).collect();
        assert_eq!(got, ["ok", "passthrough", "no_content", "binary"]);
        let lang = out.column_by_name("lang").unwrap().as_string::<i32>();
        assert_eq!(lang.value(0), "de");
        let counters = report.snapshot().counters;
        assert_eq!(counters["documents"], 4, "{counters:?}");
        assert_eq!(counters["status.ok"], 1);
    }
}
