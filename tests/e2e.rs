//! End-to-end tests of the `harman` binary on the real samples in `tests/data`: the
//! quickstart, determinism across thread counts and runs, resume after a kill, bad input,
//! config errors, verification, and a full run against a real S3-compatible server (moto)
//! on 127.0.0.1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn harman(args: &[&str]) -> Output {
    harman_env(args, &[])
}

fn harman_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harman"));
    cmd.args(args).current_dir(repo());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("harman runs")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", text(&o));
    o
}

/// The columns of a stage's line in `harman run`'s summary table
/// (stage, shards, rows, rejected, skipped, seconds, output).
fn summary(o: &Output, stage: &str) -> Vec<String> {
    let out = String::from_utf8_lossy(&o.stdout);
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|cols| cols.first().map(String::as_str) == Some(stage))
        .unwrap_or_else(|| panic!("no {stage} line in {out}"))
}

/// Every file under `dir` (relative path → bytes).
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn manifest(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("_manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Records of the kept types in a WARC sample, from warcio's reference counts.
fn warcio_count(file: &str, types: &[&str]) -> u64 {
    let counts =
        std::fs::read_to_string(repo().join("tests/data/warc/warcio_record_counts.jsonl")).unwrap();
    for line in counts.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["file"] == file {
            return types.iter().filter_map(|t| v["counts"][t].as_u64()).sum();
        }
    }
    panic!("{file} not in warcio_record_counts.jsonl")
}

const KEPT: [&str; 4] = ["response", "resource", "conversion", "metadata"];

fn quickstart(out: &Path, threads: &str) -> Output {
    ok(harman(&[
        "run",
        "configs/quickstart.toml",
        "--output",
        out.to_str().unwrap(),
        "--threads",
        threads,
    ]))
}

#[test]
fn quickstart_ingests_the_samples_with_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    quickstart(&out, "2");
    let crawl = manifest(&out.join("crawl"));
    let want: u64 = [
        "commoncrawl/CC-MAIN-20200808165417-20200808195417-00395.excerpt.warc.gz",
        "commoncrawl/jwarc-cc.warc.gz",
        "commoncrawl/whirlwind.warc.gz",
        "commoncrawl/whirlwind.warc.wat.gz",
        "commoncrawl/whirlwind.warc.wet.gz",
    ]
    .iter()
    .map(|f| warcio_count(f, &KEPT))
    .sum();
    assert_eq!(crawl["counters"]["documents"], want);
    assert_eq!(crawl["status"], "ok");
    assert_eq!(crawl["inputs"].as_array().unwrap().len(), 5);
    for input in crawl["inputs"].as_array().unwrap() {
        assert_eq!(input["sha256"].as_str().unwrap().len(), 64);
    }
    let pile = manifest(&out.join("pile"));
    let zst = std::fs::read(repo().join("tests/data/text/pile_style/shard-00.jsonl.zst")).unwrap();
    let lines = zstd::decode_all(&zst[..])
        .unwrap()
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(pile["counters"]["documents"], lines as u64);
    assert_eq!(pile["outputs"][0]["rows"], lines as u64);
    assert!(out.join("pile/part-00000.parquet").exists());
    assert!(
        !out.join("crawl/_staging").exists(),
        "staging is cleaned up"
    );
    // The last stage: training shards with tokens counted per ingest stage and language.
    let tokens = manifest(&out.join("tokens"));
    let c = |k: &str| tokens["counters"][k].as_u64().unwrap_or(0);
    assert!(
        c("tokens.source.crawl") > 0 && c("tokens.source.pile") > 0,
        "{tokens}"
    );
    assert_eq!(
        c("tokens.source.crawl") + c("tokens.source.pile"),
        c("tokens")
    );
    assert!(c("tokens.lang.en") > 0);
    assert!(out.join("tokens/train_000000.bin").exists());
    assert!(out.join("tokens/index.parquet").exists());
    assert!(std::fs::read_to_string(out.join("tokens/_model_plan.txt"))
        .unwrap()
        .contains("Chinchilla plan"));
    // The train stage: the configured steps, the final checkpoint, the loss curve.
    let model = manifest(&out.join("model"));
    assert_eq!(model["counters"]["steps"], 10);
    assert_eq!(model["counters"]["tokens"], 10 * 4 * 32);
    let log = read_parquet(&out.join("model/log.parquet"));
    assert_eq!(log.num_rows(), 10);
    for f in [
        "checkpoint/model.safetensors",
        "checkpoint/state.json",
        "loss.svg",
    ] {
        assert!(out.join("model").join(f).exists(), "{f}");
    }
    let g = ok(harman(&[
        "generate",
        "--checkpoint",
        out.join("model/_checkpoints").to_str().unwrap(),
        "--max-tokens",
        "3",
    ]));
    assert!(!g.stdout.is_empty());
    // The eval stage: the tiny model scored on held-out shards and the bundled tasks.
    let eval = manifest(&out.join("eval"));
    assert_eq!(eval["counters"]["items.hellaswag"], 8);
    assert_eq!(eval["counters"]["items.lambada"], 8);
    assert_eq!(eval["counters"]["tokens.val"], 2048);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("eval/eval.json")).unwrap()).unwrap();
    assert_eq!(report["step"], 10);
    let hs = &report["multiple_choice"]["hellaswag"];
    assert_eq!(hs["items"], 8);
    assert_eq!(hs["chance"], 0.25);
    let val_loss = report["intrinsic"]["val"]["loss"].as_f64().unwrap();
    assert!(val_loss > 5.0 && val_loss < 11.5, "{val_loss}");
    let results = read_parquet(&out.join("eval/results.parquet"));
    assert_eq!(
        results.num_rows() as u64,
        eval["counters"]["metrics"].as_u64().unwrap()
    );
    let md = std::fs::read_to_string(out.join("eval/report.md")).unwrap();
    assert!(
        md.contains("| hellaswag acc_norm |")
            && md.contains("![training and validation loss](loss.svg)")
    );
    assert!(out.join("eval/loss.svg").exists());
    let verify = ok(harman(&["verify", out.to_str().unwrap()]));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("all outputs match"));
    let inspect = ok(harman(&[
        "inspect",
        out.join("pile").to_str().unwrap(),
        "--rows",
        "1",
    ]));
    let shown = String::from_utf8_lossy(&inspect.stdout).into_owned();
    assert!(
        shown.contains("pile_set_name") && shown.contains("documents"),
        "{shown}"
    );
}

