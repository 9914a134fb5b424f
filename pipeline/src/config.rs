//! Pipeline configs: the TOML file naming the run's output and its stages. Parsing checks
//! everything it can before any data is read, and every error names the file, line, field
//! and what would be valid.

use harman_stages::{Stage, StageRegistry};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A config that cannot be used: where, which field, and what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// Dotted path of the field (`stages.cc.max_record_bytes`).
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "`{field}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// One stage of the DAG.
#[derive(Debug, Clone)]
pub struct StageConfig {
    pub name: String,
    pub kind: String,
    pub depends_on: Vec<String>,
    /// Overrides the pipeline's `max_reject_fraction` for this stage.
    pub max_reject_fraction: Option<f64>,
    pub description: Option<String>,
    /// The stage's own options as written (minus the common keys).
    pub options: serde_json::Value,
    pub stage: Arc<dyn Stage>,
}

/// A parsed, checked config.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub file: PathBuf,
    /// The folder relative paths in the config are resolved against.
    pub base_dir: PathBuf,
    pub name: String,
    pub description: Option<String>,
    /// Output URL or path of the run (each stage writes under `<output>/<stage>/`).
    pub output: String,
    /// Worker threads; 0 = all cores.
    pub threads: usize,
    /// Largest share of rejected records a stage may have before the run fails.
    pub max_reject_fraction: f64,
    /// Stages in file order.
    pub stages: Vec<StageConfig>,
}

impl PipelineConfig {
    pub fn stage(&self, name: &str) -> Option<&StageConfig> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The reject fraction allowed for a stage.
    pub fn reject_limit(&self, stage: &StageConfig) -> f64 {
        stage
            .max_reject_fraction
            .unwrap_or(self.max_reject_fraction)
    }
}

const PIPELINE_KEYS: [&str; 5] = [
    "name",
    "description",
    "output",
    "threads",
    "max_reject_fraction",
];
const COMMON_STAGE_KEYS: [&str; 4] = ["kind", "depends_on", "max_reject_fraction", "description"];
/// Default for `max_reject_fraction`.
pub const DEFAULT_MAX_REJECT_FRACTION: f64 = 0.05;

struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn err(&self, table: &[&str], key: Option<&str>, message: impl Into<String>) -> ConfigError {
        let mut field: Vec<&str> = table.to_vec();
        field.extend(key);
        ConfigError {
            file: self.file.to_path_buf(),
            line: locate(self.text, table, key),
            field: (!field.is_empty()).then(|| field.join(".")),
            message: message.into(),
        }
    }
}

/// Line (1-based) of `key` inside the table `[a.b]`, else of the table header.
pub fn locate(text: &str, table: &[&str], key: Option<&str>) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let header_matches = |line: &str| {
        let l = line.trim();
        let Some(inner) = l.strip_prefix('[').and_then(|r| r.split(']').next()) else {
            return false;
        };
        let parts: Vec<String> = inner
            .split('.')
            .map(|p| p.trim().trim_matches('"').trim_matches('\'').to_string())
            .collect();
        parts.iter().map(String::as_str).eq(table.iter().copied())
    };
    let key_matches = |line: &str, key: &str| {
        let l = line.trim_start();
        let l = l
            .strip_prefix('"')
            .and_then(|r| r.strip_prefix(key))
            .and_then(|r| r.strip_prefix('"'))
            .or_else(|| l.strip_prefix(key));
        l.is_some_and(|rest| rest.trim_start().starts_with('='))
    };
    let start = if table.is_empty() {
        Some(0)
    } else {
        lines.iter().position(|l| header_matches(l))
    };
    let start = start?;
    if let Some(key) = key {
        for (i, line) in lines
            .iter()
            .enumerate()
            .skip(start + usize::from(!table.is_empty()))
        {
            if line.trim_start().starts_with('[') {
                break;
            }
            if key_matches(line, key) {
                return Some(i + 1);
            }
        }
    }
    (!table.is_empty()).then_some(start + 1)
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Read and check a config file.
pub fn load(file: &Path, registry: &StageRegistry) -> Result<PipelineConfig, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
        file: file.to_path_buf(),
        line: None,
        field: None,
        message: format!("cannot read the config: {e}"),
    })?;
    parse(&text, file, registry)
}

