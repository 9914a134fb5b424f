//! The `filter` stage: annotates every row of the upstream `text` table (language, quality
//! rule flags, bad words, toxicity score, PII counts; `harman_filters::annotate`) and applies a
//! keep-predicate written in SQL, producing the `filtered` table. Dropped rows are kept with
//! the first conjunct of the predicate they fail, so the decision is explainable and a new
//! predicate can be applied to the table later without recomputing anything.
//!
//! In DataFusion terms: a scalar UDF `annotate(text)` whose struct is spread into columns
//! (unnest), the predicate parsed with DataFusion's SQL parser and split at its top-level
//! `AND`s, and a second UDF `filter_verdict(c1, …, cn)` that names the first failing conjunct
//! and counts the funnel (first failing and all failing conjuncts) for the manifest. The
//! funnel is drawn as `_funnel.svg` next to the manifest.

use crate::parquet_io::UpstreamPartition;
use crate::report::{ReportData, ShardReport};
use crate::stage::{OptionError, ShardInput, Stage, StageContext, StageError, StageInputs};
use crate::struct_udf::{spread, StructFunction, StructUdf};
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float64Builder, StringBuilder, StructArray,
    UInt32Builder,
};
use arrow::datatypes::{DataType, Field, Fields, SchemaRef};
use async_trait::async_trait;
use datafusion::common::{exec_err, DFSchema, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::{col, DataFrame, SessionContext};
use harman_filters::annotate::{Annotator, AnnotatorConfig};
use harman_filters::pii::PiiOptions;
use harman_filters::quality::{QualityParams, FAMILIES, RULES};
use harman_filters::toxicity::Classifier;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The kind name in configs.
pub const KIND: &str = "filter";

/// Published pipelines as keep-predicates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// C4 (Raffel et al. 2020): English, the C4 document rules, no bad word.
    C4,
    /// Gopher (Rae et al. 2021): English, the Gopher quality and repetition rules.
    Gopher,
    /// FineWeb (Penedo et al. 2024): English at 0.65, Gopher + C4 + FineWeb rules, plus
    /// harman's toxicity threshold.
    #[default]
    Fineweb,
    /// Keep everything with text (annotate only).
    None,
}

impl Preset {
    pub fn predicate(self) -> &'static str {
        match self {
            Preset::C4 => {
                "text IS NOT NULL AND lang = 'en' AND lang_score >= 0.99 AND NOT c4_drop AND badwords = 0"
            }
            Preset::Gopher => "text IS NOT NULL AND lang = 'en' AND NOT gopher_drop",
            Preset::Fineweb => {
                "text IS NOT NULL AND lang = 'en' AND lang_score >= 0.65 AND NOT gopher_drop AND NOT c4_drop AND NOT fineweb_drop AND toxicity < 0.5"
            }
            Preset::None => "text IS NOT NULL",
        }
    }
}

/// The stage's options (its TOML table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterOptions {
    /// The predicate used when `keep` is not given.
    pub preset: Preset,
    /// The keep-predicate: a SQL boolean expression over the `filtered` table's columns.
    pub keep: Option<String>,
    /// Characters of a document the language detector reads.
    pub lang_max_chars: usize,
    /// A model file from `harman train-classifier` (relative to the config); default: the
    /// shipped model.
    pub toxicity_model: Option<String>,
    /// Replace e-mail addresses, IP addresses and phone numbers by placeholders.
    pub pii: bool,
    pub pii_placeholders: PiiOptions,
    /// Thresholds of the quality rules (the published ones by default).
    pub quality: QualityParams,
}

impl Default for FilterOptions {
    fn default() -> Self {
        FilterOptions {
            preset: Preset::default(),
            keep: None,
            lang_max_chars: 1000,
            toxicity_model: None,
            pii: true,
            pii_placeholders: PiiOptions::default(),
            quality: QualityParams::default(),
        }
    }
}

/// One conjunct of the keep-predicate: its SQL and its expression.
#[derive(Debug, Clone)]
struct Conjunct {
    sql: String,
    expr: Expr,
}

/// The stage.
#[derive(Debug)]
pub struct FilterStage {
    opts: FilterOptions,
    predicate: String,
    conjuncts: Vec<Conjunct>,
    annotator: Annotator,
    schema: SchemaRef,
}