/// The quickstart's extract stage: one `text` row per `documents` row, in the same order,
/// HTML payloads extracted, WET/JSONL text passed through, every row with a status.
#[test]
fn extract_stage_turns_documents_into_text() {
    use arrow::array::AsArray;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    quickstart(&out, "2");
    let text = manifest(&out.join("text"));
    assert_eq!(text["table"], "text");
    let docs = manifest(&out.join("crawl"))["counters"]["documents"]
        .as_u64()
        .unwrap()
        + manifest(&out.join("pile"))["counters"]["documents"]
            .as_u64()
            .unwrap();
    assert_eq!(text["counters"]["documents"], docs);
    let rows: u64 = text["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(rows, docs);
    assert!(text["counters"]["status.ok"].as_u64().unwrap() > 0);
    assert_eq!(
        text["counters"]["status.passthrough"].as_u64().unwrap(),
        manifest(&out.join("pile"))["counters"]["documents"]
            .as_u64()
            .unwrap()
            + 1,
        "the Pile lines and the one WET conversion pass through"
    );
    // Row order and ids follow the documents part.
    let docs = read_parquet(&out.join("crawl/part-00000.parquet"));
    let texts = read_parquet(&out.join("text/part-00000.parquet"));
    assert_eq!(docs.num_rows(), texts.num_rows());
    let doc_ids = docs.column_by_name("id").unwrap().as_string::<i32>();
    let text_ids = texts.column_by_name("id").unwrap().as_string::<i32>();
    let status = texts.column_by_name("status").unwrap().as_string::<i32>();
    let kinds = docs
        .column_by_name("record_type")
        .unwrap()
        .as_string::<i32>();
    let body = texts.column_by_name("text").unwrap().as_string::<i32>();
    for i in 0..docs.num_rows() {
        assert_eq!(doc_ids.value(i), text_ids.value(i));
        if kinds.value(i) == "metadata" {
            assert_eq!(status.value(i), "unsupported");
        }
        if status.value(i) == "ok" {
            assert!(!body.value(i).trim().is_empty());
            assert!(
                !body.value(i).contains("<div"),
                "markup left in {}",
                body.value(i)
            );
        }
    }
}

/// Every row of a Parquet file, as one batch.
fn read_parquet(path: &Path) -> arrow::record_batch::RecordBatch {
    let f = std::fs::File::open(path).unwrap();
    let batches: Vec<_> = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// Every row of a stage folder's parts, in part order, as one batch.
fn read_parts(dir: &Path) -> arrow::record_batch::RecordBatch {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("part-") && n.ends_with(".parquet")
        })
        .collect();
    parts.sort();
    let batches: Vec<_> = parts.iter().map(|p| read_parquet(p)).collect();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// The quickstart's filter stage: one annotated `filtered` row per `text` row; the funnel in
/// the manifest adds up and matches the rows; drop reasons are steps of the predicate; the
/// plot is written and listed; `harman inspect` prints the funnel; a new predicate changes
/// the decisions and nothing else.
#[test]
fn filter_stage_annotates_and_reports_its_funnel() {
    use arrow::array::{Array, AsArray};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    quickstart(&out, "2");
    let m = manifest(&out.join("filtered"));
    assert_eq!(m["table"], "filtered");
    let c = &m["counters"];
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    let text_rows = manifest(&out.join("text"))["counters"]["documents"]
        .as_u64()
        .unwrap();
    assert_eq!(n("documents"), text_rows);
    assert_eq!(n("kept") + n("dropped"), text_rows);
    assert!(n("kept") > 0 && n("dropped") > 0, "{c}");
    let steps: Vec<String> = m["params"]["conjuncts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(steps[0], "text IS NOT NULL");
    let firsts: u64 = steps.iter().map(|s| n(&format!("dropped_first.{s}"))).sum();
    assert_eq!(firsts, n("dropped"));
    for s in &steps {
        assert!(n(&format!("failed_any.{s}")) >= n(&format!("dropped_first.{s}")));
    }

    let rows = read_parts(&out.join("filtered"));
    assert_eq!(rows.num_rows() as u64, text_rows);
    let keep = rows.column_by_name("keep").unwrap().as_boolean();
    let reason = rows
        .column_by_name("drop_reason")
        .unwrap()
        .as_string::<i32>();
    let lang = rows.column_by_name("lang").unwrap().as_string::<i32>();
    let body = rows.column_by_name("text").unwrap().as_string::<i32>();
    let emails = rows
        .column_by_name("pii_emails")
        .unwrap()
        .as_primitive::<arrow::datatypes::UInt32Type>();
    let tox = rows
        .column_by_name("toxicity")
        .unwrap()
        .as_primitive::<arrow::datatypes::Float64Type>();
    let mut kept = 0;
    let mut email_total = 0u64;
    for i in 0..rows.num_rows() {
        if keep.value(i) {
            kept += 1;
            assert!(reason.is_null(i));
            assert_eq!(lang.value(i), "en");
            assert!(tox.value(i) < 0.5);
        } else {
            assert!(
                steps.contains(&reason.value(i).to_string()),
                "{}",
                reason.value(i)
            );
        }
        // The shipped model is for English: other languages get no score.
        assert_eq!(tox.is_valid(i), lang.is_valid(i) && lang.value(i) == "en");
        email_total += emails.value(i) as u64;
        if emails.value(i) > 0 {
            assert!(body.value(i).contains("<EMAIL>"));
        }
    }
    assert_eq!(kept, n("kept"));
    assert_eq!(email_total, n("pii.emails"));
    assert!(email_total > 0, "the sample has e-mail addresses: {c}");
    let svg = std::fs::read_to_string(out.join("filtered/_funnel.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains(&format!("{} kept", n("kept"))));
    assert_eq!(m["reports"][0]["path"], "_funnel.svg");
    ok(harman(&["verify", out.to_str().unwrap()]));

    let o = ok(harman(&["inspect", out.join("filtered").to_str().unwrap()]));
    let s = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "funnel",
        "documents in",
        "lang = 'en'",
        "kept",
        "_funnel.svg",
    ] {
        assert!(s.contains(needle), "{needle} in {s}");
    }

    // Another predicate: the annotations are the same and only the decisions change.
    let config = std::fs::read_to_string(repo().join("configs/quickstart.toml"))
        .unwrap()
        .replace("\"../", &format!("\"{}/", repo().display()))
        .replace(
            "# keep = \"lang = 'en' AND lang_score >= 0.65 AND NOT gopher_drop AND toxicity < 0.5\"",
            "keep = \"words >= 100 AND badwords = 0\"",
        );
    let path = dir.path().join("other.toml");
    std::fs::write(&path, config).unwrap();
    ok(harman(&[
        "run",
        path.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]));
    let again = read_parts(&out.join("filtered"));
    for col in [
        "text",
        "lang",
        "words",
        "gopher_drop",
        "toxicity",
        "badwords",
    ] {
        assert_eq!(
            rows.column_by_name(col).unwrap().to_data(),
            again.column_by_name(col).unwrap().to_data(),
            "{col}"
        );
    }
    let words = again
        .column_by_name("words")
        .unwrap()
        .as_primitive::<arrow::datatypes::UInt32Type>();
    let bad = again
        .column_by_name("badwords")
        .unwrap()
        .as_primitive::<arrow::datatypes::UInt32Type>();
    let keep2 = again.column_by_name("keep").unwrap().as_boolean();
    for i in 0..again.num_rows() {
        assert_eq!(keep2.value(i), words.value(i) >= 100 && bad.value(i) == 0);
    }
    assert_ne!(keep2, keep);
}

/// `harman train-classifier` fits a model (deterministically) and reports held-out scores;
/// `harman classify` scores CSV, JSONL and Parquet rows with it or with the shipped model.
#[test]
fn train_classifier_and_classify_commands() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.htox");
    let data = "tests/data/toxicity/sample.jsonl";
    let o = ok(harman(&[
        "train-classifier",
        data,
        "--out",
        model.to_str().unwrap(),
        "--name",
        "test-v1",
    ]));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("held out") && s.contains("F1"), "{s}");
    let first = std::fs::read(&model).unwrap();
    ok(harman(&[
        "train-classifier",
        data,
        "--out",
        model.to_str().unwrap(),
        "--name",
        "test-v1",
    ]));
    assert_eq!(
        first,
        std::fs::read(&model).unwrap(),
        "training is deterministic"
    );

    // CSV with other column names and True/False labels.
    let o = ok(harman(&[
        "classify",
        "--model",
        model.to_str().unwrap(),
        "--id-column",
        "rev_id",
        "--text-column",
        "comment",
        "tests/data/toxicity/sample.csv",
    ]));
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "id,score");
    assert_eq!(lines.len(), 121);
    for l in &lines[1..] {
        let score: f64 = l.rsplit(',').next().unwrap().parse().unwrap();
        assert!((0.0..=1.0).contains(&score), "{l}");
    }

    // The shipped model separates the labeled rows.
    let o = ok(harman(&["classify", data]));
    let scores: BTreeMap<String, f64> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .skip(1)
        .map(|l| {
            let (id, s) = l.rsplit_once(',').unwrap();
            (id.trim_matches('"').to_string(), s.parse().unwrap())
        })
        .collect();
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(repo().join(data))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(scores.len(), rows.len());
    let mean = |toxic: u64| {
        let v: Vec<f64> = rows
            .iter()
            .filter(|r| r["toxic"] == toxic)
            .map(|r| scores[r["id"].as_str().unwrap()])
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(
        mean(1) > mean(0) + 0.3,
        "toxic {} vs clean {}",
        mean(1),
        mean(0)
    );

    // Parquet input.
    let pq = dir.path().join("rows.parquet");
    {
        use std::sync::Arc;
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("id", arrow::datatypes::DataType::Utf8, false),
            arrow::datatypes::Field::new("text", arrow::datatypes::DataType::Utf8, true),
        ]));
        let batch = arrow::record_batch::RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(arrow::array::StringArray::from(vec!["a", "b"])),
                Arc::new(arrow::array::StringArray::from(vec![
                    Some("Thank you for the helpful edit."),
                    None,
                ])),
            ],
        )
        .unwrap();
        let f = std::fs::File::create(&pq).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(f, schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    let o = ok(harman(&["classify", pq.to_str().unwrap()]));
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.lines().nth(1).unwrap().starts_with("a,"));

    // Errors: a label that is not one names the row; a missing model is a usage error.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "id,text,toxic\n1,hello there,1\n2,fine,maybe\n").unwrap();
    let o = harman(&[
        "train-classifier",
        bad.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("row 2") && text(&o).contains("maybe"),
        "{}",
        text(&o)
    );
    // A bad row of the input is reported with its line and skipped; the rest is scored.
    let rows = dir.path().join("rows.jsonl");
    std::fs::write(
        &rows,
        "{\"id\":\"a\",\"text\":\"thanks\"}\nnot json\n{\"id\":\"c\",\"text\":\"hello\"}\n",
    )
    .unwrap();
    let o = harman(&["classify", rows.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("line 2 is not JSON"), "{}", text(&o));
    let scored: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    assert_eq!(scored, ["id", "a", "c"]);
    let o = harman(&["classify", "--model", "no/such.htox", data]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

/// `harman extract` prints one JSONL line per page, with the stage's code and options.
#[test]
fn extract_command_prints_jsonl_for_files_folders_and_warcs() {
    let o = ok(harman(&[
        "extract",
        "tests/data/html/trafilatura",
        "--full",
    ]));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6);
    let ev: serde_json::Value = serde_json::from_slice(
        &std::fs::read(repo().join("tests/data/html/trafilatura/evaldata.json")).unwrap(),
    )
    .unwrap();
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    for entry in ev.as_object().unwrap().values() {
        let file = entry["html_file"].as_str().unwrap().trim_end_matches(".gz");
        let line = lines.iter().find(|l| l["id"] == file).unwrap();
        assert_eq!(line["status"], "ok");
        let text = norm(line["text"].as_str().unwrap());
        for w in entry["with"].as_array().unwrap() {
            assert!(text.contains(&norm(w.as_str().unwrap())), "{file}: {w}");
        }
    }
    // A WARC: one line per record, keyed by WARC-Record-ID.
    let o = ok(harman(&[
        "extract",
        "tests/data/warc/commoncrawl/CC-MAIN-20200808165417-20200808195417-00395.excerpt.warc.gz",
    ]));
    let n = String::from_utf8_lossy(&o.stdout).lines().count() as u64;
    assert_eq!(
        n,
        warcio_count(
            "commoncrawl/CC-MAIN-20200808165417-20200808195417-00395.excerpt.warc.gz",
            &["response", "resource", "conversion", "metadata"]
        )
    );
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("{\"id\":\"<urn:uuid:"));
    // Options are checked like a config's.
    let bad = harman(&[
        "extract",
        "tests/data/html/aeb",
        "--options",
        "favor = \"precisely\"",
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("favor"));
}

/// Parquet input: the Pile stage's own output read back as a source (text column + a
/// struct-free metadata column), row for row.
#[test]
fn parquet_shards_are_ingested_by_column() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    quickstart(&out, "2");
    let config = dir.path().join("parquet.toml");
    std::fs::write(
        &config,
        "[pipeline]\noutput = \"again\"\n[stages.docs]\nkind = \"ingest\"\n\
         inputs = [\"run/pile/part-*.parquet\"]\ntext_field = \"text\"\nurl_field = \"source_url\"\nmeta_fields = [\"meta\", \"source_index\"]\n",
    )
    .unwrap();
    ok(harman(&["run", config.to_str().unwrap()]));
    let m = manifest(&dir.path().join("again/docs"));
    let pile = manifest(&out.join("pile"));
    assert_eq!(m["outputs"][0]["rows"], pile["outputs"][0]["rows"]);
    assert_eq!(m["counters"]["text_bytes"], pile["counters"]["text_bytes"]);
    let shown = String::from_utf8_lossy(
        &ok(harman(&[
            "inspect",
            dir.path().join("again/docs").to_str().unwrap(),
            "--rows",
            "1",
        ]))
        .stdout,
    )
    .into_owned();
    assert!(
        shown.contains("source_format    parquet") && shown.contains("\"source_index\":1"),
        "{shown}"
    );
    // A text column that does not exist is an error naming the columns there are.
    std::fs::write(
        &config,
        "[pipeline]\noutput = \"again2\"\n[stages.docs]\nkind = \"ingest\"\ninputs = [\"run/pile/part-*.parquet\"]\ntext_field = \"body\"\n",
    )
    .unwrap();
    let o = harman(&["run", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("column `body` not found"),
        "{}",
        text(&o)
    );
}

#[test]
fn outputs_are_byte_identical_across_thread_counts_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let runs: Vec<PathBuf> = ["1", "2", "2"]
        .iter()
        .enumerate()
        .map(|(i, threads)| {
            let out = dir.path().join(format!("run{i}"));
            quickstart(&out, threads);
            out
        })
        .collect();
    let first = tree(&runs[0]);
    assert!(first.len() >= 14, "{:?}", first.keys());
    for other in &runs[1..] {
        let t = tree(other);
        assert_eq!(
            first.keys().collect::<Vec<_>>(),
            t.keys().collect::<Vec<_>>()
        );
        for (k, v) in &first {
            assert!(t[k] == *v, "{k} differs between runs");
        }
    }
}

/// A config over the whole WARC sample folder (many shards, some malformed).
fn corpus_config(dir: &Path, max_reject_fraction: f64) -> PathBuf {
    let data = repo().join("tests/data/warc");
    let path = dir.join("corpus.toml");
    std::fs::write(
        &path,
        format!(
            "[pipeline]\nname = \"corpus\"\noutput = \"out\"\nmax_reject_fraction = {max_reject_fraction}\n\n\
             [stages.warcs]\nkind = \"ingest\"\nformat = \"warc\"\n\
             inputs = [\"{0}/other/*\", \"{0}/edge_cases/*\", \"{0}/commoncrawl/*.warc*.gz\", \"{0}/malformed/*\"]\n",
            data.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn killed_run_resumes_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let config = corpus_config(dir.path(), 1.0);
    let config = config.to_str().unwrap();
    let full = dir.path().join("full");
    ok(harman(&[
        "run",
        config,
        "--output",
        full.to_str().unwrap(),
        "--threads",
        "2",
    ]));
    let shards = manifest(&full.join("warcs"))["outputs"]
        .as_array()
        .unwrap()
        .len();
    assert!(shards >= 30, "{shards} shards");

    let resumed = dir.path().join("resumed");
    let killed = harman_env(
        &[
            "run",
            config,
            "--output",
            resumed.to_str().unwrap(),
            "--threads",
            "2",
        ],
        &[("HARMAN_TEST_ABORT_AFTER_SHARDS", "7")],
    );
    assert_eq!(killed.status.code(), Some(86), "{}", text(&killed));
    assert!(!resumed.join("warcs/_manifest.json").exists());
    let staged = std::fs::read_dir(resumed.join("warcs/_staging"))
        .unwrap()
        .count();
    assert!(staged >= 1, "the kill left a staged, uncommitted shard");
    let committed = std::fs::read_dir(resumed.join("warcs/_markers"))
        .unwrap()
        .count();
    assert!((7..shards).contains(&committed), "{committed} committed");

    let rerun = ok(harman(&[
        "run",
        config,
        "--output",
        resumed.to_str().unwrap(),
        "--threads",
        "1",
    ]));
    assert_eq!(
        summary(&rerun, "warcs")[4],
        committed.to_string(),
        "committed shards are skipped"
    );
    let (a, b) = (tree(&full), tree(&resumed));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same files, no duplicates"
    );
    for (k, v) in &a {
        assert!(b[k] == *v, "{k} differs after resume");
    }

    // --force recomputes every shard, to the same bytes.
    let forced = ok(harman(&[
        "run",
        config,
        "--output",
        resumed.to_str().unwrap(),
        "--force",
    ]));
    assert_eq!(summary(&forced, "warcs")[4], "0");
    assert_eq!(tree(&resumed), a);
}

fn read_rejects(dir: &Path) -> Vec<(String, u64, String)> {
    use arrow::array::AsArray;
    let mut rows = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir.join("rejects")) else {
        return rows;
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in files {
        let file = std::fs::File::open(&f).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let b = batch.unwrap();
            let url = b.column_by_name("source_url").unwrap().as_string::<i32>();
            let off = b
                .column_by_name("source_offset")
                .unwrap()
                .as_primitive::<arrow::datatypes::UInt64Type>();
            let reason = b.column_by_name("reason").unwrap().as_string::<i32>();
            for i in 0..b.num_rows() {
                rows.push((
                    url.value(i).to_string(),
                    off.value(i),
                    reason.value(i).to_string(),
                ));
            }
        }
    }
    rows
}

#[test]
fn bad_input_is_rejected_with_location_and_the_rest_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let config = corpus_config(dir.path(), 1.0);
    let out = dir.path().join("out");
    ok(harman(&[
        "run",
        config.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]));
    let m = manifest(&out.join("warcs"));
    let rejects = read_rejects(&out.join("warcs"));
    let rejected: u64 = m["counters"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("rejected."))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    assert_eq!(
        rejects.len() as u64,
        rejected,
        "every counted reject is listed"
    );
    let find = |name: &str| {
        rejects
            .iter()
            .filter(|r| r.0.ends_with(name))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        find("malformed/clipped.warc.gz"),
        [(
            find("clipped.warc.gz")[0].0.clone(),
            0,
            "truncated_record".into()
        )]
    );
    assert_eq!(find("double-single-inflate-error.gz")[0].2, "corrupt_gzip");
    assert_eq!(find("example-trunc.warc")[0].1, 2560);
    // The good files lost nothing: kept records equal warcio's counts for them.
    let counts =
        std::fs::read_to_string(repo().join("tests/data/warc/warcio_record_counts.jsonl")).unwrap();
    let mut good_total = 0;
    let mut good_files = Vec::new();
    for line in counts.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let f = v["file"].as_str().unwrap();
        if v["error"].is_null()
            && !f.starts_with("malformed/")
            && repo().join("tests/data/warc").join(f).exists()
        {
            good_total += warcio_count(f, &KEPT);
            good_files.push(f.to_string());
        }
    }
    let per_shard: u64 = m["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(m["outputs"].as_array().unwrap())
        .filter(|(i, _)| {
            good_files
                .iter()
                .any(|f| i["url"].as_str().unwrap().ends_with(f.as_str()))
        })
        .map(|(_, o)| o["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(per_shard, good_total);

    // The same data under a strict limit fails with exit 1 and says why; outputs stay committed.
    let strict = corpus_config(dir.path(), 0.001);
    let failed = harman(&[
        "run",
        strict.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("max_reject_fraction"),
        "{}",
        text(&failed)
    );
    assert_eq!(manifest(&out.join("warcs"))["status"], "rejects_exceeded");
}

#[test]
fn config_errors_exit_2_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[pipeline]\noutput = \"out\"\n\n[stages.cc]\nkind = \"ingest\"\ninputs = [\"x.warc.gz\"]\nmax_record_bytes = -5\n",
    )
    .unwrap();
    for cmd in ["validate", "run", "plan"] {
        let o = harman(&[cmd, bad.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("bad.toml:7") && err.contains("stages.cc.max_record_bytes"),
            "{err}"
        );
    }
    std::fs::write(
        &bad,
        "[pipeline]\noutput = \"out\"\n[stages.a]\nkind = \"ingest\"\ninputs = [\"x\"]\ndepends_on = [\"b\"]\n[stages.b]\nkind = \"ingest\"\ninputs = [\"y\"]\n",
    )
    .unwrap();
    let o = harman(&["validate", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bad.toml:6"),
        "{}",
        text(&o)
    );
    let o = harman(&["run", "configs/quickstart.toml", "--only", "nope"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no stage named \"nope\""),
        "{}",
        text(&o)
    );
}

#[test]
fn plan_prints_text_mermaid_and_dot() {
    let text_plan = ok(harman(&["plan", "configs/quickstart.toml"]));
    let s = String::from_utf8_lossy(&text_plan.stdout).into_owned();
    assert!(
        s.contains("crawl [ingest]") && s.contains("pile [ingest]"),
        "{s}"
    );
    let mermaid = String::from_utf8_lossy(
        &ok(harman(&[
            "plan",
            "configs/quickstart.toml",
            "--format",
            "mermaid",
        ]))
        .stdout,
    )
    .into_owned();
    assert!(
        mermaid.starts_with("flowchart TD") && mermaid.contains("--> crawl"),
        "{mermaid}"
    );
    let dot = String::from_utf8_lossy(
        &ok(harman(&[
            "plan",
            "configs/quickstart.toml",
            "--format",
            "dot",
        ]))
        .stdout,
    )
    .into_owned();
    assert!(
        dot.starts_with("digraph") && dot.trim_end().ends_with('}'),
        "{dot}"
    );
    for config in [
        "configs/quickstart.toml",
        "configs/commoncrawl-s3.toml",
        "configs/pile-jsonl.toml",
    ] {
        ok(harman(&["validate", config]));
    }
}

#[test]
fn verify_catches_changed_and_unlisted_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    quickstart(&out, "2");
    let flipped = out.join("crawl/part-00001.parquet");
    let mut bytes = std::fs::read(&flipped).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&flipped, bytes).unwrap();
    let cut = out.join("crawl/part-00002.parquet");
    let bytes = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    std::fs::write(out.join("pile/part-00007.parquet"), b"stray").unwrap();
    let o = harman(&["verify", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "MISMATCH  file://",
        "part-00001.parquet: sha256",
        "part-00002.parquet: size",
        "UNLISTED",
        "part-00007.parquet",
    ] {
        assert!(s.contains(needle), "{needle} in {s}");
    }
    // A rerun trusts outputs whose size matches (verify is the deep check), redoes the cut
    // one and removes the stray part; --force recomputes everything.
    let rerun = quickstart(&out, "2");
    assert_eq!(summary(&rerun, "crawl")[4], "4");
    assert!(!out.join("pile/part-00007.parquet").exists());
    ok(harman(&[
        "run",
        "configs/quickstart.toml",
        "--output",
        out.to_str().unwrap(),
        "--force",
    ]));
    ok(harman(&["verify", out.to_str().unwrap()]));
}

#[test]
fn json_logs_for_schedulers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = ok(harman(&[
        "--log-format",
        "json",
        "run",
        "configs/quickstart.toml",
        "--output",
        out.to_str().unwrap(),
    ]));
    let stderr = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
    // The summary on stdout is one JSON object per stage.
    let stdout = String::from_utf8_lossy(&o.stdout);
    let summary: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(summary.len(), 8, "{stdout}");
    let pile = summary.iter().find(|v| v["stage"] == "pile").unwrap();
    assert_eq!(
        pile["rows"],
        manifest(&out.join("pile"))["outputs"][0]["rows"]
    );
    assert_eq!(pile["status"], "ok");
}

/// moto's S3 server on a free port of 127.0.0.1, stopped on drop.
struct Moto {
    child: std::process::Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto() -> Option<Moto> {
    let Ok(server) = std::env::var("HARMAN_MOTO_SERVER") else {
        assert!(
            std::env::var("CI").is_err(),
            "HARMAN_MOTO_SERVER is not set: run the tests with scripts/test.sh"
        );
        eprintln!("skipping the S3 test: HARMAN_MOTO_SERVER is not set (scripts/test.sh sets it)");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&server)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {server}: {e}"));
    let moto = Moto {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "moto did not start on port {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Some(moto)
}

const SECRET: &str = "harman-test-secret-must-not-leak";

fn s3_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "testing-key".into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL", endpoint.into()),
        ("AWS_ALLOW_HTTP", "true".into()),
    ]
}

#[test]
fn s3_end_to_end_against_a_real_server() {
    use object_store::ObjectStoreExt;
    let Some(moto) = start_moto() else { return };
    let env = s3_env(&moto.endpoint);
    let store = {
        let mut b = object_store::aws::AmazonS3Builder::new().with_bucket_name("harman-test");
        for (k, v) in &env {
            b = match *k {
                "AWS_ACCESS_KEY_ID" => b.with_access_key_id(v),
                "AWS_SECRET_ACCESS_KEY" => b.with_secret_access_key(v),
                "AWS_REGION" => b.with_region(v),
                "AWS_ENDPOINT_URL" => b.with_endpoint(v),
                _ => b.with_allow_http(true),
            };
        }
        b.build().unwrap()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Create the bucket (moto accepts an unsigned PUT) and upload the samples.
    {
        use std::io::{Read, Write};
        let addr = moto.endpoint.trim_start_matches("http://");
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        write!(conn, "PUT /harman-test HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
        let mut reply = String::new();
        conn.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }
    let files = [
        "warc/commoncrawl/CC-MAIN-20200808165417-20200808195417-00395.excerpt.warc.gz",
        "warc/commoncrawl/whirlwind.warc.gz",
        "warc/malformed/clipped.warc.gz",
        "text/pile_style/shard-00.jsonl.zst",
    ];
    rt.block_on(async {
        for f in files {
            let bytes = std::fs::read(repo().join("tests/data").join(f)).unwrap();
            let name = f.rsplit('/').next().unwrap();
            let dir = if name.ends_with(".zst") {
                "pile"
            } else {
                "crawl/2024"
            };
            store
                .put(
                    &object_store::path::Path::from(format!("in/{dir}/{name}")),
                    bytes.into(),
                )
                .await
                .unwrap();
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("s3.toml");
    std::fs::write(
        &config,
        "[pipeline]\nname = \"s3\"\noutput = \"s3://harman-test/out\"\nmax_reject_fraction = 0.5\n\n\
         [stages.crawl]\nkind = \"ingest\"\ninputs = [\"s3://harman-test/in/crawl/*/*.warc.gz\"]\n\n\
         [stages.pile]\nkind = \"ingest\"\ninputs = [\"s3://harman-test/in/pile/\"]\nformat = \"jsonl\"\nmeta_fields = [\"meta.pile_set_name\"]\n\n\
         [stages.text]\nkind = \"extract\"\ndepends_on = [\"crawl\", \"pile\"]\n",
    )
    .unwrap();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let config = config.to_str().unwrap();
    let first = harman_env(&["run", config, "--threads", "2"], &env_refs);
    assert!(first.status.success(), "{}", text(&first));
    let verify = harman_env(&["verify", "s3://harman-test/out"], &env_refs);
    assert!(verify.status.success(), "{}", text(&verify));
    let inspect = harman_env(
        &["inspect", "s3://harman-test/out/crawl", "--rows", "1"],
        &env_refs,
    );
    assert!(inspect.status.success(), "{}", text(&inspect));
    let second = harman_env(&["run", config], &env_refs);
    assert!(second.status.success(), "{}", text(&second));

    // Same rows as a local run of the same files; the manifest names s3:// inputs.
    let manifest: serde_json::Value = rt.block_on(async {
        let bytes = store
            .get(&object_store::path::Path::from("out/crawl/_manifest.json"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    });
    let want = warcio_count(
        "commoncrawl/CC-MAIN-20200808165417-20200808195417-00395.excerpt.warc.gz",
        &KEPT,
    ) + warcio_count("commoncrawl/whirlwind.warc.gz", &KEPT);
    assert_eq!(manifest["counters"]["documents"], want);
    assert_eq!(manifest["counters"]["rejected.truncated_record"], 1);
    assert!(manifest["inputs"][0]["url"]
        .as_str()
        .unwrap()
        .starts_with("s3://harman-test/in/crawl/2024/"));
    assert!(manifest["inputs"][0]["etag"].is_string());
    assert_eq!(
        summary(&second, "crawl")[4],
        "3",
        "the rerun skips the committed shards"
    );
    // The extract stage read its upstream parts from S3: one text row per document.
    let text_rows: u64 = summary(&first, "text")[2].parse().unwrap();
    let doc_rows: u64 = summary(&first, "crawl")[2].parse::<u64>().unwrap()
        + summary(&first, "pile")[2].parse::<u64>().unwrap();
    assert_eq!(text_rows, doc_rows);

    // No credential anywhere: not in logs, not in any object written.
    for o in [&first, &verify, &inspect, &second] {
        assert!(!text(o).contains(SECRET));
    }
    let leaked = rt.block_on(async {
        use futures::TryStreamExt;
        let objects: Vec<object_store::ObjectMeta> =
            object_store::ObjectStore::list(&store, Some(&"out".into()))
                .try_collect()
                .await
                .unwrap();
        assert!(objects.len() >= 8);
        let mut leaked = false;
        for o in objects {
            let bytes = store.get(&o.location).await.unwrap().bytes().await.unwrap();
            leaked |= bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
        }
        leaked
    });
    assert!(!leaked);
}

/// `harman dedup` on the planted dedup sample, writing to `out`, with more arguments.
fn harman_dedup(out: &Path, more: &[&str]) -> Output {
    let sample = repo().join("tests/data/dedup/sample.jsonl.zst");
    let mut args = vec![
        "dedup",
        sample.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(more);
    harman(&args)
}

/// The dedup sample's pairs with Jaccard ≥ 0.7 (a, b, J).
fn dedup_truth() -> Vec<(String, String, f64)> {
    let text = std::fs::read_to_string(repo().join("tests/data/dedup/sample_truth.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| v[k].as_str().unwrap().to_string();
            (s("a"), s("b"), v["jaccard"].as_f64().unwrap())
        })
        .collect()
}

/// `harman dedup` on the planted sample: the S-curve is printed; every removed document has
/// a true duplicate (J ≥ 0.8) and nearly every duplicate is removed; one document is kept
/// per cluster, the first; the deduplicated part is the input minus the removed rows in
/// input order; outputs are byte-identical at 1 and 2 threads; a rerun reuses everything;
/// `harman verify` accepts the folder.
#[test]
fn dedup_removes_planted_duplicates_deterministically() {
    use arrow::array::{Array, AsArray};
    use std::collections::{BTreeSet, HashMap};
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, threads: &str| {
        let out = dir.path().join(name);
        let o = ok(harman_dedup(&out, &["--threads", threads]));
        (out, o)
    };
    let (a, o) = run("a", "1");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        stdout.contains("14 bands x 8 rows") && stdout.contains("<- threshold"),
        "{stdout}"
    );
    let (b, _) = run("b", "2");
    let (ta, tb) = (tree(&a), tree(&b));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (k, v) in &ta {
        assert!(tb[k] == *v, "{k} differs between 1 and 2 threads");
    }

    let clusters = read_parquet(&a.join("dedup/clusters.parquet"));
    let column = |name: &str| clusters.column_by_name(name).unwrap().clone();
    let (ids, matched) = (column("id"), column("match"));
    let (ids, matched) = (ids.as_string::<i32>(), matched.as_string::<i32>());
    let (cluster, row) = (column("cluster_id"), column("row"));
    let cluster = cluster.as_primitive::<arrow::datatypes::UInt64Type>();
    let row = row.as_primitive::<arrow::datatypes::UInt64Type>();
    let kept = column("kept");
    let kept = kept.as_boolean();
    let mut cluster_of: HashMap<String, u64> = HashMap::new();
    let mut removed: BTreeSet<String> = BTreeSet::new();
    let mut kept_rows: HashMap<u64, Vec<u64>> = HashMap::new();
    for i in 0..clusters.num_rows() {
        cluster_of.insert(ids.value(i).to_string(), cluster.value(i));
        if kept.value(i) {
            kept_rows
                .entry(cluster.value(i))
                .or_default()
                .push(row.value(i));
            assert!(matched.is_null(i));
        } else {
            removed.insert(ids.value(i).to_string());
            assert!(["exact", "near"].contains(&matched.value(i)));
        }
    }
    // One kept document per cluster: the first, whose key is the cluster's id.
    for (c, rows) in &kept_rows {
        assert_eq!(rows, &vec![*c], "cluster {c}");
    }
    assert_eq!(
        kept_rows.len(),
        cluster.iter().flatten().collect::<BTreeSet<_>>().len()
    );

    // Removal precision (every removed document has a partner with J >= 0.8) and recall.
    let truth = dedup_truth();
    let partners: BTreeSet<&String> = truth
        .iter()
        .filter(|p| p.2 >= 0.8)
        .flat_map(|p| [&p.0, &p.1])
        .collect();
    for d in &removed {
        assert!(
            partners.contains(d),
            "{d} removed without a duplicate at J >= 0.8"
        );
    }
    let close: Vec<_> = truth.iter().filter(|p| p.2 >= 0.8).collect();
    let together = close
        .iter()
        .filter(|p| cluster_of.contains_key(&p.0) && cluster_of.get(&p.0) == cluster_of.get(&p.1))
        .count();
    assert!(
        close.len() > 900 && together as f64 >= 0.97 * close.len() as f64,
        "{together} of {}",
        close.len()
    );

    // The deduplicated part: the input rows minus the removed ones, in input order.
    let input = read_parts(&a.join("text"));
    let output = read_parts(&a.join("dedup"));
    let input_ids: Vec<&str> = input
        .column_by_name("id")
        .unwrap()
        .as_string::<i32>()
        .iter()
        .flatten()
        .collect();
    let expected: Vec<&str> = input_ids
        .iter()
        .copied()
        .filter(|d| !removed.contains(*d))
        .collect();
    let got: Vec<&str> = output
        .column_by_name("id")
        .unwrap()
        .as_string::<i32>()
        .iter()
        .flatten()
        .collect();
    assert_eq!(got, expected);
    assert_eq!(input_ids.len(), 1007);

    // The manifest's counters add up; the clusters table and the S-curve are listed.
    let m = manifest(&a.join("dedup"));
    let c = &m["counters"];
    let n = |k: &str| {
        c[k].as_u64()
            .unwrap_or_else(|| panic!("no counter {k}: {c}"))
    };
    assert_eq!(n("documents"), 1007);
    assert_eq!(n("removed") as usize, removed.len());
    assert_eq!(n("written") as usize, got.len());
    assert_eq!(n("dedup.removed"), n("removed"));
    assert_eq!(
        n("dedup.exact_duplicates") + n("dedup.near_duplicates"),
        n("removed")
    );
    let exact = (0..clusters.num_rows())
        .filter(|&i| matched.is_valid(i) && matched.value(i) == "exact")
        .count();
    assert_eq!(n("dedup.exact_duplicates") as usize, exact);
    assert!(exact > 0 && n("dedup.near_duplicates") > 0);
    let reports: Vec<&str> = m["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].as_str().unwrap())
        .collect();
    assert_eq!(reports, ["clusters.parquet", "_s_curve.txt"]);

    // A rerun reuses the committed clusters and parts; verify accepts the folder.
    let again = ok(harman_dedup(&a, &[]));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("committed earlier; reused"),
        "{}",
        text(&again)
    );
    assert!(tree(&a) == ta, "a rerun changed the output");
    ok(harman(&["verify", a.join("dedup").to_str().unwrap()]));
}

/// A banding that would miss most pairs at the threshold is a config error naming `rows`
/// and a banding that would suit; so is an unknown option.
#[test]
fn dedup_refuses_a_banding_that_contradicts_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = harman_dedup(&out, &["--options", "bands = 2\nrows = 20"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("rows") && err.contains("probability 0.023") && err.contains("e.g. bands ="),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written on a config error");
    let o = harman_dedup(&out, &["--options", "treshold = 0.7"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("treshold"),
        "{}",
        text(&o)
    );
}

/// `substring = true` (ExactSubstr): the documents that remain lose the spans of 100+ bytes
/// that occurred earlier, the first occurrence stays, `bytes_out` follows the text, and the
/// result is the same at 1 and 2 threads.
#[test]
fn dedup_substring_removes_repeated_spans_from_later_documents() {
    use arrow::array::AsArray;
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, threads: &str| {
        let out = dir.path().join(name);
        ok(harman_dedup(
            &out,
            &["--threads", threads, "--options", "substring = true"],
        ));
        out
    };
    let (a, b) = (run("a", "1"), run("b", "2"));
    assert!(
        tree(&a.join("dedup")) == tree(&b.join("dedup")),
        "1 and 2 threads differ"
    );
    let input = read_parts(&a.join("text"));
    let output = read_parts(&a.join("dedup"));
    let texts =
        |batch: &arrow::record_batch::RecordBatch| -> std::collections::HashMap<String, String> {
            let ids = batch
                .column_by_name("id")
                .unwrap()
                .as_string::<i32>()
                .clone();
            let text = batch
                .column_by_name("text")
                .unwrap()
                .as_string::<i32>()
                .clone();
            (0..batch.num_rows())
                .map(|i| (ids.value(i).to_string(), text.value(i).to_string()))
                .collect()
        };
    let (before, after) = (texts(&input), texts(&output));
    let bytes_out = output
        .column_by_name("bytes_out")
        .unwrap()
        .as_primitive::<arrow::datatypes::UInt64Type>()
        .clone();
    let out_text = output
        .column_by_name("text")
        .unwrap()
        .as_string::<i32>()
        .clone();
    for i in 0..output.num_rows() {
        assert_eq!(bytes_out.value(i) as usize, out_text.value(i).len());
    }
    let shortened: Vec<&String> = after
        .keys()
        .filter(|id| after[*id].len() < before[*id].len())
        .collect();
    assert!(
        shortened.len() > 100,
        "{} documents shortened",
        shortened.len()
    );
    // What was cut from a document occurs in an earlier kept document or earlier in itself:
    // check it for a removed chunk of each shortened document.
    let order: Vec<String> = {
        let ids = output
            .column_by_name("id")
            .unwrap()
            .as_string::<i32>()
            .clone();
        (0..output.num_rows())
            .map(|i| ids.value(i).to_string())
            .collect()
    };
    for (pos, id) in order
        .iter()
        .enumerate()
        .filter(|(_, id)| after[*id].len() < before[*id].len())
        .take(20)
    {
        let (orig, kept) = (&before[id], &after[id]);
        let cut_at = orig
            .bytes()
            .zip(kept.bytes())
            .take_while(|(x, y)| x == y)
            .count();
        let mut end = (cut_at + 100).min(orig.len());
        while !orig.is_char_boundary(end) {
            end -= 1;
        }
        let mut start = cut_at;
        while !orig.is_char_boundary(start) {
            start += 1;
        }
        let chunk = &orig[start..end];
        let earlier =
            order[..pos].iter().any(|e| before[e].contains(chunk)) || orig[..start].contains(chunk);
        assert!(
            earlier,
            "{id}: removed text {chunk:?} has no earlier occurrence"
        );
    }
    let m = manifest(&a.join("dedup"));
    assert!(m["counters"]["dedup.substring_bytes"].as_u64().unwrap() > 10_000);
    assert_eq!(
        m["counters"]["dedup.substring_documents"].as_u64().unwrap() as usize,
        shortened.len()
    );
}

/// Bad lines in `harman dedup`'s input are rejected with their location (the ingest
/// stage's rejects table) and the other documents are still deduplicated.
#[test]
fn dedup_command_rejects_bad_lines_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("docs.jsonl");
    let body =
        "The threshing floor separates the grain from the chaff every single autumn morning.";
    std::fs::write(
        &input,
        format!(
            "{{\"id\": \"a\", \"text\": \"{body}\"}}\n{{\"id\": \"b\", \"text\": oops}}\n{{\"id\": \"c\", \"text\": \"{body}\"}}\n{{\"id\": \"d\", \"text\": \"Something else entirely.\"}}\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = ok(harman(&[
        "dedup",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]));
    let rejects = read_rejects(&out.join("input"));
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    // The bad line starts after the first line's bytes.
    let first_line = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .len() as u64
        + 1;
    assert_eq!(rejects[0].1, first_line, "{rejects:?}");
    let c = &manifest(&out.join("dedup"))["counters"];
    assert_eq!(
        (
            c["documents"].as_u64(),
            c["removed"].as_u64(),
            c["written"].as_u64()
        ),
        (Some(3), Some(1), Some(2)),
        "{}",
        text(&o)
    );
    assert_eq!(c["dedup.exact_duplicates"].as_u64(), Some(1));
}

/// The Pile-style sample's documents, in file order.
fn pile_texts() -> Vec<String> {
    let zst = std::fs::read(repo().join("tests/data/text/pile_style/shard-00.jsonl.zst")).unwrap();
    String::from_utf8(zstd::decode_all(&zst[..]).unwrap())
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["text"].as_str().unwrap().to_string()
        })
        .collect()
}

/// A token shard's tokens, its header checked.
fn shard_tokens(path: &Path) -> Vec<u32> {
    let bytes = std::fs::read(path).unwrap();
    let int = |i: usize| i32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().unwrap());
    assert_eq!(int(0), 20240520, "magic of {}", path.display());
    assert_eq!(int(1), 1, "version of {} (uint16 tokens)", path.display());
    let n = int(2) as usize;
    assert!(bytes[12..1024].iter().all(|&b| b == 0));
    assert_eq!(bytes.len(), 1024 + 2 * n, "length of {}", path.display());
    bytes[1024..]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32)
        .collect()
}

/// The shards of one split, in order.
fn split_shards(dir: &Path, split: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(&format!("{split}_")) && n.ends_with(".bin")
        })
        .collect();
    v.sort();
    v
}

fn harman_tokenize(out: &Path, threads: &str, options: &str) -> Output {
    let sample = repo().join("tests/data/text/pile_style/shard-00.jsonl.zst");
    harman(&[
        "tokenize",
        sample.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--threads",
        threads,
        "--options",
        options,
    ])
}

/// `harman tokenize` on the Pile-style sample: llm.c shards whose documents are exactly the
/// input texts (each once, after an end-of-text token, shuffled), an index that points at
/// them, counters that add up, byte-identical output at 1 and 2 threads, reuse on rerun.
#[test]
fn tokenize_writes_llmc_shards_that_decode_to_the_input() {
    use arrow::array::AsArray;
    let dir = tempfile::tempdir().unwrap();
    let options = "shard_tokens = 200000\nval_fraction = 0.1\nseed = 3";
    let runs: Vec<PathBuf> = ["1", "2"]
        .iter()
        .map(|t| {
            let out = dir.path().join(format!("run{t}"));
            let o = ok(harman_tokenize(&out, t, options));
            let s = String::from_utf8_lossy(&o.stdout).into_owned();
            assert!(
                s.contains("Chinchilla plan") && s.contains("tokens per source: input"),
                "{s}"
            );
            out.join("tokenize")
        })
        .collect();
    let (a, b) = (tree(&runs[0]), tree(&runs[1]));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, v) in &a {
        if !k.starts_with("_manifest") {
            assert!(b[k] == *v, "{k} differs between 1 and 2 threads");
        }
    }
    let out = &runs[0];
    let tok = harman_tokenizer::Tokenizer::gpt2();
    let eot = 50256;
    let m = manifest(out);
    let c = |k: &str| m["counters"][k].as_u64().unwrap_or(0);
    let mut decoded: Vec<String> = Vec::new();
    let mut all: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for split in ["train", "val"] {
        let shards = split_shards(out, split);
        assert!(!shards.is_empty(), "{split} shards");
        let mut tokens = Vec::new();
        for (i, s) in shards.iter().enumerate() {
            let t = shard_tokens(s);
            if i + 1 < shards.len() {
                assert_eq!(t.len(), 200_000, "a full shard");
            }
            all.insert(s.file_name().unwrap().to_string_lossy().into(), t.clone());
            tokens.extend(t);
        }
        assert_eq!(tokens[0], eot, "documents start after an end-of-text token");
        assert_eq!(tokens.len() as u64, c(&format!("shard_tokens.{split}")));
        assert_eq!(
            tokens.len() as u64,
            c(&format!("tokens.{split}")) + c(&format!("documents.{split}"))
        );
        for doc in tokens[1..].split(|&t| t == eot) {
            decoded.push(tok.decode(doc).unwrap());
        }
    }
    // Every input document exactly once, not in input order.
    let mut want = pile_texts();
    assert_ne!(decoded, want, "documents are shuffled");
    decoded.sort();
    want.sort();
    assert_eq!(decoded, want);
    assert_eq!(c("tokens"), c("tokens.train") + c("tokens.val"));
    assert_eq!(c("tokens.source.input"), c("tokens"));
    assert!(c("documents.val") > 0 && c("documents.val") < c("documents.train"));
    // The index points at each document: an end-of-text token before piece 0, pieces that
    // continue into the next shard, lengths that add up.
    let index = read_parquet(&out.join("index.parquet"));
    let shard = index.column_by_name("shard").unwrap().as_string::<i32>();
    let offset = index
        .column_by_name("offset")
        .unwrap()
        .as_primitive::<arrow::datatypes::UInt64Type>();
    let length = index
        .column_by_name("length")
        .unwrap()
        .as_primitive::<arrow::datatypes::UInt64Type>();
    let piece = index
        .column_by_name("piece")
        .unwrap()
        .as_primitive::<arrow::datatypes::UInt32Type>();
    let mut total = 0;
    for i in 0..index.num_rows() {
        let t = &all[shard.value(i)];
        let (o, l) = (offset.value(i) as usize, length.value(i) as usize);
        assert!(o + l <= t.len());
        if piece.value(i) == 0 && o > 0 {
            assert_eq!(t[o - 1], eot);
        }
        if piece.value(i) > 0 {
            assert_eq!(o, 0, "a continued document starts its shard");
        }
        assert!(!t[o..o + l].contains(&eot));
        total += l as u64;
    }
    assert_eq!(total, c("tokens"));
    assert_eq!(
        (0..index.num_rows())
            .filter(|&i| piece.value(i) == 0)
            .count() as u64,
        c("documents.train") + c("documents.val")
    );
    // Rerun: nothing recomputed; verify re-hashes the shards and checks their headers.
    let again = harman_tokenize(&dir.path().join("run1"), "2", options);
    assert!(
        text(&again).contains("whole-output step committed earlier; reused"),
        "{}",
        text(&again)
    );
    let v = ok(harman(&["verify", out.to_str().unwrap()]));
    assert!(String::from_utf8_lossy(&v.stdout).contains("all outputs match"));
    // A shard lost after the run is written again, byte for byte.
    let lost = split_shards(out, "train")[0].clone();
    let before = std::fs::read(&lost).unwrap();
    std::fs::remove_file(&lost).unwrap();
    ok(harman_tokenize(&dir.path().join("run1"), "2", options));
    assert!(std::fs::read(&lost).unwrap() == before);
    // Inspect and detokenize show the documents as text.
    let first = split_shards(out, "train")[0].clone();
    let shown = ok(harman(&["inspect", first.to_str().unwrap(), "--rows", "1"]));
    assert!(String::from_utf8_lossy(&shown.stdout).contains("version 1 (uint16)"));
    let docs = ok(harman(&[
        "detokenize",
        first.to_str().unwrap(),
        "--docs",
        "2",
    ]));
    let s = String::from_utf8_lossy(&docs.stdout);
    assert_eq!(s.matches("=== document").count(), 2, "{s}");
}

/// `harman tokenize --text FILE --ids`: one line of ids per input line, equal to tiktoken's
/// reference ids for the reference cases written one per line.
#[test]
fn tokenize_text_ids_match_tiktoken_line_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases =
        std::fs::read_to_string(repo().join("tests/data/gpt2_bpe/reference_encodings.jsonl"))
            .unwrap();
    let mut lines = Vec::new();
    let mut want = Vec::new();
    for l in cases.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let t = v["text"].as_str().unwrap();
        if !t.contains(['\n', '\r']) {
            lines.push(t.to_string());
            let ids: Vec<String> = v["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.to_string())
                .collect();
            want.push(ids.join(" "));
        }
    }
    assert!(lines.len() > 50);
    let file = dir.path().join("lines.txt");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let o = ok(harman(&[
        "tokenize",
        "--text",
        file.to_str().unwrap(),
        "--ids",
    ]));
    let got: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(got, want);
}