/// Check a config given as text (`file` names it in errors and anchors relative paths).
pub fn parse(
    text: &str,
    file: &Path,
    registry: &StageRegistry,
) -> Result<PipelineConfig, ConfigError> {
    let cx = Ctx { file, text };
    let root: toml::Table = toml::from_str(text).map_err(|e| ConfigError {
        file: file.to_path_buf(),
        line: e.span().map(|s| line_of_offset(text, s.start)),
        field: None,
        message: format!("not valid TOML: {}", e.message()),
    })?;
    for key in root.keys() {
        if key != "pipeline" && key != "stages" {
            return Err(cx.err(
                &[],
                Some(key),
                format!("unknown top-level key `{key}`; a config has a [pipeline] table and [stages.<name>] tables"),
            ));
        }
    }
    let pipeline = match root.get("pipeline") {
        Some(toml::Value::Table(t)) => t.clone(),
        Some(_) => {
            return Err(cx.err(
                &[],
                Some("pipeline"),
                "`pipeline` must be a table: [pipeline]",
            ))
        }
        None => {
            return Err(cx.err(
                &[],
                None,
                "missing [pipeline] table; add one with at least `output = \"out/run\"`",
            ))
        }
    };
    for key in pipeline.keys() {
        if !PIPELINE_KEYS.contains(&key.as_str()) {
            return Err(cx.err(
                &["pipeline"],
                Some(key),
                format!(
                    "unknown key; [pipeline] accepts {}",
                    PIPELINE_KEYS.join(", ")
                ),
            ));
        }
    }
    let string =
        |table: &toml::Table, path: &[&str], key: &str| -> Result<Option<String>, ConfigError> {
            match table.get(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(cx.err(
                    path,
                    Some(key),
                    format!("expected a string, found {}", other.type_str()),
                )),
            }
        };
    let fraction = |table: &toml::Table, path: &[&str]| -> Result<Option<f64>, ConfigError> {
        let key = "max_reject_fraction";
        let v = match table.get(key) {
            None => return Ok(None),
            Some(toml::Value::Float(f)) => *f,
            Some(toml::Value::Integer(i)) => *i as f64,
            Some(other) => {
                return Err(cx.err(
                    path,
                    Some(key),
                    format!(
                        "expected a number between 0 and 1, found {}",
                        other.type_str()
                    ),
                ))
            }
        };
        if !(0.0..=1.0).contains(&v) {
            return Err(cx.err(
                path,
                Some(key),
                format!("{v} is not a fraction; use a number between 0 and 1, e.g. 0.05 for 5%"),
            ));
        }
        Ok(Some(v))
    };
    let output = string(&pipeline, &["pipeline"], "output")?.ok_or_else(|| {
        cx.err(&["pipeline"], None, "missing `output`: where the run writes, e.g. output = \"out/run\" or \"s3://bucket/prefix\"")
    })?;
    let threads = match pipeline.get("threads") {
        None => 0,
        Some(toml::Value::Integer(n)) if *n >= 0 && *n <= 4096 => *n as usize,
        Some(other) => {
            return Err(cx.err(
                &["pipeline"],
                Some("threads"),
                format!("expected a thread count from 0 (all cores) to 4096, found {other}"),
            ))
        }
    };
    let name = string(&pipeline, &["pipeline"], "name")?.unwrap_or_else(|| {
        file.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pipeline".into())
    });
    let description = string(&pipeline, &["pipeline"], "description")?;
    let max_reject_fraction =
        fraction(&pipeline, &["pipeline"])?.unwrap_or(DEFAULT_MAX_REJECT_FRACTION);

    let stages_table = match root.get("stages") {
        Some(toml::Value::Table(t)) if !t.is_empty() => t.clone(),
        Some(toml::Value::Table(_)) | None => {
            return Err(cx.err(
                &[],
                None,
                "no stages; add at least one [stages.<name>] table with a `kind`",
            ))
        }
        Some(_) => {
            return Err(cx.err(
                &[],
                Some("stages"),
                "`stages` must be tables: [stages.<name>]",
            ))
        }
    };
    // Stage order: as written in the file (toml::Table is sorted, so order by line).
    let mut names: Vec<(usize, String)> = stages_table
        .keys()
        .map(|k| {
            (
                locate(text, &["stages", k], None).unwrap_or(usize::MAX),
                k.clone(),
            )
        })
        .collect();
    names.sort();
    let context = harman_stages::StageContext {
        base_dir: file
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    let mut stages = Vec::new();
    for (_, name) in names {
        let path = ["stages", name.as_str()];
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(cx.err(
                &path,
                None,
                "stage names may use letters, digits, `_` and `-` only (they name output folders)",
            ));
        }
        let table = match &stages_table[&name] {
            toml::Value::Table(t) => t.clone(),
            _ => {
                return Err(cx.err(
                    &["stages"],
                    Some(&name),
                    "a stage must be a table: [stages.<name>]",
                ))
            }
        };
        let kind = string(&table, &path, "kind")?.ok_or_else(|| {
            cx.err(
                &path,
                None,
                format!("missing `kind`; one of {}", registry.kinds().join(", ")),
            )
        })?;
        let depends_on = match table.get("depends_on") {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    cx.err(
                        &path,
                        Some("depends_on"),
                        "expected a list of stage names, e.g. depends_on = [\"ingest\"]",
                    )
                })?,
            Some(toml::Value::String(s)) => vec![s.clone()],
            Some(_) => {
                return Err(cx.err(
                    &path,
                    Some("depends_on"),
                    "expected a list of stage names, e.g. depends_on = [\"ingest\"]",
                ))
            }
        };
        let max_reject_fraction = fraction(&table, &path)?;
        let description = string(&table, &path, "description")?;
        let mut options = table.clone();
        for key in COMMON_STAGE_KEYS {
            options.remove(key);
        }
        let options =
            serde_json::to_value(&options).map_err(|e| cx.err(&path, None, e.to_string()))?;
        let stage = match registry.build(&kind, &options, &context) {
            None => {
                return Err(cx.err(
                    &path,
                    Some("kind"),
                    format!(
                        "unknown stage kind {kind:?}; known kinds: {}",
                        registry.kinds().join(", ")
                    ),
                ))
            }
            Some(Err(e)) => return Err(cx.err(&path, e.field.as_deref(), e.message)),
            Some(Ok(stage)) => stage,
        };
        stages.push(StageConfig {
            name,
            kind,
            depends_on,
            max_reject_fraction,
            description,
            options,
            stage,
        });
    }
    let base_dir = context.base_dir.clone();
    let config = PipelineConfig {
        file: file.to_path_buf(),
        base_dir,
        name,
        description,
        output,
        threads,
        max_reject_fraction,
        stages,
    };
    crate::dag::check(&config).map_err(|(stage, key, message)| {
        let path = ["stages", stage.as_str()];
        cx.err(&path, key, message)
    })?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<PipelineConfig, ConfigError> {
        parse(
            text,
            Path::new("configs/test.toml"),
            &harman_stages::registry(),
        )
    }

    #[test]
    fn errors_name_line_field_and_fix() {
        let text = "[pipeline]\noutput = \"out\"\n\n[stages.cc]\nkind = \"ingest\"\ninputs = [\"a.warc.gz\"]\nmax_record_bytes = 0\n";
        let e = parse_str(text).unwrap_err();
        assert_eq!(e.line, Some(7));
        assert_eq!(e.field.as_deref(), Some("stages.cc.max_record_bytes"));
        assert!(
            e.to_string()
                .starts_with("configs/test.toml:7: `stages.cc.max_record_bytes`"),
            "{e}"
        );
        assert!(e.message.contains("between 1 and"), "{e}");

        let text = "[pipeline]\noutput = \"out\"\n[stages.cc]\nkind = \"ingest\"\ninputs = [\"a\"]\nrecord_type = [\"response\"]\n";
        let e = parse_str(text).unwrap_err();
        assert_eq!(e.line, Some(6), "{e}");
        assert!(
            e.message.contains("record_types"),
            "the valid names are listed: {e}"
        );

        let text = "[pipeline]\noutput = \"out\"\nmax_reject_fraction = 1.5\n[stages.cc]\nkind = \"ingest\"\ninputs = [\"a\"]\n";
        let e = parse_str(text).unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(3), Some("pipeline.max_reject_fraction"))
        );

        let text = "[pipeline]\noutput = \"out\"\n[stages.cc]\nkind = \"ingestt\"\n";
        let e = parse_str(text).unwrap_err();
        assert!(
            e.message
                .contains("known kinds: dedup, eval, extract, filter, ingest"),
            "{e}"
        );

        let text = "[pipeline]\noutput = \"out\"\n[stages.cc]\nkind = \"ingest\"\ninputs = [\"a\"]\n[stages.f]\nkind = \"filter\"\ndepends_on = [\"cc\"]\nkeep = \"lang = 'en' AND toxicty < 0.5\"\n";
        let e = parse_str(text).unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(9), Some("stages.f.keep")),
            "{e}"
        );
        assert!(
            e.message.contains("toxicty") && e.message.contains("toxicity"),
            "{e}"
        );

        let e = parse_str("[pipeline\n").unwrap_err();
        assert_eq!(e.line, Some(1));
    }

    #[test]
    fn stages_keep_file_order() {
        let text = "[pipeline]\noutput = \"out\"\n[stages.zeta]\nkind = \"ingest\"\ninputs = [\"a\"]\n[stages.alpha]\nkind = \"ingest\"\ninputs = [\"b\"]\n";
        let c = parse_str(text).unwrap();
        let names: Vec<&str> = c.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["zeta", "alpha"]);
        assert_eq!(c.max_reject_fraction, DEFAULT_MAX_REJECT_FRACTION);
    }
}
