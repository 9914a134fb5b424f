//! The data loader: batches of B×T+1 consecutive tokens from llm.c token shards, read in
//! file order, each batch B×T tokens after the previous one (inputs = tokens[..B·T],
//! targets = tokens[1..]), wrapping to the first shard at the end (the next epoch). Its
//! [`Position`] is saved in checkpoints, so a resumed run reads exactly the batches the
//! uninterrupted run would have.

use harman_tokenizer::shard;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the next batch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Position {
    pub epoch: u64,
    pub shard: usize,
    /// Token offset in that shard.
    pub offset: usize,
}

/// Why shards cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("no token shards given")]
    NoShards,
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Format {
        path: String,
        source: shard::ShardError,
    },
    #[error("{path} holds {tokens} tokens; a batch needs B×T+1 = {need}")]
    TooSmall {
        path: String,
        tokens: usize,
        need: usize,
    },
    #[error("{path}: token {id} at {at} is outside the model's vocabulary ({vocab} ids)")]
    Token {
        path: String,
        id: u32,
        at: usize,
        vocab: usize,
    },
}

/// Batches over a list of shards.
pub struct DataLoader {
    shards: Vec<PathBuf>,
    b: usize,
    t: usize,
    vocab: usize,
    pos: Position,
    /// Tokens of the current shard.
    tokens: Vec<u32>,
    loaded: Option<usize>,
}

impl DataLoader {
    /// Opens the shards (each must hold at least one batch); `vocab` bounds the ids.
    pub fn open(
        shards: Vec<PathBuf>,
        b: usize,
        t: usize,
        vocab: usize,
    ) -> Result<DataLoader, DataError> {
        if shards.is_empty() {
            return Err(DataError::NoShards);
        }
        let dl = DataLoader {
            shards,
            b,
            t,
            vocab,
            pos: Position::default(),
            tokens: Vec::new(),
            loaded: None,
        };
        for i in 0..dl.shards.len() {
            let (path, n) = (dl.shards[i].display().to_string(), dl.header(i)?);
            if n < b * t + 1 {
                return Err(DataError::TooSmall {
                    path,
                    tokens: n,
                    need: b * t + 1,
                });
            }
        }
        Ok(dl)
    }

    fn header(&self, i: usize) -> Result<usize, DataError> {
        use std::io::Read;
        let path = &self.shards[i];
        let io = |source| DataError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut head = vec![0u8; shard::HEADER_BYTES];
        std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut head))
            .map_err(io)?;
        let (_, n) = shard::read_header(&head).map_err(|source| DataError::Format {
            path: path.display().to_string(),
            source,
        })?;
        Ok(n as usize)
    }

    fn load(&mut self, i: usize) -> Result<(), DataError> {
        if self.loaded == Some(i) {
            return Ok(());
        }
        let path = self.shards[i].display().to_string();
        let bytes = std::fs::read(&self.shards[i]).map_err(|source| DataError::Io {
            path: path.clone(),
            source,
        })?;
        let tokens = shard::read_tokens(&bytes).map_err(|source| DataError::Format {
            path: path.clone(),
            source,
        })?;
        if let Some((at, &id)) = tokens
            .iter()
            .enumerate()
            .find(|(_, &id)| id as usize >= self.vocab)
        {
            return Err(DataError::Token {
                path,
                id,
                at,
                vocab: self.vocab,
            });
        }
        self.tokens = tokens;
        self.loaded = Some(i);
        Ok(())
    }

    pub fn position(&self) -> Position {
        self.pos
    }

    /// Continues from a saved position.
    pub fn seek(&mut self, pos: Position) {
        self.pos = pos;
    }

    /// Back to the start (validation passes).
    pub fn reset(&mut self) {
        self.pos = Position::default();
    }

    /// The next (inputs, targets), each B×T.
    pub fn next_batch(&mut self) -> Result<(Vec<u32>, Vec<u32>), DataError> {
        let need = self.b * self.t + 1;
        self.load(self.pos.shard)?;
        if self.pos.offset + need > self.tokens.len() {
            self.pos.offset = 0;
            self.pos.shard += 1;
            if self.pos.shard == self.shards.len() {
                self.pos.shard = 0;
                self.pos.epoch += 1;
            }
            self.load(self.pos.shard)?;
        }
        let chunk = &self.tokens[self.pos.offset..self.pos.offset + need];
        let out = (chunk[..need - 1].to_vec(), chunk[1..].to_vec());
        self.pos.offset += need - 1;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_shard(dir: &std::path::Path, name: &str, ids: &[u32]) -> PathBuf {
        let mut bytes = shard::header(1, ids.len() as u64).to_vec();
        shard::push_tokens(&mut bytes, 1, ids);
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn batches_follow_each_other_across_shards_and_resume() {
        let dir = std::env::temp_dir().join(format!("harman-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = write_shard(&dir, "a.bin", &(0..20).collect::<Vec<_>>());
        let b = write_shard(&dir, "b.bin", &(100..110).collect::<Vec<_>>());
        let mut dl = DataLoader::open(vec![a.clone(), b.clone()], 2, 4, 1000).unwrap();
        let (x, y) = dl.next_batch().unwrap();
        assert_eq!(x, (0..8).collect::<Vec<_>>());
        assert_eq!(y, (1..9).collect::<Vec<_>>());
        let (x, _) = dl.next_batch().unwrap();
        assert_eq!(x, (8..16).collect::<Vec<_>>());
        // 16 + 9 > 20: the next shard.
        let (x, _) = dl.next_batch().unwrap();
        assert_eq!(x[0], 100);
        let saved = dl.position();
        let (x1, _) = dl.next_batch().unwrap();
        assert_eq!(
            (x1[0], dl.position().epoch),
            (0, 1),
            "wraps to the next epoch"
        );
        let mut again = DataLoader::open(vec![a.clone(), b], 2, 4, 1000).unwrap();
        again.seek(saved);
        assert_eq!(again.next_batch().unwrap().0, x1);
        assert!(matches!(
            DataLoader::open(vec![a.clone()], 4, 8, 1000),
            Err(DataError::TooSmall { .. })
        ));
        let mut small_vocab = DataLoader::open(vec![a], 2, 4, 10).unwrap();
        assert!(matches!(
            small_vocab.next_batch(),
            Err(DataError::Token { id: 10, .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
