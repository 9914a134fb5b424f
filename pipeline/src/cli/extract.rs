//! `harman extract PATH…`: main text of HTML files (plain or `.gz`), folders of them, or
//! WARC/WET files, as JSONL `{"id", "text"}` lines on stdout — through the same code and
//! options as the `extract` stage, for checking a page or scripting.

use super::Failure;
use crate::config::ConfigError;
use anyhow::Context;
use arrow::array::{Array, AsArray, RecordBatch};
use harman_extract::{ExtractOptions, Extraction};
use harman_stages::extract::extract_document;
use harman_stages::ingest::{self, IngestOptions, InputFormat};
use harman_stages::OptionError;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct ExtractArgs {
    /// HTML files (optionally gzip-compressed), folders of them (searched recursively for
    /// .html/.htm/.xhtml[.gz]), or WARC/WET/ARC files.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Extraction options as TOML, with the keys of an `extract` stage table, e.g.
    /// --options 'favor = "precision"' or --options 'mode = "plain"'.
    #[arg(long)]
    pub options: Option<String>,
    /// Take the options of an `extract` stage in this config (with --stage when it has several).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The stage of --config whose options to use.
    #[arg(long, requires = "config")]
    pub stage: Option<String>,
    /// Print every column of the `text` table (status, reason, title, lang, charset), not only
    /// id and text.
    #[arg(long)]
    pub full: bool,
}

/// The options: from a config's stage, else from --options, else the defaults.
fn options(args: &ExtractArgs) -> Result<ExtractOptions, Failure> {
    if let Some(path) = &args.config {
        let cfg = super::load_config(path)?;
        let stages: Vec<_> = cfg
            .stages
            .iter()
            .filter(|s| s.kind == harman_stages::extract::KIND)
            .filter(|s| args.stage.as_deref().is_none_or(|n| n == s.name))
            .collect();
        let [stage] = stages.as_slice() else {
            return Err(anyhow::anyhow!(
                "{}: {} `extract` stages match; name one with --stage",
                path.display(),
                stages.len()
            )
            .into());
        };
        return OptionError::parse(&stage.options).map_err(|e| {
            cfg_err(
                path,
                &format!("stages.{}.{}", stage.name, e.field.unwrap_or_default()),
                e.message,
            )
        });
    }
    parse_options(args.options.as_deref())
}

/// Stage options given as TOML text (the keys of a stage table, e.g. of an `extract` or a
/// `filter` stage); defaults for None. Errors name the field.
pub fn parse_options<T: serde::de::DeserializeOwned + Default>(
    text: Option<&str>,
) -> Result<T, Failure> {
    let Some(text) = text else {
        return Ok(T::default());
    };
    let table: toml::Table = toml::from_str(text)
        .map_err(|e| cfg_err(Path::new("--options"), "--options", e.message().to_string()))?;
    let json = serde_json::to_value(table).map_err(anyhow::Error::from)?;
    OptionError::parse(&json).map_err(|e| {
        cfg_err(
            Path::new("--options"),
            e.field.as_deref().unwrap_or("--options"),
            e.message,
        )
    })
}

pub fn cfg_err(file: &Path, field: &str, message: String) -> Failure {
    ConfigError {
        file: file.to_path_buf(),
        line: None,
        field: Some(field.to_string()),
        message,
    }
    .into()
}

fn is_html_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    let n = n.strip_suffix(".gz").unwrap_or(&n);
    n.ends_with(".html") || n.ends_with(".htm") || n.ends_with(".xhtml")
}

/// Files under `path`, sorted, for deterministic output.
fn collect(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for e in entries {
            if e.is_dir() {
                collect(&e, out)?;
            } else if e
                .file_name()
                .is_some_and(|n| is_html_name(&n.to_string_lossy()))
            {
                out.push(e);
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// Bytes of a file, gunzipped when it starts with the gzip magic.
pub fn read_maybe_gz(path: &Path) -> anyhow::Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{}: corrupt gzip", path.display()))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn line(id: &str, e: &Extraction, full: bool) -> serde_json::Value {
    if full {
        serde_json::json!({
            "id": id,
            "text": e.text,
            "status": e.status.as_str(),
            "reason": e.reason,
            "title": e.title,
            "lang": e.lang,
            "charset": e.charset,
        })
    } else {
        serde_json::json!({"id": id, "text": e.text})
    }
}

/// Print one JSONL line per document of a batch of `documents`.
fn print_batch(
    batch: &RecordBatch,
    opts: &ExtractOptions,
    full: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .with_context(|| format!("documents batch without `{name}`"))
    };
    let ids = col("id")?.as_string::<i32>();
    let record_ids = col("warc_record_id")?.as_string::<i32>();
    let payload = col("payload")?.as_binary_view();
    let text = col("text")?.as_string_view();
    let ctype = col("content_type")?.as_string::<i32>();
    let charset = col("charset")?.as_string::<i32>();
    for i in 0..batch.num_rows() {
        fn opt_s(a: &arrow::array::StringArray, i: usize) -> Option<&str> {
            a.is_valid(i).then(|| a.value(i))
        }
        let e = extract_document(
            payload.is_valid(i).then(|| payload.value(i)),
            text.is_valid(i).then(|| text.value(i)),
            opt_s(ctype, i),
            opt_s(charset, i),
            opts,
        );
        let id = opt_s(record_ids, i).unwrap_or(ids.value(i));
        serde_json::to_writer(&mut *out, &line(id, &e, full))?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

pub fn extract(args: ExtractArgs) -> Result<(), Failure> {
    let opts = options(&args)?;
    let mut files = Vec::new();
    for p in &args.paths {
        collect(p, &mut files).with_context(|| format!("cannot list {}", p.display()))?;
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !is_html_name(&name) && InputFormat::from_name(&name) == Some(InputFormat::Warc) {
            let input = std::fs::File::open(&file)
                .with_context(|| format!("cannot open {}", file.display()))?;
            let ingest_opts = IngestOptions::with_inputs(vec![name.clone()]);
            let mut failed = None;
            let mut emit = |b: RecordBatch| {
                if let Err(e) = print_batch(&b, &opts, args.full, &mut out) {
                    failed = Some(e);
                    return Err(ingest::Stop);
                }
                Ok(())
            };
            let data = ingest::read_stream(
                std::io::BufReader::new(input),
                &name,
                InputFormat::Warc,
                &ingest_opts,
                &mut emit,
            )
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            if let Some(e) = failed {
                return Err(e.into());
            }
            if data.rejected() > 0 {
                tracing::warn!(
                    file = %file.display(),
                    rejected = data.rejected(),
                    "records could not be read (see `harman inspect` for details)"
                );
            }
            continue;
        }
        let bytes = read_maybe_gz(&file)?;
        let e = harman_extract::extract_html(&bytes, None, None, &opts);
        let id = name.strip_suffix(".gz").unwrap_or(&name);
        serde_json::to_writer(&mut out, &line(id, &e, args.full)).map_err(anyhow::Error::from)?;
        out.write_all(b"\n").map_err(anyhow::Error::from)?;
    }
    out.flush().map_err(anyhow::Error::from)?;
    Ok(())
}
