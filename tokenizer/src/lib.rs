//! Byte-level BPE tokenization, free of any engine: GPT-2's pre-tokenization
//! ([`pretokenize`]), the BPE model and its merge loop ([`bpe`]), the [`Tokenizer`] that
//! puts them together with special tokens (GPT-2's own files are built in; others load from
//! a Hugging Face `tokenizer.json`, see [`hf`]), a deterministic BPE trainer ([`train`]),
//! llm.c's token shard format ([`shard`]) and the Chinchilla planner ([`chinchilla`]).

pub mod bpe;
pub mod chinchilla;
pub mod hf;
pub mod pretokenize;
pub mod shard;
pub mod train;

pub use bpe::{Bpe, Id, MergeRule};

use std::sync::{Arc, OnceLock};

/// Texts longer than this are encoded in segments by [`Tokenizer::encode_batch`].
pub const SEGMENT_BYTES: usize = 256 << 10;

/// `text` cut into segments of about `target` bytes, each cut where the pieces on both sides
/// are the same whether or not the text goes on: after a line feed (or a carriage return
/// before a line feed) that follows a printable ASCII character and comes before an ASCII
/// letter or digit (or that line feed). That single white-space character is a piece of its
/// own in the whole text (`\s+(?!\S)` fails before a non-space, `\s+` takes it) and at the
/// end of a segment (`\s+(?!\S)` takes it); the pattern never looks behind. So encoding the
/// segments one by one gives the ids of the whole text.
pub fn segments(text: &str, target: usize) -> Vec<&str> {
    let b = text.as_bytes();
    let safe = |p: usize| {
        p >= 2
            && b[p - 2].is_ascii_graphic()
            && match b[p - 1] {
                b'\n' => b[p].is_ascii_alphanumeric(),
                b'\r' => b[p] == b'\n' && b.get(p + 1).is_some_and(u8::is_ascii_alphanumeric),
                _ => false,
            }
    };
    let mut out = Vec::new();
    let mut start = 0;
    while b.len() - start > target {
        let mut cut = start + target;
        while cut < b.len() && !safe(cut) {
            cut += 1;
        }
        if cut >= b.len() {
            break;
        }
        out.push(&text[start..cut]);
        start = cut;
    }
    out.push(&text[start..]);
    out
}

/// GPT-2's end-of-text token.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// Errors of loading, saving and decoding.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Bpe(#[from] bpe::BpeError),
    #[error("{0}")]
    Format(String),
    #[error("id {0} is not in the vocabulary")]
    UnknownId(Id),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// A byte-level BPE tokenizer with GPT-2's pre-tokenization.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    bpe: Bpe,
    /// Special tokens (content, id), matched only where asked for ([`Tokenizer::special`]).
    specials: Vec<(String, Id)>,
    /// The document separator written between documents in token shards.
    eot: Option<Id>,
    /// "gpt2" or where it was loaded from.
    name: String,
}

impl Tokenizer {
    /// A tokenizer from its model and special tokens; the end-of-text token is
    /// `<|endoftext|>` when one of them.
    pub fn new(bpe: Bpe, specials: Vec<(String, Id)>, name: impl Into<String>) -> Tokenizer {
        let eot = specials
            .iter()
            .find(|(s, _)| s == END_OF_TEXT)
            .map(|&(_, id)| id);
        Tokenizer {
            bpe,
            specials,
            eot,
            name: name.into(),
        }
    }

    /// OpenAI's GPT-2 encoding (`encoder.json` + `vocab.bpe`, built in), encoding exactly as
    /// tiktoken's `gpt2`.
    pub fn gpt2() -> Arc<Tokenizer> {
        static GPT2: OnceLock<Arc<Tokenizer>> = OnceLock::new();
        GPT2.get_or_init(|| {
            Arc::new(
                hf::from_gpt2_files(
                    include_str!("../data/gpt2/encoder.json"),
                    include_str!("../data/gpt2/vocab.bpe"),
                    MergeRule::TokenRank,
                )
                .expect("the built-in GPT-2 files are valid"),
            )
        })
        .clone()
    }

