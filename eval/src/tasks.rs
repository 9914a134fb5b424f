//! The benchmark tasks, each a list of items read from JSONL (optionally gzip-compressed) and
//! scored through [`crate::loglik`] as lm-evaluation-harness scores them:
//! - HellaSwag (`hellaswag`): context = the preprocessed `activity_label: ctx`, choices = the
//!   four preprocessed endings after a space; `acc` = argmax of Σ log p, `acc_norm` = argmax
//!   of Σ log p / the ending's length in characters. Reads the preprocessed form
//!   (`{ctx, label, endings}`) or the original release (`{activity_label, ctx_a, ctx_b,
//!   endings, label}`, preprocessed here as lm-evaluation-harness does).
//! - LAMBADA (`lambada`, OpenAI's detokenized test set, `{text}`): the last space-separated
//!   word after the rest; `acc` = greedy decoding reproduces it, `perplexity` =
//!   exp(−mean Σ log p).
//! - Generic multiple choice (`mc`): `{question, choices, answer}` with `answer` an index, a
//!   letter or the choice's text (an optional `context` replaces the prompt
//!   `Question: {question}\nAnswer:`), scored like HellaSwag — ARC-, MMLU- or TruthfulQA-style
//!   sets as JSONL run without code changes.

use crate::loglik::{argmax, Request, Scorer};
use crate::{input_err, EvalError};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// One multiple-choice item.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub context: String,
    pub choices: Vec<String>,
    pub answer: usize,
}

/// Scores of a multiple-choice task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McResult {
    pub items: usize,
    pub acc: f64,
    pub acc_norm: f64,
    /// Expected accuracy of a uniform guess.
    pub chance: f64,
    /// Per item: the log-likelihood of each choice (for checks against other scorers).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub lls: Vec<Vec<f64>>,
}

/// Scores of LAMBADA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LambadaResult {
    pub items: usize,
    pub acc: f64,
    pub perplexity: f64,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub lls: Vec<f64>,
}

/// The JSON objects of a .jsonl or .jsonl.gz file (at most `limit`).
pub fn read_jsonl(path: &Path, limit: Option<usize>) -> Result<Vec<serde_json::Value>, EvalError> {
    let file = std::fs::File::open(path).map_err(|e| input_err(path, e))?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut out = Vec::new();
    for (i, line) in BufReader::new(reader).lines().enumerate() {
        if limit.is_some_and(|n| out.len() >= n) {
            break;
        }
        let line = line.map_err(|e| input_err(path, format!("line {}: {e}", i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .map_err(|e| input_err(path, format!("line {}: {e}", i + 1)))?,
        );
    }
    Ok(out)
}

/// lm-evaluation-harness' HellaSwag text cleanup.
pub fn hellaswag_preprocess(text: &str) -> String {
    let t = text.trim().replace(" [title]", ". ");
    let mut out = String::with_capacity(t.len());
    let mut rest = t.as_str();
    // Drop bracketed markers such as [header], [step], [substeps].
    while let Some(open) = rest.find('[') {
        match rest[open..].find(']') {
            Some(close) => {
                out.push_str(&rest[..open]);
                rest = &rest[open + close + 1..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out.replace("  ", " ")
}

fn field<'a>(
    v: &'a serde_json::Value,
    key: &str,
    path: &Path,
    line: usize,
) -> Result<&'a serde_json::Value, EvalError> {
    v.get(key)
        .ok_or_else(|| input_err(path, format!("item {line}: no `{key}`")))
}

fn strings(v: &serde_json::Value, path: &Path, line: usize) -> Result<Vec<String>, EvalError> {
    v.as_array()
        .and_then(|a| a.iter().map(|s| s.as_str().map(str::to_string)).collect())
        .ok_or_else(|| input_err(path, format!("item {line}: choices must be strings")))
}

fn index(v: &serde_json::Value, n: usize, choices: &[String]) -> Option<usize> {
    let i = match v {
        serde_json::Value::Number(x) => x.as_u64()? as usize,
        serde_json::Value::String(s) => {
            if let Ok(i) = s.parse::<usize>() {
                i
            } else if s.len() == 1 && s.as_bytes()[0].is_ascii_uppercase() {
                (s.as_bytes()[0] - b'A') as usize
            } else {
                choices.iter().position(|c| c == s)?
            }
        }
        _ => return None,
    };
    (i < n).then_some(i)
}

/// HellaSwag items (preprocessed or original form).
pub fn hellaswag(path: &Path, limit: Option<usize>) -> Result<Vec<Choice>, EvalError> {
    read_jsonl(path, limit)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let endings = strings(field(v, "endings", path, i + 1)?, path, i + 1)?;
            // The original release: activity label + ctx_a + capitalized ctx_b, cleaned.
            let (context, choices) = match v.get("ctx_a") {
                Some(a) => {
                    let b = v["ctx_b"].as_str().unwrap_or("");
                    let mut cap = b.chars();
                    let b = match cap.next() {
                        Some(f) => f.to_uppercase().collect::<String>() + cap.as_str(),
                        None => String::new(),
                    };
                    let ctx = format!("{} {b}", a.as_str().unwrap_or(""));
                    (
                        hellaswag_preprocess(&format!(
                            "{}: {ctx}",
                            v["activity_label"].as_str().unwrap_or("")
                        )),
                        endings.iter().map(|e| hellaswag_preprocess(e)).collect(),
                    )
                }
                None => (
                    field(v, "ctx", path, i + 1)?
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    endings,
                ),
            };
            let answer = index(field(v, "label", path, i + 1)?, choices.len(), &choices)
                .ok_or_else(|| input_err(path, format!("item {}: bad label", i + 1)))?;
            Ok(Choice {
                context,
                choices,
                answer,
            })
        })
        .collect()
}

/// Generic multiple-choice items.
pub fn multiple_choice(path: &Path, limit: Option<usize>) -> Result<Vec<Choice>, EvalError> {
    read_jsonl(path, limit)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let choices = strings(field(v, "choices", path, i + 1)?, path, i + 1)?;
            if choices.len() < 2 {
                return Err(input_err(
                    path,
                    format!("item {}: fewer than 2 choices", i + 1),
                ));
            }
            let context = match v.get("context").and_then(|c| c.as_str()) {
                Some(c) => c.to_string(),
                None => format!(
                    "Question: {}\nAnswer:",
                    field(v, "question", path, i + 1)?.as_str().unwrap_or("")
                ),
            };
            let answer = index(field(v, "answer", path, i + 1)?, choices.len(), &choices)
                .ok_or_else(|| {
                    input_err(
                        path,
                        format!("item {}: `answer` is not an index, letter or choice", i + 1),
                    )
                })?;
            Ok(Choice {
                context,
                choices,
                answer,
            })
        })
        .collect()
}

