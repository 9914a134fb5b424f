//! Language-identification accuracy and speed on the shared text corpus: every paragraph
//! (line of 40+ characters) of the UDHR translations, the Turkish UD sentences and English
//! book text, detected on its own. Usage: `langid_eval [TEXT_CORPUS_DIR]`
//! (default ../shared/data/text_corpus).
use std::time::Instant;

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "../shared/data/text_corpus".into());
    let dir = std::path::Path::new(&dir);
    let mut sets: Vec<(String, &'static str, Vec<String>)> = Vec::new();
    let udhr = [
        ("amh", "amh"),
        ("arb", "ara"),
        ("ben", "ben"),
        ("cmn_hans", "cmn"),
        ("deu", "deu"),
        ("ell_monotonic", "ell"),
        ("eng", "eng"),
        ("fin", "fin"),
        ("fra", "fra"),
        ("heb", "heb"),
        ("hin", "hin"),
        ("hun", "hun"),
        ("hye", "hye"),
        ("jpn", "jpn"),
        ("kat", "kat"),
        ("kaz", "kaz"),
        ("kor", "kor"),
        ("pes_1", "pes"),
        ("pol", "pol"),
        ("rus", "rus"),
        ("spa", "spa"),
        ("tha", "tha"),
        ("tur", "tur"),
        ("ukr", "ukr"),
        ("vie", "vie"),
    ];
    let paragraphs = |text: &str| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| l.chars().count() >= 40)
            .map(str::to_string)
            .collect()
    };
    for (file, code) in udhr {
        let text =
            std::fs::read_to_string(dir.join(format!("udhr/{file}.txt"))).unwrap_or_default();
        sets.push((format!("udhr/{file}"), code, paragraphs(&text)));
    }
    let tr = std::fs::read_to_string(dir.join("turkish/tr_boun-ud-dev.sentences.txt"))
        .unwrap_or_default();
    sets.push(("turkish UD sentences".into(), "tur", paragraphs(&tr)));
    let en = std::fs::read_to_string(dir.join("gutenberg/pg972-devils-dictionary.txt"))
        .unwrap_or_default();
    sets.push(("gutenberg (en)".into(), "eng", paragraphs(&en)));
    let (mut right, mut total, mut chars) = (0usize, 0usize, 0usize);
    let start = Instant::now();
    for (name, code, paras) in &sets {
        let ok = paras
            .iter()
            .filter(|p| harman_filters::langid::detect(p, 2000).is_some_and(|l| l.code == *code))
            .count();
        println!(
            "{name:<24} {ok:>5}/{:<5} {:.3}",
            paras.len(),
            ok as f64 / paras.len().max(1) as f64
        );
        right += ok;
        total += paras.len();
        chars += paras.iter().map(|p| p.len()).sum::<usize>();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "all {right}/{total} = {:.3}; {:.0} paragraphs/s, {:.1} MB/s",
        right as f64 / total as f64,
        total as f64 / secs,
        chars as f64 / secs / 1e6
    );
}