    /// `gpt2` (built in) or the path of a `tokenizer.json`.
    pub fn load(spec: &str) -> Result<Arc<Tokenizer>, TokenizerError> {
        if spec == "gpt2" {
            return Ok(Tokenizer::gpt2());
        }
        let json = std::fs::read_to_string(spec).map_err(|source| TokenizerError::Io {
            path: spec.to_string(),
            source,
        })?;
        Ok(Arc::new(hf::from_tokenizer_json(&json, spec)?))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn bpe(&self) -> &Bpe {
        &self.bpe
    }

    /// Number of ids, special tokens included (GPT-2: 50,257).
    pub fn vocab_size(&self) -> usize {
        self.bpe.vocab_size()
    }

    /// The end-of-text id, if the vocabulary has one.
    pub fn eot(&self) -> Option<Id> {
        self.eot
    }

    pub fn specials(&self) -> &[(String, Id)] {
        &self.specials
    }

    /// The id of a special token.
    pub fn special(&self, content: &str) -> Option<Id> {
        self.specials
            .iter()
            .find(|(s, _)| s == content)
            .map(|&(_, id)| id)
    }

    /// Appends the ids of `text` to `out`, special-token text encoded as ordinary text
    /// (tiktoken's `encode_ordinary`).
    pub fn encode_into(&self, text: &str, out: &mut Vec<Id>) {
        for piece in pretokenize::pieces(text) {
            self.bpe.encode_piece(piece.as_bytes(), out);
        }
    }

    /// The ids of `text` (see [`Tokenizer::encode_into`]).
    pub fn encode(&self, text: &str) -> Vec<Id> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        self.encode_into(text, &mut out);
        out
    }

    /// The ids of each text, encoded on `threads` threads, results in input order. Texts
    /// longer than [`SEGMENT_BYTES`] are cut where a piece must begin ([`segments`]) so one
    /// long book keeps every thread busy; the ids are the same as [`Tokenizer::encode`]'s.
    pub fn encode_batch<S: AsRef<str> + Sync>(&self, texts: &[S], threads: usize) -> Vec<Vec<Id>> {
        if threads <= 1 || texts.is_empty() {
            return texts.iter().map(|t| self.encode(t.as_ref())).collect();
        }
        // Work items: (text index, segment).
        let work: Vec<(usize, &str)> = texts
            .iter()
            .enumerate()
            .flat_map(|(i, t)| {
                segments(t.as_ref(), SEGMENT_BYTES)
                    .into_iter()
                    .map(move |s| (i, s))
            })
            .collect();
        let threads = threads.min(work.len());
        let next = std::sync::atomic::AtomicUsize::new(0);
        let done: Vec<Vec<(usize, Vec<Id>)>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let w = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(&(_, seg)) = work.get(w) else { break };
                            mine.push((w, self.encode(seg)));
                        }
                        mine
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        let mut by_work: Vec<Vec<Id>> = vec![Vec::new(); work.len()];
        for (w, ids) in done.into_iter().flatten() {
            by_work[w] = ids;
        }
        let mut out: Vec<Vec<Id>> = vec![Vec::new(); texts.len()];
        for ((i, _), ids) in work.iter().zip(by_work) {
            if out[*i].is_empty() {
                out[*i] = ids;
            } else {
                out[*i].extend_from_slice(&ids);
            }
        }
        out
    }

    /// The bytes the ids stand for.
    pub fn decode_bytes(&self, ids: &[Id]) -> Result<Vec<u8>, TokenizerError> {
        self.bpe
            .decode_bytes(ids)
            .map_err(TokenizerError::UnknownId)
    }

    /// The text the ids stand for; bytes that are not UTF-8 (a character cut between
    /// tokens) become U+FFFD, as in tiktoken's and Hugging Face's `decode`.
    pub fn decode(&self, ids: &[Id]) -> Result<String, TokenizerError> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(ids)?).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cut_where_pieces_begin_and_encode_the_same() {
        let text =
            "First line.\n  indented 'quoted'\n\nNext 42 things\n\t\nSecond\r\nThird\n9 lives\n\
                    a\nb \nc\r\nd\r\n\r\ne.\r\n\u{3000}\nf\n"
                .repeat(50);
        let tok = Tokenizer::gpt2();
        let whole = tok.encode(&text);
        for target in [1, 7, 64, 500] {
            let segs = segments(&text, target);
            assert!(segs.len() > 1);
            assert_eq!(segs.concat(), text);
            let joined: Vec<Id> = segs.iter().flat_map(|s| tok.encode(s)).collect();
            assert_eq!(joined, whole, "target {target}");
        }
        assert_eq!(
            segments("no line feeds at all", 4),
            ["no line feeds at all"]
        );
        let batch = tok.encode_batch(&[text.clone(), String::new(), "x".into()], 3);
        assert_eq!(batch, vec![whole, vec![], tok.encode("x")]);
    }
}