/// The top-level `AND` operands of a SQL expression, as written (a parenthesized group stays
/// one conjunct).
fn split_sql(sql: &str) -> Result<Vec<String>, String> {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr as SqlExpr};
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    fn walk(e: &SqlExpr, out: &mut Vec<String>) {
        match e {
            SqlExpr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => {
                walk(left, out);
                walk(right, out);
            }
            other => out.push(other.to_string()),
        }
    }
    let ast = Parser::new(&GenericDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    walk(&ast, &mut out);
    Ok(out)
}

/// Parse and check a keep-predicate against the `filtered` columns; split it at its
/// top-level ANDs.
fn parse_predicate(sql: &str) -> Result<Vec<Conjunct>, String> {
    let schema = harman_schemas::filtered_schema();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .filter(|f| !matches!(f.name().as_str(), "keep" | "drop_reason"))
        .map(|f| f.as_ref().clone())
        .collect();
    let columns: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
    let df_schema =
        DFSchema::try_from(arrow::datatypes::Schema::new(fields)).map_err(|e| e.to_string())?;
    let ctx = SessionContext::new();
    let parse = |sql: &str| -> Result<Expr, String> {
        let expr = ctx
            .parse_sql_expr(sql, &df_schema)
            .map_err(|e| e.to_string())?;
        let ty = expr
            .get_type(&df_schema)
            .map_err(|e| format!("{e}; the columns are: {}", columns.join(", ")))?;
        if ty != DataType::Boolean {
            return Err(format!("{sql:?} is of type {ty}, not boolean"));
        }
        Ok(expr)
    };
    // The whole predicate first: trailing garbage and type errors are reported on it.
    parse(sql)?;
    split_sql(sql)?
        .into_iter()
        .map(|c| {
            Ok(Conjunct {
                expr: parse(&c)?,
                sql: c,
            })
        })
        .collect()
}

impl FilterStage {
    pub fn new(opts: FilterOptions, context: &StageContext) -> Result<Self, OptionError> {
        let predicate = opts
            .keep
            .clone()
            .unwrap_or_else(|| opts.preset.predicate().to_string());
        let conjuncts = parse_predicate(&predicate).map_err(|e| {
            OptionError::field(
                if opts.keep.is_some() { "keep" } else { "preset" },
                format!(
                    "keep-predicate {predicate:?} is not a valid SQL boolean expression over the `filtered` columns: {e} (example: keep = \"lang = 'en' AND lang_score >= 0.65 AND NOT gopher_drop AND toxicity < 0.5\")"
                ),
            )
        })?;
        if opts.lang_max_chars == 0 {
            return Err(OptionError::field(
                "lang_max_chars",
                "lang_max_chars must be at least 1 (the default, 1000, is plenty for the detector)",
            ));
        }
        let classifier = match &opts.toxicity_model {
            Some(p) => {
                let path = context.resolve(p);
                Classifier::load(&path).map_err(|e| {
                    OptionError::field(
                        "toxicity_model",
                        format!("cannot load toxicity model {}: {e} (write one with `harman train-classifier`, or leave the option out to use the shipped model)", path.display()),
                    )
                })?
            }
            None => Classifier::shipped().map_err(|e| {
                OptionError::field("toxicity_model", format!("the shipped model: {e}"))
            })?,
        };
        let annotator = Annotator::new(
            AnnotatorConfig {
                quality: opts.quality.clone(),
                pii: opts.pii.then(|| opts.pii_placeholders.clone()),
                lang_max_chars: opts.lang_max_chars,
            },
            Arc::new(classifier),
        );
        Ok(FilterStage {
            opts,
            predicate,
            conjuncts,
            annotator,
            schema: Arc::new(harman_schemas::filtered_schema()),
        })
    }

    pub fn factory(
        options: &serde_json::Value,
        context: &StageContext,
    ) -> Result<Arc<dyn Stage>, OptionError> {
        let opts: FilterOptions = OptionError::parse(options)?;
        Ok(Arc::new(FilterStage::new(opts, context)?))
    }

    /// What computes the annotation columns.
    pub fn annotator(&self) -> &Annotator {
        &self.annotator
    }

    /// The conjuncts of the keep-predicate, as SQL, in order.
    pub fn conjuncts(&self) -> Vec<String> {
        self.conjuncts.iter().map(|c| c.sql.clone()).collect()
    }