/// `harman train-tokenizer`: the same tokenizer.json at 1 and 2 threads; Hugging Face
/// `tokenizers` loads it and encodes every line of the sample exactly as harman does; the
/// tokenize stage writes shards with it.
#[test]
fn trained_tokenizer_json_encodes_identically_in_hugging_face() {
    let dir = tempfile::tempdir().unwrap();
    let sample = repo().join("tests/data/text/pile_style/shard-00.jsonl.zst");
    let train = |threads: &str, name: &str| {
        let path = dir.path().join(name);
        let o = ok(harman(&[
            "train-tokenizer",
            sample.to_str().unwrap(),
            "--vocab-size",
            "2000",
            "--output",
            path.to_str().unwrap(),
            "--threads",
            threads,
        ]));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("vocabulary 2000 ids"),
            "{}",
            text(&o)
        );
        std::fs::read(path).unwrap()
    };
    let json = train("1", "a.json");
    assert!(
        json == train("2", "b.json"),
        "training is deterministic across threads"
    );
    let tokenizer = dir.path().join("a.json");
    // Lines of every document, and whole short documents, as one text per line.
    let mut lines: Vec<String> = Vec::new();
    for t in pile_texts() {
        lines.extend(
            t.lines()
                .filter(|l| !l.trim().is_empty())
                .take(40)
                .map(str::to_string),
        );
    }
    let file = dir.path().join("lines.txt");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let ours = ok(harman(&[
        "tokenize",
        "--text",
        file.to_str().unwrap(),
        "--ids",
        "--tokenizer",
        tokenizer.to_str().unwrap(),
    ]));
    let ours = String::from_utf8_lossy(&ours.stdout).into_owned();
    assert_eq!(ours.lines().count(), lines.len());
    let Ok(python) = std::env::var("HARMAN_TEST_PYTHON") else {
        assert!(
            std::env::var("CI").is_err(),
            "HARMAN_TEST_PYTHON is not set: run the tests with scripts/test.sh"
        );
        eprintln!("skipping the Hugging Face comparison: HARMAN_TEST_PYTHON is not set (scripts/test.sh sets it)");
        return;
    };
    let script = "import sys\nfrom tokenizers import Tokenizer\n\
                  tok = Tokenizer.from_file(sys.argv[1])\n\
                  out = []\n\
                  for line in open(sys.argv[2], encoding='utf-8', newline='\\n').read().split('\\n')[:-1]:\n\
                  \x20   out.append(' '.join(map(str, tok.encode(line, add_special_tokens=False).ids)))\n\
                  sys.stdout.write('\\n'.join(out) + '\\n')\n";
    let o = Command::new(&python)
        .args([
            "-c",
            script,
            tokenizer.to_str().unwrap(),
            file.to_str().unwrap(),
        ])
        .output()
        .expect("python runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let theirs = String::from_utf8_lossy(&o.stdout);
    for (i, (a, b)) in ours.lines().zip(theirs.lines()).enumerate() {
        assert_eq!(a, b, "line {i}: {:?}", lines[i]);
    }
    assert_eq!(ours.lines().count(), theirs.lines().count());
    // The tokenize stage with the trained vocabulary.
    let out = dir.path().join("run");
    let opts = format!(
        "tokenizer = {:?}\nval_fraction = 0.0",
        tokenizer.to_str().unwrap()
    );
    ok(harman_tokenize(&out, "2", &opts));
    let m = manifest(&out.join("tokenize"));
    assert_eq!(m["params"]["vocab_size"], 2000);
    let tok = harman_tokenizer::Tokenizer::load(tokenizer.to_str().unwrap()).unwrap();
    let tokens: Vec<u32> = split_shards(&out.join("tokenize"), "train")
        .iter()
        .flat_map(|s| shard_tokens(s))
        .collect();
    assert!(split_shards(&out.join("tokenize"), "val").is_empty());
    let mut decoded: Vec<String> = tokens[1..]
        .split(|&t| t == 1999)
        .map(|d| tok.decode(d).unwrap())
        .collect();
    let mut want = pile_texts();
    decoded.sort();
    want.sort();
    assert_eq!(decoded, want);
}

