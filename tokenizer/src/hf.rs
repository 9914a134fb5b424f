//! Vocabulary files: GPT-2's `encoder.json` + `vocab.bpe`, and Hugging Face's
//! `tokenizer.json` (read and written) for byte-level BPE with GPT-2's pre-tokenization.
//! Both spell token bytes with GPT-2's byte→character table ([`bytes_to_unicode`]).

use crate::bpe::{Bpe, Id, MergeRule};
use crate::{Tokenizer, TokenizerError, END_OF_TEXT};
use serde_json::{json, Value};

/// GPT-2's table from each byte to a printable character (`Ġ` for a space).
pub fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        table[b as usize] = if printable {
            char::from(b)
        } else {
            n += 1;
            char::from_u32(255 + n).expect("U+0100..U+0143")
        };
    }
    table
}

/// The inverse of [`bytes_to_unicode`] over a token string.
fn token_to_bytes(token: &str, inverse: &rustc_hash::FxHashMap<char, u8>) -> Option<Vec<u8>> {
    token.chars().map(|c| inverse.get(&c).copied()).collect()
}

fn inverse_table() -> rustc_hash::FxHashMap<char, u8> {
    bytes_to_unicode()
        .iter()
        .enumerate()
        .map(|(b, &c)| (c, b as u8))
        .collect()
}

fn format_err(message: impl Into<String>) -> TokenizerError {
    TokenizerError::Format(message.into())
}

/// Builds the vocabulary from token strings → ids, merge pairs of token strings, and the
/// special tokens (their content is their bytes).
fn build(
    vocab: &serde_json::Map<String, Value>,
    merges: &[(String, String)],
    specials: Vec<(String, Id)>,
    rule: MergeRule,
    name: &str,
) -> Result<Tokenizer, TokenizerError> {
    let inverse = inverse_table();
    let size = vocab
        .values()
        .filter_map(Value::as_u64)
        .chain(specials.iter().map(|&(_, id)| id as u64))
        .max()
        .map_or(0, |m| m as usize + 1);
    let mut tokens: Vec<Option<Vec<u8>>> = vec![None; size];
    for (token, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| format_err(format!("vocab entry {token:?}: the id is not a number")))?
            as usize;
        let bytes = match specials.iter().find(|(s, _)| s == token) {
            Some((s, _)) => s.as_bytes().to_vec(),
            None => token_to_bytes(token, &inverse).ok_or_else(|| {
                format_err(format!(
                    "vocab entry {token:?} is not byte-level (a character outside GPT-2's byte table)"
                ))
            })?,
        };
        tokens[id] = Some(bytes);
    }
    for (content, id) in &specials {
        tokens[*id as usize] = Some(content.as_bytes().to_vec());
    }
    let tokens: Vec<Vec<u8>> = tokens
        .into_iter()
        .enumerate()
        .map(|(id, t)| t.ok_or_else(|| format_err(format!("no token has id {id}"))))
        .collect::<Result<_, _>>()?;
    let id_of = |s: &str| -> Result<Id, TokenizerError> {
        vocab
            .get(s)
            .and_then(Value::as_u64)
            .map(|v| v as Id)
            .ok_or_else(|| format_err(format!("merge part {s:?} is not in the vocabulary")))
    };
    let merges = merges
        .iter()
        .map(|(a, b)| Ok((id_of(a)?, id_of(b)?)))
        .collect::<Result<Vec<_>, TokenizerError>>()?;
    let special_ids: Vec<Id> = specials.iter().map(|&(_, id)| id).collect();
    let bpe = Bpe::new(tokens, merges, rule, &special_ids)?;
    Ok(Tokenizer::new(bpe, specials, name))
}

fn parse_merge_lines(text: &str) -> Result<Vec<(String, String)>, TokenizerError> {
    text.lines()
        .filter(|l| !l.starts_with("#version") && !l.is_empty())
        .enumerate()
        .map(|(i, l)| {
            l.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| format_err(format!("merge {i}: {l:?} is not two tokens")))
        })
        .collect()
}

/// GPT-2's `encoder.json` (token string → id) and `vocab.bpe` (merges); `<|endoftext|>` is
/// the special token.
pub fn from_gpt2_files(
    encoder_json: &str,
    vocab_bpe: &str,
    rule: MergeRule,
) -> Result<Tokenizer, TokenizerError> {
    let vocab: serde_json::Map<String, Value> =
        serde_json::from_str(encoder_json).map_err(|e| format_err(format!("encoder.json: {e}")))?;
    let eot = vocab
        .get(END_OF_TEXT)
        .and_then(Value::as_u64)
        .ok_or_else(|| format_err("encoder.json has no <|endoftext|>"))? as Id;
    let merges = parse_merge_lines(vocab_bpe)?;
    build(
        &vocab,
        &merges,
        vec![(END_OF_TEXT.to_string(), eot)],
        rule,
        "gpt2",
    )
}