    /// The stage's plan over any `text` input.
    pub fn transform(
        &self,
        text: DataFrame,
        report: Arc<ShardReport>,
    ) -> Result<DataFrame, StageError> {
        let annotate = StructUdf::udf(
            Annotate::new(self.annotator.clone(), report.clone()),
            Volatility::Volatile,
        );
        let df = spread(
            text,
            &["id", "url", "status", "title"],
            &annotate,
            vec![col("text")],
            &Annotate::fields(),
        )?;
        let verdict = ScalarUDF::from(Verdict::new(self.conjuncts(), report));
        let mut with_verdict: Vec<Expr> = Annotate::passed_columns();
        with_verdict.push(
            verdict
                .call(
                    self.conjuncts
                        .iter()
                        .map(|c| c.expr.clone().is_true())
                        .collect(),
                )
                .alias("drop_reason"),
        );
        let df = df.select(with_verdict)?;
        let mut out = Annotate::passed_columns();
        out.push(col("drop_reason").is_null().alias("keep"));
        out.push(col("drop_reason"));
        Ok(df.select(out)?)
    }
}

#[derive(Serialize)]
struct Params<'a> {
    #[serde(flatten)]
    opts: &'a FilterOptions,
    predicate: &'a str,
    conjuncts: Vec<String>,
    toxicity_model_name: &'a str,
    toxicity_model_sha256: &'a str,
}

#[async_trait]
impl Stage for FilterStage {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn output_table(&self) -> &'static str {
        harman_schemas::FILTERED_TABLE
    }

    fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn params(&self) -> serde_json::Value {
        let header = &self.annotator.classifier().header;
        serde_json::to_value(Params {
            opts: &self.opts,
            predicate: &self.predicate,
            conjuncts: self.conjuncts(),
            toxicity_model_name: &header.name,
            toxicity_model_sha256: &header.weights_sha256,
        })
        .unwrap_or(serde_json::Value::Null)
    }

    fn inputs(&self) -> StageInputs {
        StageInputs::Upstream
    }

    fn input_table(&self) -> Option<&'static str> {
        Some(harman_schemas::TEXT_TABLE)
    }

    async fn plan_shard(
        &self,
        ctx: &SessionContext,
        shard: &ShardInput,
        report: Arc<ShardReport>,
    ) -> Result<DataFrame, StageError> {
        let text = UpstreamPartition::frame(ctx, shard, harman_schemas::text_schema(), &report)?;
        self.transform(text, report)
    }

    fn summary_files(&self, counters: &BTreeMap<String, u64>) -> Vec<(String, Vec<u8>)> {
        let funnel = Funnel::from_counters(&self.conjuncts(), counters);
        vec![("_funnel.svg".to_string(), funnel.svg().into_bytes())]
    }
}

/// The funnel of a filter run, from its counters.
#[derive(Debug, Clone, PartialEq)]
pub struct Funnel {
    pub documents: u64,
    /// (conjunct, dropped by it first, failed by it at all)
    pub steps: Vec<(String, u64, u64)>,
    pub kept: u64,
}

impl Funnel {
    pub fn from_counters(conjuncts: &[String], counters: &BTreeMap<String, u64>) -> Funnel {
        let get = |k: &str| counters.get(k).copied().unwrap_or(0);
        Funnel {
            documents: get("documents"),
            steps: conjuncts
                .iter()
                .map(|c| {
                    (
                        c.clone(),
                        get(&format!("dropped_first.{c}")),
                        get(&format!("failed_any.{c}")),
                    )
                })
                .collect(),
            kept: get("kept"),
        }
    }

