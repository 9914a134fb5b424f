//! Extraction on real pages from the two benchmarks (tests/data/html): the main text is found
//! and the boilerplate around it is not, by the benchmarks' own measures.

use harman_extract::{eval, extract_html, ExtractOptions, Favor, Mode, Status};
use std::io::Read;
use std::path::{Path, PathBuf};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/html")
}

fn gunzip(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn aeb_articles_match_their_ground_truth() {
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data().join("aeb/ground-truth.json")).unwrap())
            .unwrap();
    let truth = truth.as_object().unwrap();
    assert_eq!(truth.len(), 3);
    for (id, entry) in truth {
        let html = gunzip(&data().join(format!("aeb/{id}.html.gz")));
        let e = extract_html(&html, Some("text/html"), None, &ExtractOptions::default());
        assert_eq!(e.status, Status::Ok, "{id}: {:?}", e.reason);
        let page = eval::aeb_page(entry["articleBody"].as_str().unwrap(), e.text.as_deref());
        let s = eval::aeb_scores(&[page]);
        assert!(s.f1 > 0.9, "{id}: {s:?}\n{}", e.text.unwrap_or_default());
        assert!(e.title.is_some(), "{id}: no title");
    }
}

#[test]
fn trafilatura_pages_keep_content_and_drop_boilerplate() {
    let ev: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data().join("trafilatura/evaldata.json")).unwrap())
            .unwrap();
    let ev = ev.as_object().unwrap();
    assert_eq!(ev.len(), 6);
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    for entry in ev.values() {
        let file = entry["html_file"].as_str().unwrap();
        let html = gunzip(&data().join("trafilatura").join(file));
        let e = extract_html(&html, None, None, &ExtractOptions::default());
        let with = strings(&entry["with"]);
        let without = strings(&entry["without"]);
        let (tp, fp, _) = eval::snippet_page(&with, &without, e.text.as_deref());
        assert_eq!(tp, with.len(), "{file}: main text missing\n{:?}", e.text);
        assert_eq!(fp, 0, "{file}: boilerplate kept\n{:?}", e.text);
    }
}

#[test]
fn plain_mode_keeps_what_main_mode_drops() {
    let ev: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data().join("trafilatura/evaldata.json")).unwrap())
            .unwrap();
    let entry = ev
        .as_object()
        .unwrap()
        .values()
        .find(|e| e["file"] == "flowfx.de.tmux.html")
        .unwrap();
    let html = gunzip(&data().join("trafilatura/flowfx.de.tmux.html.gz"));
    let plain = ExtractOptions {
        mode: Mode::Plain,
        ..ExtractOptions::default()
    };
    let all = extract_html(&html, None, None, &plain).text.unwrap();
    let main = extract_html(&html, None, None, &ExtractOptions::default())
        .text
        .unwrap();
    assert!(all.len() > main.len());
    // Plain mode keeps the page's boilerplate too.
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let kept = entry["without"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| norm(&all).contains(&norm(w.as_str().unwrap())))
        .count();
    assert!(kept > 0, "plain text lost all boilerplate: {all}");
}

#[test]
fn favor_precision_never_yields_more_text_than_recall() {
    for entry in std::fs::read_dir(data().join("aeb")).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".html.gz") {
            continue;
        }
        let html = gunzip(&path);
        let len = |favor| {
            let o = ExtractOptions {
                favor,
                ..ExtractOptions::default()
            };
            extract_html(&html, None, None, &o)
                .text
                .map_or(0, |t| t.len())
        };
        assert!(
            len(Favor::Precision) <= len(Favor::Recall),
            "{}",
            path.display()
        );
    }
}
