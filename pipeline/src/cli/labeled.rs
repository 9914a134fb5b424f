//! Reading tables of text rows for the classifier commands and `harman bench dedup`: CSV
//! (with a header row), JSONL (one object per line; `.zst` compressed too) or Parquet, each
//! row an id, a text and optionally a 0/1 label.
//! Rows are streamed to a callback ([`for_each`]; memory stays bounded whatever the file's
//! size) or collected ([`read`]). Errors name the file, the row and the column.

use anyhow::{anyhow, bail, Context};
use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use std::path::Path;

/// One row.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub text: String,
    pub label: Option<bool>,
}

/// Which columns to read.
#[derive(Debug, Clone)]
pub struct Columns<'a> {
    pub id: &'a str,
    pub text: &'a str,
    /// Required when set.
    pub label: Option<&'a str>,
}

/// Parse a label: 1/0, true/false (any case), yes/no.
pub fn parse_label(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "1.0" | "true" | "yes" | "toxic" => Some(true),
        "0" | "0.0" | "false" | "no" | "clean" => Some(false),
        _ => None,
    }
}

/// The row callback: a row, or a row that could not be read (the message names the file
/// and the row). Returning an error stops reading.
pub type Each<'a> = &'a mut dyn FnMut(Result<Row, String>) -> anyhow::Result<()>;

fn label_of(path: &Path, row: usize, col: &str, v: Option<&str>) -> anyhow::Result<bool> {
    let v = v.ok_or_else(|| anyhow!("{}: row {row} has no `{col}` value", path.display()))?;
    parse_label(v).ok_or_else(|| {
        anyhow!(
            "{}: row {row}: `{col}` = {v:?} is not a label (use 1/0 or true/false)",
            path.display()
        )
    })
}

/// Every row of `path`, collected; the first bad row is an error (training data must be
/// clean).
pub fn read(path: &Path, cols: &Columns) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for_each(path, cols, &mut |r| {
        rows.push(r.map_err(|e| anyhow!(e))?);
        Ok(())
    })?;
    Ok(rows)
}

/// Call `f` with every row of `path`, in file order, by the file's extension (.csv/.tsv,
/// .jsonl/.json/.ndjson, each optionally .zst, .parquet).
pub fn for_each(path: &Path, cols: &Columns, f: Each) -> anyhow::Result<()> {
    let lower = path.to_string_lossy().to_ascii_lowercase();
    let name = lower.strip_suffix(".zst").unwrap_or(&lower);
    if name.ends_with(".csv") || name.ends_with(".tsv") {
        let delimiter = if name.ends_with(".tsv") { b'\t' } else { b',' };
        read_csv(path, cols, delimiter, f)
    } else if name.ends_with(".jsonl") || name.ends_with(".json") || name.ends_with(".ndjson") {
        read_jsonl(path, cols, f)
    } else if name.ends_with(".parquet") {
        read_parquet(path, cols, f)
    } else {
        bail!(
            "{}: unknown table format; use a .csv, .tsv, .jsonl(.zst) or .parquet file",
            path.display()
        )
    }
}

fn read_csv(path: &Path, cols: &Columns, delimiter: u8, f: Each) -> anyhow::Result<()> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(false)
        .from_path(path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    let headers = reader.headers()?.clone();
    let find = |c: &str| {
        headers.iter().position(|h| h == c).ok_or_else(|| {
            anyhow!(
                "{}: no `{c}` column (columns: {}); name it with --{}-column",
                path.display(),
                headers.iter().collect::<Vec<_>>().join(", "),
                if c == cols.text {
                    "text"
                } else if c == cols.id {
                    "id"
                } else {
                    "label"
                }
            )
        })
    };
    let id_i = find(cols.id).ok();
    let text_i = find(cols.text)?;
    let label_i = cols.label.map(find).transpose()?;
    for (n, rec) in reader.records().enumerate() {
        let row = n + 1;
        let rec = match rec {
            Ok(rec) => rec,
            Err(e) => {
                f(Err(format!("{}: row {row}: {e}", path.display())))?;
                continue;
            }
        };
        let text = rec.get(text_i).unwrap_or_default().to_string();
        let id = id_i
            .and_then(|i| rec.get(i))
            .map_or_else(|| row.to_string(), str::to_string);
        let label = match (label_i, cols.label) {
            (Some(i), Some(c)) => match label_of(path, row, c, rec.get(i)) {
                Ok(l) => Some(l),
                Err(e) => {
                    f(Err(e.to_string()))?;
                    continue;
                }
            },
            _ => None,
        };
        f(Ok(Row { id, text, label }))?;
    }
    Ok(())
}