    /// The funnel as an SVG bar chart: one bar per step with what is left after it.
    pub fn svg(&self) -> String {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        let (w, bar_w, left, row_h) = (960.0, 420.0, 500.0, 34.0);
        let rows = self.steps.len() + 2;
        let h = 60.0 + rows as f64 * row_h;
        let scale = |n: u64| {
            if self.documents == 0 {
                0.0
            } else {
                bar_w * n as f64 / self.documents as f64
            }
        };
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"13\">\n<text x=\"10\" y=\"24\" font-size=\"16\" font-weight=\"bold\">Filter funnel: {} documents in, {} kept</text>\n",
            self.documents, self.kept
        );
        let mut left_n = self.documents;
        let mut y = 44.0;
        let mut row = |s: &mut String,
                       label: &str,
                       remaining: u64,
                       any: Option<u64>,
                       color: &str| {
            s.push_str(&format!(
                "<text x=\"10\" y=\"{:.0}\">{}</text>\n<rect x=\"{left}\" y=\"{:.0}\" width=\"{:.1}\" height=\"{:.0}\" fill=\"{color}\"/>\n",
                y + 20.0,
                esc(label),
                y + 6.0,
                scale(remaining),
                row_h - 10.0
            ));
            if let Some(any) = any {
                s.push_str(&format!(
                    "<rect x=\"{left}\" y=\"{:.0}\" width=\"{:.1}\" height=\"4\" fill=\"#d62728\"/>\n",
                    y + row_h - 4.0,
                    scale(any)
                ));
            }
            s.push_str(&format!(
                "<text x=\"{:.0}\" y=\"{:.0}\">{remaining}</text>\n",
                left + scale(remaining) + 6.0,
                y + 20.0
            ));
            y += row_h;
        };
        row(&mut s, "documents in", left_n, None, "#7f7f7f");
        for (c, first, any) in &self.steps {
            left_n = left_n.saturating_sub(*first);
            let label = format!("{c}  (−{first} first, {any} fail)");
            let label = if label.chars().count() > 72 {
                format!("{}…", label.chars().take(71).collect::<String>())
            } else {
                label
            };
            row(&mut s, &label, left_n, Some(*any), "#1f77b4");
        }
        row(&mut s, "kept", self.kept, None, "#2ca02c");
        s.push_str("</svg>\n");
        s
    }
}

/// `annotate(text)` → struct of the annotation columns.
#[derive(Debug)]
struct Annotate {
    annotator: Annotator,
    report: Arc<ShardReport>,
}

impl Annotate {
    fn new(annotator: Annotator, report: Arc<ShardReport>) -> Self {
        Annotate { annotator, report }
    }

    fn fields() -> Fields {
        harman_schemas::annotation_fields().into_iter().collect()
    }

    /// Every column before `keep`, as plain column references.
    fn passed_columns() -> Vec<Expr> {
        ["id", "url", "status", "title"]
            .into_iter()
            .map(col)
            .chain(Self::fields().iter().map(|f| col(f.name().as_str())))
            .collect()
    }