/// `harman plan-model`: Chinchilla's own point (70B parameters, 1.4T tokens) comes back.
#[test]
fn plan_model_reproduces_chinchilla() {
    let o = ok(harman(&["plan-model", "--tokens", "1.4T"]));
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("70.00B (70000000000) parameters"), "{s}");
    assert!(s.contains("5.880e23"), "{s}");
    // L = 1.69 + 406.4 / 70e9^0.34 + 410.7 / 1.4e12^0.28
    let l = 1.69 + 406.4 / 70e9f64.powf(0.34) + 410.7 / 1.4e12f64.powf(0.28);
    assert!(s.contains(&format!("{l:.3} nats/token")), "{s}");
    let o = ok(harman(&["plan-model", "--params", "124M"]));
    assert!(String::from_utf8_lossy(&o.stdout).contains("2.48B (2480000000)"));
    let o = harman(&["plan-model", "--params", "lots"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("not a count"));
}

/// Bad tokenize options are config errors that name the field; nothing is written.
#[test]
fn tokenize_refuses_bad_options_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    for (opts, field) in [
        ("val_fraction = 1.5", "val_fraction"),
        ("shard_tokens = 5", "shard_tokens"),
        ("tokenizer = \"missing.json\"", "tokenizer"),
        ("shards = 3", "shards"),
    ] {
        let o = harman_tokenize(&out, "1", opts);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains(field), "{field}: {}", text(&o));
    }
    assert!(!out.join("tokenize").exists());
}