fn read_jsonl(path: &Path, cols: &Columns, f: Each) -> anyhow::Result<()> {
    use std::io::BufRead;
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let reader: Box<dyn std::io::Read> = if path.extension().is_some_and(|e| e == "zst") {
        Box::new(zstd::Decoder::new(file).with_context(|| format!("{}", path.display()))?)
    } else {
        Box::new(file)
    };
    for (n, line) in std::io::BufReader::new(reader).lines().enumerate() {
        let line_no = n + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                f(Err(format!(
                    "{}: line {line_no} is not UTF-8 text",
                    path.display()
                )))?;
                continue;
            }
            Err(e) => return Err(anyhow!("{}: line {line_no}: {e}", path.display())),
        };
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                f(Err(format!(
                    "{}: line {line_no} is not JSON: {e}",
                    path.display()
                )))?;
                continue;
            }
        };
        let Some(text) = v.get(cols.text).and_then(|t| t.as_str()) else {
            f(Err(format!(
                "{}: line {line_no} has no string `{}`; name the text field with --text-column",
                path.display(),
                cols.text
            )))?;
            continue;
        };
        let text = text.to_string();
        let id = match v.get(cols.id) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) if !other.is_null() => other.to_string(),
            _ => line_no.to_string(),
        };
        let label = match cols.label {
            Some(c) => {
                let raw = match v.get(c) {
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(serde_json::Value::Null) | None => None,
                    Some(other) => Some(other.to_string()),
                };
                match label_of(path, line_no, c, raw.as_deref()) {
                    Ok(l) => Some(l),
                    Err(e) => {
                        f(Err(e.to_string()))?;
                        continue;
                    }
                }
            }
            None => None,
        };
        f(Ok(Row { id, text, label }))?;
    }
    Ok(())
}

fn read_parquet(path: &Path, cols: &Columns, f: Each) -> anyhow::Result<()> {
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{}: not a Parquet file", path.display()))?
        .build()?;
    let mut row = 0usize;
    for batch in reader {
        let batch = batch.with_context(|| format!("{}: cannot decode", path.display()))?;
        let strings = |name: &str| -> anyhow::Result<Option<Vec<Option<String>>>> {
            let Some(a) = batch.column_by_name(name) else {
                return Ok(None);
            };
            let a = arrow::compute::cast(a, &DataType::Utf8)
                .with_context(|| format!("{}: column `{name}` is not text", path.display()))?;
            let a = a.as_string::<i32>();
            Ok(Some(
                (0..a.len())
                    .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
                    .collect(),
            ))
        };
        let texts = strings(cols.text)?.ok_or_else(|| {
            anyhow!(
                "{}: no `{}` column; name it with --text-column",
                path.display(),
                cols.text
            )
        })?;
        let ids = strings(cols.id)?;
        let labels = cols.label.map(strings).transpose()?.flatten();
        if cols.label.is_some() && labels.is_none() {
            bail!(
                "{}: no `{}` column; name it with --label-column",
                path.display(),
                cols.label.unwrap_or_default()
            );
        }
        for (i, text) in texts.into_iter().enumerate() {
            row += 1;
            let id = ids
                .as_ref()
                .and_then(|v| v[i].clone())
                .unwrap_or_else(|| row.to_string());
            let label = match (&labels, cols.label) {
                (Some(l), Some(c)) => match label_of(path, row, c, l[i].as_deref()) {
                    Ok(l) => Some(l),
                    Err(e) => {
                        f(Err(e.to_string()))?;
                        continue;
                    }
                },
                _ => None,
            };
            f(Ok(Row {
                id,
                text: text.unwrap_or_default(),
                label,
            }))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zstd-compressed JSONL file reads like the plain one (the dedup test sample).
    #[test]
    fn zstd_jsonl_reads_like_plain_jsonl() {
        let sample =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/dedup/sample.jsonl.zst");
        let cols = Columns {
            id: "id",
            text: "text",
            label: None,
        };
        let rows = read(&sample, &cols).unwrap();
        assert_eq!(rows.len(), 1007);
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("sample.jsonl");
        let bytes = zstd::decode_all(std::fs::File::open(&sample).unwrap()).unwrap();
        std::fs::write(&plain, bytes).unwrap();
        let again = read(&plain, &cols).unwrap();
        assert!(rows
            .iter()
            .zip(&again)
            .all(|(a, b)| a.id == b.id && a.text == b.text));
        assert_eq!(rows[0].id, "doc-00000");
    }
}
