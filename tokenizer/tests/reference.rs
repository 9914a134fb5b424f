//! GPT-2 encoding against tiktoken's reference output (tests/data/gpt2_bpe, made with
//! tiktoken 0.14 from the same files): the 259 reference cases, and the whole-file token
//! hashes of the files that the bundled Pile-style shard holds verbatim.

use harman_tokenizer::Tokenizer;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(rel)
}

fn jsonl(rel: &str) -> Vec<Value> {
    std::fs::read_to_string(data(rel))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ids_sha256(ids: &[u32]) -> String {
    let joined = ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    hex::encode(Sha256::digest(joined.as_bytes()))
}

#[test]
fn gpt2_matches_tiktoken_on_every_reference_case() {
    let tok = Tokenizer::gpt2();
    let cases = jsonl("gpt2_bpe/reference_encodings.jsonl");
    assert_eq!(cases.len(), 259);
    for case in &cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(
            tok.encode(text),
            want,
            "source {} text {text:?}",
            case["source"]
        );
        assert_eq!(tok.decode(&want).unwrap(), text);
    }
    assert_eq!(tok.encode("Hello world"), [15496, 995]);
    assert_eq!(tok.eot(), Some(50256));
    assert_eq!(tok.vocab_size(), 50257);
}

#[test]
fn gpt2_matches_tiktoken_on_whole_files() {
    // The shard's book and UDHR documents are the text_corpus files byte for byte.
    let tok = Tokenizer::gpt2();
    let shard = std::fs::read(data("text/pile_style/shard-00.jsonl.zst")).unwrap();
    let text = zstd::decode_all(shard.as_slice()).unwrap();
    let docs: Vec<String> = String::from_utf8(text)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut matched = 0;
    for file in jsonl("gpt2_bpe/file_token_counts.jsonl") {
        let n_bytes = file["n_bytes"].as_u64().unwrap() as usize;
        let first: Vec<u32> = serde_json::from_value(file["first_ids"].clone()).unwrap();
        for doc in docs.iter().filter(|d| d.len() == n_bytes) {
            let ids = tok.encode(doc);
            if ids.starts_with(&first) && ids.len() as u64 == file["n_tokens"].as_u64().unwrap() {
                assert_eq!(
                    ids_sha256(&ids),
                    file["ids_sha256"].as_str().unwrap(),
                    "{}",
                    file["file"]
                );
                matched += 1;
            }
        }
    }
    // tinyshakespeare, the two PG books and the 25 UDHR files.
    assert!(matched >= 28, "only {matched} files found in the shard");
    // Encoding in segments (as encode_batch does for long texts) changes no id.
    for doc in &docs {
        let whole = tok.encode(doc);
        let parts: Vec<u32> = harman_tokenizer::segments(doc, 4096)
            .iter()
            .flat_map(|s| tok.encode(s))
            .collect();
        assert_eq!(parts, whole);
    }
    let batch = tok.encode_batch(&docs, 3);
    assert!(batch
        .iter()
        .zip(&docs)
        .all(|(ids, d)| *ids == tok.encode(d)));
}

#[test]
fn trained_tokenizers_round_trip_through_tokenizer_json() {
    use harman_tokenizer::{hf, train};
    let shard = std::fs::read(data("text/pile_style/shard-00.jsonl.zst")).unwrap();
    let text = String::from_utf8(zstd::decode_all(shard.as_slice()).unwrap()).unwrap();
    let mut counts = train::WordCounts::default();
    for line in text.lines().take(40) {
        counts.add(
            serde_json::from_str::<Value>(line).unwrap()["text"]
                .as_str()
                .unwrap(),
        );
    }
    let opts = train::TrainOptions {
        vocab_size: 1000,
        ..Default::default()
    };
    let tok = train::train(&counts, &opts).unwrap();
    assert_eq!(tok.vocab_size(), 1000);
    let json = hf::to_tokenizer_json(&tok).unwrap();
    let back = hf::from_tokenizer_json(&json, "trained").unwrap();
    let sample = &text[..20_000];
    let sample = &sample[..sample.char_indices().last().unwrap().0];
    assert_eq!(tok.encode(sample), back.encode(sample));
    assert_eq!(back.decode(&back.encode(sample)).unwrap(), sample);
    assert!(tok.encode(sample).len() < sample.len() / 2);
    // Training again gives the same file.
    assert_eq!(
        hf::to_tokenizer_json(&train::train(&counts, &opts).unwrap()).unwrap(),
        json
    );
}