/// Scores multiple-choice items (each choice after a space, as lm-evaluation-harness'
/// target delimiter).
pub fn score_choices(scorer: &Scorer, items: &[Choice]) -> Result<McResult, EvalError> {
    let requests: Vec<Request> = items
        .iter()
        .flat_map(|it| {
            it.choices.iter().map(|c| Request {
                context: it.context.clone(),
                continuation: format!(" {c}"),
            })
        })
        .collect();
    let scores = scorer.score(&requests)?;
    let (mut acc, mut acc_norm, mut chance) = (0usize, 0usize, 0f64);
    let mut lls = Vec::new();
    let mut at = 0;
    for it in items {
        let ll: Vec<f64> = scores[at..at + it.choices.len()]
            .iter()
            .map(|s| s.ll)
            .collect();
        at += it.choices.len();
        let norm: Vec<f64> = ll
            .iter()
            .zip(&it.choices)
            .map(|(l, c)| l / c.chars().count().max(1) as f64)
            .collect();
        acc += usize::from(argmax(&ll) == it.answer);
        acc_norm += usize::from(argmax(&norm) == it.answer);
        chance += 1.0 / it.choices.len() as f64;
        lls.push(ll);
    }
    let n = items.len().max(1) as f64;
    Ok(McResult {
        items: items.len(),
        acc: acc as f64 / n,
        acc_norm: acc_norm as f64 / n,
        chance: chance / n,
        lls,
    })
}

/// LAMBADA requests: (everything before the last space, " " + the last word).
pub fn lambada(path: &Path, limit: Option<usize>) -> Result<Vec<Request>, EvalError> {
    read_jsonl(path, limit)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let text = field(v, "text", path, i + 1)?.as_str().ok_or_else(|| {
                input_err(path, format!("item {}: `text` is not a string", i + 1))
            })?;
            let (context, word) = text
                .rsplit_once(' ')
                .ok_or_else(|| input_err(path, format!("item {}: a single word", i + 1)))?;
            Ok(Request {
                context: context.to_string(),
                continuation: format!(" {word}"),
            })
        })
        .collect()
}

pub fn score_lambada(scorer: &Scorer, requests: &[Request]) -> Result<LambadaResult, EvalError> {
    let scores = scorer.score(requests)?;
    let n = scores.len().max(1) as f64;
    let mean_ll = scores.iter().map(|s| s.ll).sum::<f64>() / n;
    Ok(LambadaResult {
        items: scores.len(),
        acc: scores.iter().filter(|s| s.greedy).count() as f64 / n,
        perplexity: (-mean_ll).exp(),
        lls: scores.iter().map(|s| s.ll).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hellaswag_text_is_cleaned_like_the_harness() {
        assert_eq!(
            hellaswag_preprocess(
                "Roof shingle removal: [header] A man is [step] on a roof. [title] Tips"
            ),
            "Roof shingle removal: A man is on a roof.. Tips"
        );
        assert_eq!(hellaswag_preprocess("  a  b "), "a b");
    }

    #[test]
    fn bad_lines_are_reported_with_file_and_line() {
        let dir = std::env::temp_dir().join(format!("harman-tasks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("mc.jsonl");
        std::fs::write(
            &p,
            "{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 1}\n{not json\n",
        )
        .unwrap();
        let err = multiple_choice(&p, None).unwrap_err().to_string();
        assert!(err.contains("mc.jsonl") && err.contains("line 2"), "{err}");
        std::fs::write(
            &p,
            "{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"answer\": 5}\n",
        )
        .unwrap();
        let err = multiple_choice(&p, None).unwrap_err().to_string();
        assert!(err.contains("item 1") && err.contains("answer"), "{err}");
        std::fs::write(&p, "{\"text\": \"oneword\"}\n").unwrap();
        let err = lambada(&p, None).unwrap_err().to_string();
        assert!(err.contains("item 1"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn answers_are_indices_letters_or_texts() {
        let c = vec!["x".to_string(), "y".into(), "z".into()];
        assert_eq!(index(&serde_json::json!(2), 3, &c), Some(2));
        assert_eq!(index(&serde_json::json!("B"), 3, &c), Some(1));
        assert_eq!(index(&serde_json::json!("1"), 3, &c), Some(1));
        assert_eq!(index(&serde_json::json!("z"), 3, &c), Some(2));
        assert_eq!(index(&serde_json::json!(3), 3, &c), None);
    }
}