/// A Hugging Face `tokenizer.json` of a byte-level BPE with GPT-2's pre-tokenization (what
/// [`to_tokenizer_json`] writes, and GPT-2's own); anything else is refused with what
/// differs. Merges apply in list order, as Hugging Face applies them.
pub fn from_tokenizer_json(json: &str, name: &str) -> Result<Tokenizer, TokenizerError> {
    let v: Value =
        serde_json::from_str(json).map_err(|e| format_err(format!("{name}: not JSON: {e}")))?;
    let unsupported = |what: &str| {
        format_err(format!(
            "{name}: {what}; harman encodes byte-level BPE with GPT-2's pre-tokenization \
             (pre_tokenizer ByteLevel with use_regex = true and add_prefix_space = false, no normalizer)"
        ))
    };
    let model = &v["model"];
    if model["type"] != "BPE" {
        return Err(unsupported("model.type is not BPE"));
    }
    if !v["normalizer"].is_null() {
        return Err(unsupported("it has a normalizer"));
    }
    let pre = &v["pre_tokenizer"];
    if pre["type"] != "ByteLevel"
        || pre["add_prefix_space"].as_bool() != Some(false)
        || pre["use_regex"].as_bool() == Some(false)
    {
        return Err(unsupported("its pre_tokenizer differs"));
    }
    if model["ignore_merges"].as_bool() == Some(true) {
        return Err(unsupported("model.ignore_merges is true"));
    }
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| format_err(format!("{name}: model.vocab is not an object")))?;
    let merges: Vec<(String, String)> = match &model["merges"] {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, m)| match m {
                Value::String(s) => s
                    .split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| format_err(format!("{name}: merge {i} is not two tokens"))),
                Value::Array(pair) if pair.len() == 2 => match (&pair[0], &pair[1]) {
                    (Value::String(a), Value::String(b)) => Ok((a.clone(), b.clone())),
                    _ => Err(format_err(format!("{name}: merge {i} is not two strings"))),
                },
                _ => Err(format_err(format!("{name}: merge {i} is not a merge"))),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(format_err(format!("{name}: model.merges is not a list"))),
    };
    let specials: Vec<(String, Id)> = v["added_tokens"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| Some((t["content"].as_str()?.to_string(), t["id"].as_u64()? as Id)))
                .collect()
        })
        .unwrap_or_default();
    build(vocab, &merges, specials, MergeRule::MergeList, name)
}

/// The `tokenizer.json` Hugging Face `tokenizers` loads for this tokenizer: BPE model with
/// the vocabulary and merges (in rank order), ByteLevel pre-tokenizer / decoder, and the
/// special tokens as added tokens.
pub fn to_tokenizer_json(tok: &Tokenizer) -> Result<String, TokenizerError> {
    let table = bytes_to_unicode();
    let spell = |bytes: &[u8]| -> String { bytes.iter().map(|&b| table[b as usize]).collect() };
    let bpe = tok.bpe();
    let mut vocab = serde_json::Map::new();
    for id in 0..bpe.vocab_size() as Id {
        let bytes = bpe.token_bytes(id).ok_or(TokenizerError::UnknownId(id))?;
        let key = match tok.specials().iter().find(|&&(_, s)| s == id) {
            Some((content, _)) => content.clone(),
            None => spell(bytes),
        };
        vocab.insert(key, json!(id));
    }
    let merges: Vec<Value> = bpe
        .merges()
        .iter()
        .map(|&(a, b)| {
            let a = bpe.token_bytes(a).ok_or(TokenizerError::UnknownId(a))?;
            let b = bpe.token_bytes(b).ok_or(TokenizerError::UnknownId(b))?;
            Ok(json!(format!("{} {}", spell(a), spell(b))))
        })
        .collect::<Result<_, TokenizerError>>()?;
    let added: Vec<Value> = tok
        .specials()
        .iter()
        .map(|(content, id)| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let doc = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": false, "vocab": vocab, "merges": merges
        }
    });
    let mut out = serde_json::to_string_pretty(&doc).map_err(|e| format_err(e.to_string()))?;
    out.push('\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_gpt2s() {
        let t = bytes_to_unicode();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'A' as usize], 'A');
        assert_eq!(t[0], 'Ā');
        let distinct: std::collections::BTreeSet<char> = t.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
    }
}