/// `harman train` on shards the tokenize stage wrote: a log line per step, validation,
/// checkpoints; a run stopped and resumed logs the same losses bit for bit as one that was
/// not; `generate` and `export-hf` read its checkpoint.
#[test]
fn train_on_tokenized_shards_resumes_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tok");
    ok(harman_tokenize(
        &tokens,
        "2",
        "val_fraction = 0.1\nseed = 1",
    ));
    let shards = tokens.join("tokenize");
    let train_glob = shards.join("train_*.bin").to_str().unwrap().to_string();
    let val_glob = shards.join("val_*.bin").to_str().unwrap().to_string();
    let options = "steps = 6\nbatch_size = 2\nseq_len = 16\nval_every = 3\nval_batches = 2\ncheckpoint_every = 2\n\
                   [schedule]\nlr = 1e-3\nwarmup_steps = 2";
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--train",
            &train_glob,
            "--val",
            &val_glob,
            "--out",
            out.to_str().unwrap(),
            "--preset",
            "tiny",
            "--layers",
            "1",
            "--heads",
            "2",
            "--channels",
            "32",
            "--max-seq-len",
            "16",
            "--options",
            options,
        ];
        args.extend_from_slice(extra);
        ok(harman(&args))
    };
    let losses = |out: &Path| -> Vec<(u64, String)> {
        std::fs::read_to_string(out.join("log.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["loss"].is_number())
            .map(|v| (v["step"].as_u64().unwrap(), v["loss"].to_string()))
            .collect()
    };
    let straight = dir.path().join("straight");
    run(&straight, &["--threads", "2"]);
    let parted = dir.path().join("parted");
    run(&parted, &["--threads", "1", "--stop-after", "3"]);
    assert_eq!(losses(&parted).len(), 3);
    run(&parted, &["--threads", "2"]);
    let a = losses(&straight);
    assert_eq!(a.len(), 6);
    assert_eq!(losses(&parted), a, "resumed = uninterrupted, bit for bit");
    let log = std::fs::read_to_string(straight.join("log.jsonl")).unwrap();
    assert!(log.contains("\"val_loss\""));
    assert!(straight.join("loss.svg").exists());
    assert!(straight.join("step_00000006/model.safetensors").exists());
    let a = std::fs::read(straight.join("step_00000006/model.safetensors")).unwrap();
    let b = std::fs::read(parted.join("step_00000006/model.safetensors")).unwrap();
    assert!(a == b, "the same weights");
    // Other options refuse to resume that folder.
    let o = harman(&[
        "train",
        "--train",
        &train_glob,
        "--out",
        straight.to_str().unwrap(),
        "--preset",
        "tiny",
        "--layers",
        "1",
        "--heads",
        "2",
        "--channels",
        "32",
        "--max-seq-len",
        "16",
        "--options",
        "steps = 9\nbatch_size = 2\nseq_len = 16",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("other options"), "{}", text(&o));
    let g = ok(harman(&[
        "generate",
        "--checkpoint",
        straight.to_str().unwrap(),
        "--prompt",
        "The",
        "--max-tokens",
        "5",
    ]));
    assert!(String::from_utf8_lossy(&g.stdout).starts_with("The"));
    let hf = dir.path().join("hf");
    ok(harman(&[
        "export-hf",
        "--checkpoint",
        straight.to_str().unwrap(),
        "--out",
        hf.to_str().unwrap(),
    ]));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["n_layer"], 1);
    assert_eq!(config["vocab_size"], 50257);
    // llm.c's checkpoint format: its header, then exactly the checkpoint's parameters.
    let llmc = dir.path().join("gpt2_124M.bin");
    ok(harman(&[
        "export-llmc",
        "--checkpoint",
        straight.to_str().unwrap(),
        "--out",
        llmc.to_str().unwrap(),
    ]));
    let bytes = std::fs::read(&llmc).unwrap();
    let word = |i: usize| i32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
    assert_eq!(
        (word(0), word(1)),
        (20240326, 3),
        "llm.c's magic and version"
    );
    assert_eq!((word(3), word(4), word(7)), (50257, 1, 50304));
    let saved =
        harman_train::checkpoint::load(&harman_train::checkpoint::latest(&straight).unwrap())
            .unwrap();
    let params: Vec<f32> = bytes[1024..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(params, saved.params.data);
    // harman eval on that checkpoint: deterministic at any thread count, compared side by side.
    let data = repo().join("tests/data/eval");
    let eval_run = |out: &Path, threads: &str| {
        ok(harman(&[
            "eval",
            "--checkpoint",
            straight.to_str().unwrap(),
            "--val",
            &val_glob,
            "--hellaswag",
            data.join("hellaswag_sample.jsonl").to_str().unwrap(),
            "--lambada",
            data.join("lambada_sample.jsonl").to_str().unwrap(),
            "--mc",
            &format!("arc={}", data.join("mc_sample.jsonl").display()),
            "--text",
            &format!("books={}", data.join("lambada_sample.jsonl").display()),
            "--limit",
            "4",
            "--options",
            "max_tokens = 512\nprompts = [\"Hello\"]\nmax_new_tokens = 4",
            "--threads",
            threads,
            "--out",
            out.to_str().unwrap(),
        ]))
    };
    let (e1, e2) = (dir.path().join("e1"), dir.path().join("e2"));
    let printed = String::from_utf8_lossy(&eval_run(&e1, "1").stdout).into_owned();
    assert!(
        printed.contains("hellaswag acc_norm") && printed.contains("(chance 0.2500)"),
        "{printed}"
    );
    eval_run(&e2, "2");
    let j1 = std::fs::read(e1.join("eval.json")).unwrap();
    assert_eq!(
        j1,
        std::fs::read(e2.join("eval.json")).unwrap(),
        "1 vs 2 threads"
    );
    let report: serde_json::Value = serde_json::from_slice(&j1).unwrap();
    assert_eq!(report["device"], "cpu", "the default");
    assert_eq!(report["multiple_choice"]["arc"]["items"], 4);
    assert_eq!(report["lambada"]["items"], 4);
    assert_eq!(report["intrinsic"]["val"]["tokens"], 512);
    assert!(
        report["intrinsic"]["books"]["bits_per_byte"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert_eq!(report["generations"][0]["prompt"], "Hello");
    assert!(e1.join("report.md").exists() && e1.join("loss.svg").exists());
    let cmp = ok(harman(&[
        "eval",
        "compare",
        e1.to_str().unwrap(),
        e2.to_str().unwrap(),
    ]));
    let table = String::from_utf8_lossy(&cmp.stdout);
    assert!(
        table.lines().any(|l| l.starts_with("| arc acc |")),
        "{table}"
    );
    let o = harman(&[
        "eval",
        "--checkpoint",
        straight.to_str().unwrap(),
        "--mc",
        "arc.jsonl",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("NAME=PATH"), "{}", text(&o));
    let o = harman(&[
        "eval",
        "--checkpoint",
        straight.to_str().unwrap(),
        "--hellaswag",
        "/no/such.jsonl",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // A bad option names its field.
    let o = harman(&[
        "train",
        "--train",
        &train_glob,
        "--out",
        dir.path().join("x").to_str().unwrap(),
        "--options",
        "batch_size = 2\nseq_len = 16\ntotal_batch_tokens = 33",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("total_batch_tokens"), "{}", text(&o));
}
