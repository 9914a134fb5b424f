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

    /// The ids of each text, encoded on `threads` threads (texts handed out one at a time,
    /// results in input order).
    pub fn encode_batch<S: AsRef<str> + Sync>(&self, texts: &[S], threads: usize) -> Vec<Vec<Id>> {
        let threads = threads.clamp(1, texts.len().max(1));
        if threads == 1 {
            return texts.iter().map(|t| self.encode(t.as_ref())).collect();
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut out: Vec<Vec<Id>> = vec![Vec::new(); texts.len()];
        let done: Vec<Vec<(usize, Vec<Id>)>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(t) = texts.get(i) else { break };
                            mine.push((i, self.encode(t.as_ref())));
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
        for (i, ids) in done.into_iter().flatten() {
            out[i] = ids;
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
