//! Development helper: extract every `*.html[.gz]` under a folder and print JSONL
//! `{"id", "text"}` (the file name without extension as id) plus the time spent.
use std::io::Read;
fn main() {
    let dir = std::env::args().nth(1).expect("folder");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let opts = harman_extract::ExtractOptions::default();
    let mut pages = Vec::new();
    for f in &files {
        let raw = std::fs::read(f).unwrap();
        let bytes = if f.extension().is_some_and(|e| e == "gz") {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .unwrap();
            out
        } else {
            raw
        };
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let id = name
            .trim_end_matches(".gz")
            .trim_end_matches(".html")
            .to_string();
        pages.push((id, name, bytes));
    }
    let start = std::time::Instant::now();
    let mut out = Vec::new();
    for (id, name, bytes) in &pages {
        let e = harman_extract::extract_html(bytes, None, None, &opts);
        out.push((id.clone(), name.clone(), e.text));
    }
    let secs = start.elapsed().as_secs_f64();
    for (id, name, text) in out {
        let id = if std::env::var("ID_NAME").is_ok() {
            name.trim_end_matches(".gz").to_string()
        } else {
            id
        };
        println!("{}", serde_json::json!({"id": id, "text": text}));
    }
    eprintln!(
        "{} pages in {:.3}s = {:.1} pages/s",
        pages.len(),
        secs,
        pages.len() as f64 / secs
    );
}