    fn annotate_array(&self, text: &dyn Array) -> DfResult<StructArray> {
        let Some(text) = text.as_string_opt::<i32>() else {
            return exec_err!("annotate takes Utf8 text");
        };
        let n = text.len();
        let mut out_text = StringBuilder::new();
        let mut lang = StringBuilder::new();
        let mut lang_score = Float64Builder::with_capacity(n);
        let mut words = UInt32Builder::with_capacity(n);
        let mut mean_word_len = Float64Builder::with_capacity(n);
        let mut rules: Vec<BooleanBuilder> = RULES
            .iter()
            .map(|_| BooleanBuilder::with_capacity(n))
            .collect();
        let mut families: Vec<BooleanBuilder> = FAMILIES
            .iter()
            .map(|_| BooleanBuilder::with_capacity(n))
            .collect();
        let mut c4_line_frac = Float64Builder::with_capacity(n);
        let mut badwords = UInt32Builder::with_capacity(n);
        let mut badword_frac = Float64Builder::with_capacity(n);
        let mut toxicity = Float64Builder::with_capacity(n);
        let mut pii: [UInt32Builder; 3] = std::array::from_fn(|_| UInt32Builder::with_capacity(n));
        // Tallied per batch, named once at the end (no key is built per row).
        let mut no_text = 0u64;
        let mut rule_counts = [0u64; RULES.len()];
        let mut lang_counts: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut pii_counts = [0u64; 3];
        for i in 0..n {
            if text.is_null(i) {
                // No text: nothing to measure; every rule is reported as failed (a document
                // without text passes no quality bar) and the scores are neutral.
                no_text += 1;
                out_text.append_null();
                lang.append_null();
                lang_score.append_value(0.0);
                words.append_value(0);
                mean_word_len.append_value(0.0);
                for r in rules.iter_mut().chain(families.iter_mut()) {
                    r.append_value(true);
                }
                c4_line_frac.append_value(0.0);
                badwords.append_value(0);
                badword_frac.append_value(0.0);
                toxicity.append_null();
                for p in pii.iter_mut() {
                    p.append_value(0);
                }
                continue;
            }
            let t = text.value(i);
            let a = self.annotator.annotate(t);
            out_text.append_value(a.redacted.as_deref().unwrap_or(t));
            lang.append_option(a.lang);
            if let Some(l) = a.lang {
                *lang_counts.entry(l).or_default() += 1;
            }
            lang_score.append_value(a.lang_score);
            words.append_value(a.quality.words.min(u32::MAX as usize) as u32);
            mean_word_len.append_value(a.quality.mean_word_len);
            for ((rule, b), count) in RULES.iter().zip(rules.iter_mut()).zip(&mut rule_counts) {
                let failed = a.quality.failed.contains(rule);
                *count += failed as u64;
                b.append_value(failed);
            }
            for (family, b) in FAMILIES.iter().zip(families.iter_mut()) {
                b.append_value(a.family_failed(family));
            }
            c4_line_frac.append_value(a.quality.c4_lines_kept);
            badwords.append_value(a.badwords);
            badword_frac.append_value(a.badword_frac());
            toxicity.append_option(a.toxicity);
            for ((p, total), v) in
                pii.iter_mut()
                    .zip(&mut pii_counts)
                    .zip([a.pii.emails, a.pii.ips, a.pii.phones])
            {
                p.append_value(v);
                *total += v as u64;
            }
        }
        let mut counts = ReportData::default();
        let named = [
            ("documents".to_string(), n as u64),
            ("no_text".to_string(), no_text),
        ]
        .into_iter()
        .chain(
            RULES
                .iter()
                .zip(rule_counts)
                .map(|(r, c)| (format!("rule.{r}"), c)),
        )
        .chain(
            lang_counts
                .into_iter()
                .map(|(l, c)| (format!("lang.{l}"), c)),
        )
        .chain(
            ["pii.emails", "pii.ips", "pii.phones"]
                .into_iter()
                .zip(pii_counts)
                .map(|(k, c)| (k.to_string(), c)),
        );
        for (key, c) in named {
            // Only what occurred, as before: a counter present means it happened.
            if c > 0 {
                counts.add(&key, c);
            }
        }
        self.report.merge(counts);
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(out_text.finish()),
            Arc::new(lang.finish()),
            Arc::new(lang_score.finish()),
            Arc::new(words.finish()),
            Arc::new(mean_word_len.finish()),
        ];
        columns.extend(rules.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.extend(
            families
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        columns.push(Arc::new(c4_line_frac.finish()));
        columns.push(Arc::new(badwords.finish()));
        columns.push(Arc::new(badword_frac.finish()));
        columns.push(Arc::new(toxicity.finish()));
        columns.extend(pii.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        Ok(StructArray::try_new(Self::fields(), columns, None)?)
    }
}

impl StructFunction for Annotate {
    fn name(&self) -> &'static str {
        "annotate"
    }

    fn arg_types(&self) -> Vec<DataType> {
        vec![DataType::Utf8]
    }

    fn fields(&self) -> Fields {
        Annotate::fields()
    }

    fn compute(&self, args: &[ArrayRef]) -> DfResult<StructArray> {
        let [text] = args else {
            return exec_err!("annotate takes 1 argument");
        };
        self.annotate_array(text)
    }

    fn identity(&self) -> String {
        format!("{:?}", self.annotator)
    }
}

/// `filter_verdict(c1, …, cn)` → the first conjunct that is false (its SQL), or null; counts
/// the funnel.
#[derive(Debug)]
struct Verdict {
    conjuncts: Vec<String>,
    signature: Signature,
    report: Arc<ShardReport>,
}

impl PartialEq for Verdict {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}
impl Eq for Verdict {}
impl Hash for Verdict {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.conjuncts.hash(state);
    }
}

impl Verdict {
    fn new(conjuncts: Vec<String>, report: Arc<ShardReport>) -> Self {
        Verdict {
            signature: Signature::exact(
                vec![DataType::Boolean; conjuncts.len()],
                Volatility::Volatile,
            ),
            conjuncts,
            report,
        }
    }
}

