//! llm.c's token shard format: a header of 256 little-endian int32 (magic 20240520, version,
//! token count, then zeros) followed by the tokens, little-endian. Version 1 stores uint16
//! tokens (vocabularies up to 65,536 ids, as llm.c reads them); version 2, harman's extension
//! for larger vocabularies, stores uint32 tokens with the same header.

/// Header magic of llm.c token shards.
pub const MAGIC: i32 = 20240520;
/// Version with uint16 tokens (llm.c's).
pub const VERSION_U16: i32 = 1;
/// Version with uint32 tokens (harman's, for vocabularies over 65,536 ids).
pub const VERSION_U32: i32 = 2;
/// Header size in bytes.
pub const HEADER_BYTES: usize = 256 * 4;

/// Why bytes are not a token shard.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("shorter than the 1,024-byte header ({0} bytes)")]
    Short(usize),
    #[error("magic {0} is not llm.c's {MAGIC}")]
    Magic(i32),
    #[error("version {0} is not 1 (uint16) or 2 (uint32)")]
    Version(i32),
    #[error("header says {expected} tokens, the file holds {found}")]
    Length { expected: u64, found: u64 },
}

/// The version to write for a vocabulary size.
pub fn version_for(vocab_size: usize) -> i32 {
    if vocab_size <= 1 << 16 {
        VERSION_U16
    } else {
        VERSION_U32
    }
}

/// Bytes per token of a version.
pub fn token_bytes(version: i32) -> usize {
    if version == VERSION_U16 {
        2
    } else {
        4
    }
}

/// The header of a shard holding `tokens` tokens.
pub fn header(version: i32, tokens: u64) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&version.to_le_bytes());
    // llm.c reads the count as an int32; bigger shards keep the low bits there and the
    // high bits in the fourth field.
    h[8..12].copy_from_slice(&(tokens as u32).to_le_bytes());
    h[12..16].copy_from_slice(&((tokens >> 32) as u32).to_le_bytes());
    h
}

/// Appends tokens in a version's width.
pub fn push_tokens(out: &mut Vec<u8>, version: i32, ids: &[u32]) {
    if version == VERSION_U16 {
        out.reserve(ids.len() * 2);
        for &id in ids {
            out.extend_from_slice(&(id as u16).to_le_bytes());
        }
    } else {
        out.reserve(ids.len() * 4);
        for &id in ids {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
}

/// Reads a header: (version, token count).
pub fn read_header(bytes: &[u8]) -> Result<(i32, u64), ShardError> {
    if bytes.len() < HEADER_BYTES {
        return Err(ShardError::Short(bytes.len()));
    }
    let int = |i: usize| i32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    if int(0) != MAGIC {
        return Err(ShardError::Magic(int(0)));
    }
    let version = int(1);
    if version != VERSION_U16 && version != VERSION_U32 {
        return Err(ShardError::Version(version));
    }
    let tokens = (int(2) as u32 as u64) | ((int(3) as u32 as u64) << 32);
    Ok((version, tokens))
}

/// The tokens of a whole shard file.
pub fn read_tokens(bytes: &[u8]) -> Result<Vec<u32>, ShardError> {
    let (version, tokens) = read_header(bytes)?;
    let body = &bytes[HEADER_BYTES..];
    let width = token_bytes(version);
    let found = (body.len() / width) as u64;
    if found != tokens || body.len() % width != 0 {
        return Err(ShardError::Length {
            expected: tokens,
            found,
        });
    }
    Ok(if version == VERSION_U16 {
        body.chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as u32)
            .collect()
    } else {
        body.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_round_trip_in_both_versions() {
        for (vocab, ids) in [
            (50_257, vec![50256u32, 15496, 995, 0]),
            (100_000, vec![99_999, 65_536, 7]),
        ] {
            let v = version_for(vocab);
            let mut bytes = header(v, ids.len() as u64).to_vec();
            push_tokens(&mut bytes, v, &ids);
            assert_eq!(bytes.len(), HEADER_BYTES + ids.len() * token_bytes(v));
            assert_eq!(read_header(&bytes).unwrap(), (v, ids.len() as u64));
            assert_eq!(read_tokens(&bytes).unwrap(), ids);
        }
        assert_eq!(version_for(50_257), 1);
        assert_eq!(version_for(65_536), 1);
        assert_eq!(version_for(65_537), 2);
    }

    #[test]
    fn bad_shards_are_refused() {
        assert!(matches!(read_header(&[0; 10]), Err(ShardError::Short(10))));
        let mut bytes = header(1, 3).to_vec();
        push_tokens(&mut bytes, 1, &[1, 2]);
        assert!(matches!(
            read_tokens(&bytes),
            Err(ShardError::Length {
                expected: 3,
                found: 2
            })
        ));
        bytes[0] = 0;
        assert!(matches!(read_header(&bytes), Err(ShardError::Magic(_))));
    }
}