impl ScalarUDFImpl for Verdict {
    fn name(&self) -> &str {
        "filter_verdict"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut bools = Vec::with_capacity(arrays.len());
        for a in &arrays {
            let Some(b) = a.as_boolean_opt() else {
                return exec_err!("filter_verdict takes booleans");
            };
            bools.push(b);
        }
        let mut out = StringBuilder::with_capacity(n, 0);
        // Tallied per batch, named once at the end (no key is built per row).
        let mut failed_any = vec![0u64; self.conjuncts.len()];
        let mut dropped_first = vec![0u64; self.conjuncts.len()];
        let mut kept = 0u64;
        for i in 0..n {
            let mut first: Option<usize> = None;
            for (k, b) in bools.iter().enumerate() {
                // `IS TRUE` upstream: never null.
                if !b.value(i) {
                    failed_any[k] += 1;
                    first.get_or_insert(k);
                }
            }
            match first {
                Some(k) => {
                    dropped_first[k] += 1;
                    out.append_value(&self.conjuncts[k]);
                }
                None => {
                    kept += 1;
                    out.append_null();
                }
            }
        }
        let mut counts = ReportData::default();
        for (c, (any, first)) in self
            .conjuncts
            .iter()
            .zip(failed_any.iter().zip(&dropped_first))
        {
            if *any > 0 {
                counts.add(&format!("failed_any.{c}"), *any);
            }
            if *first > 0 {
                counts.add(&format!("dropped_first.{c}"), *first);
            }
        }
        let dropped = n as u64 - kept;
        if dropped > 0 {
            counts.add("dropped", dropped);
        }
        if kept > 0 {
            counts.add("kept", kept);
        }
        self.report.merge(counts);
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{StringArray, UInt64Array};
    use arrow::record_batch::RecordBatch;
    use datafusion::datasource::MemTable;

    const PROSE: &str = "The history of the river valley is long and varied. Farmers settled \
        along its banks more than three thousand years ago, and they built terraces that are \
        still visible today. Traders followed the water to the coast, carrying grain, wool and \
        pottery to the markets of the port towns. In the middle ages the valley belonged to a \
        string of small lordships that fought over the mills and the bridges. Today most of the \
        land is used for orchards and vineyards, and the old towns attract visitors who come to \
        walk the trails that follow the river from its source to the sea. Write to \
        info@valley.example.org for a map.";

    fn text_batch(texts: Vec<Option<&str>>) -> RecordBatch {
        let n = texts.len();
        let schema = Arc::new(harman_schemas::text_schema());
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                match f.name().as_str() {
                    "id" => Arc::new(StringArray::from_iter_values(
                        (0..n).map(|i| format!("d{i}")),
                    )),
                    "status" => Arc::new(StringArray::from_iter_values((0..n).map(|_| "ok"))),
                    "text" => Arc::new(StringArray::from(texts.clone())),
                    "bytes_in" | "bytes_out" => Arc::new(UInt64Array::from(vec![0u64; n])),
                    _ => Arc::new(StringArray::from(vec![None::<&str>; n])),
                }
            })
            .collect();
        RecordBatch::try_new(schema, columns).unwrap()
    }

    async fn run(stage: &FilterStage, texts: Vec<Option<&str>>) -> (RecordBatch, ReportData) {
        let batch = text_batch(texts);
        let ctx = SessionContext::new();
        let mem = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
        let report = Arc::new(ShardReport::new());
        let df = stage
            .transform(ctx.read_table(Arc::new(mem)).unwrap(), report.clone())
            .unwrap();
        let out = df.collect().await.unwrap();
        let out = arrow::compute::concat_batches(&out[0].schema(), &out).unwrap();
        // The plan's output is the `filtered` table, column for column.
        let out = RecordBatch::try_new(stage.output_schema(), out.columns().to_vec()).unwrap();
        (out, report.snapshot())
    }

    fn stage(keep: Option<&str>, preset: Preset) -> FilterStage {
        FilterStage::new(
            FilterOptions {
                keep: keep.map(str::to_string),
                preset,
                ..FilterOptions::default()
            },
            &StageContext::default(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn annotates_keeps_and_explains_drops() {
        let s = stage(None, Preset::Fineweb);
        assert_eq!(s.conjuncts()[1], "lang = 'en'");
        let toxic = "You are a stupid fucking idiot and everyone here knows it. Shut up and stop \
            posting your worthless shit on this page. Nobody cares about your dumb opinions, you \
            pathetic loser. Get lost, moron, and take your garbage edits with you. What a fucking \
            joke you are, you ignorant piece of shit. Seriously, fuck off and never come back.";
        let (out, report) = run(
            &s,
            vec![
                Some(PROSE),
                None,
                Some("The river is long and the valley is green, and the farmers who live there work with their families in the fields."),
                Some(toxic),
                Some("Die Kinder spielen im Garten, während die Eltern in der Küche das Abendessen vorbereiten."),
            ],
        )
        .await;
        let keep = out.column_by_name("keep").unwrap().as_boolean();
        let reason = out
            .column_by_name("drop_reason")
            .unwrap()
            .as_string::<i32>();
        assert!(keep.value(0), "{:?}", reason.value(0));
        assert!(reason.is_null(0));
        let text = out.column_by_name("text").unwrap().as_string::<i32>();
        assert!(text.value(0).contains("<EMAIL>"), "PII is redacted");
        assert!(!keep.value(1));
        assert_eq!(reason.value(1), "text IS NOT NULL");
        assert!(!keep.value(2));
        assert_eq!(reason.value(2), "NOT gopher_drop");
        assert!(!keep.value(3));
        let tox = out
            .column_by_name("toxicity")
            .unwrap()
            .as_primitive::<arrow::datatypes::Float64Type>();
        assert!(tox.value(3) > 0.5 && tox.value(0) < 0.5);
        assert_eq!(reason.value(4), "lang = 'en'");
        let lang = out.column_by_name("lang").unwrap().as_string::<i32>();
        assert_eq!(lang.value(4), "de");
        let c = &report.counters;
        assert_eq!(c["documents"], 5, "{c:?}");
        assert_eq!(c["kept"], 1);
        assert_eq!(c["dropped"], 4);
        assert_eq!(c["dropped_first.text IS NOT NULL"], 1);
        assert_eq!(c["failed_any.text IS NOT NULL"], 1);
        assert_eq!(c["pii.emails"], 1);
        // The toxic row, and the two rows without a score (no text; German, which the
        // English model does not score): NULL < 0.5 is not true.
        assert_eq!(c["failed_any.toxicity < 0.5"], 3);
        let short = out
            .column_by_name("gopher_word_count")
            .unwrap()
            .as_boolean();
        assert!(short.value(2) && !short.value(0));
        let flagged = (0..5).filter(|&i| i != 1 && short.value(i)).count() as u64;
        assert_eq!(c["rule.gopher_word_count"], flagged, "{c:?}");
        let funnel = Funnel::from_counters(&s.conjuncts(), c);
        assert_eq!(funnel.documents, 5);
        assert_eq!(
            funnel.steps.iter().map(|s| s.1).sum::<u64>() + funnel.kept,
            5
        );
        let svg = funnel.svg();
        assert!(
            svg.starts_with("<svg") && svg.contains("lang = 'en'"),
            "{svg}"
        );
    }

    #[tokio::test]
    async fn custom_predicates_and_their_errors() {
        let s = stage(
            Some("words >= 3 AND (badwords = 0 OR toxicity < 0.9)"),
            Preset::None,
        );
        assert_eq!(
            s.conjuncts(),
            ["words >= 3", "(badwords = 0 OR toxicity < 0.9)"]
        );
        let (out, _) = run(&s, vec![Some("one two three four"), Some("one two")]).await;
        let keep = out.column_by_name("keep").unwrap().as_boolean();
        assert!(keep.value(0) && !keep.value(1));

        let bad = |keep: &str| {
            FilterStage::new(
                FilterOptions {
                    keep: Some(keep.to_string()),
                    ..FilterOptions::default()
                },
                &StageContext::default(),
            )
            .unwrap_err()
        };
        let e = bad("langg = 'en'");
        assert_eq!(e.field.as_deref(), Some("keep"));
        assert!(e.message.contains("langg"), "{}", e.message);
        assert!(bad("words + 1").message.contains("not boolean"));
        assert!(bad("AND AND").field.as_deref() == Some("keep"));
        let e = FilterStage::new(
            FilterOptions {
                toxicity_model: Some("no/such/model.htox".into()),
                ..FilterOptions::default()
            },
            &StageContext::default(),
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("toxicity_model"));
    }
}
