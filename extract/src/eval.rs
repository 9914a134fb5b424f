//! The two extraction benchmarks' metrics, as their upstream projects describe them (the same
//! as `../shared/anchors/peers/score_extraction.py`), for `harman bench extract`:
//!
//! - ScrapingHub's article-extraction benchmark (AEB): texts are split into `\w+` tokens, each
//!   text becomes the multiset of its 4-token shingles (a text of 1–3 tokens is one shingle);
//!   per page tp/fp/fn are the multiset intersection, predicted-only and truth-only counts,
//!   normalised to sum to 1; precision and recall are means over pages, F1 their harmonic
//!   mean.
//! - trafilatura's evaluation: after whitespace normalisation, a page's `with` snippets must
//!   occur in the output (tp, else fn) and its `without` snippets must not (fp, else tn);
//!   summed over pages.
//!
//! `\w` here is Unicode alphanumeric or `_` (Python's `\w` differs on a few combining marks).

use std::collections::HashMap;

/// Precision, recall and F1.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

fn tokens(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|t| !t.is_empty())
        .collect()
}

fn shingles<'a>(toks: &[&'a str]) -> HashMap<Vec<&'a str>, usize> {
    let mut m = HashMap::new();
    if toks.is_empty() {
        return m;
    }
    if toks.len() < 4 {
        *m.entry(toks.to_vec()).or_default() += 1;
        return m;
    }
    for w in toks.windows(4) {
        *m.entry(w.to_vec()).or_default() += 1;
    }
    m
}

/// One AEB page: normalised (tp, fp, fn).
pub fn aeb_page(truth: &str, pred: Option<&str>) -> (f64, f64, f64) {
    let t_tokens = tokens(truth);
    let p_tokens = tokens(pred.unwrap_or(""));
    let t = shingles(&t_tokens);
    let p = shingles(&p_tokens);
    let mut tp = 0usize;
    for (k, &n) in &p {
        tp += n.min(t.get(k).copied().unwrap_or(0));
    }
    let fp = p.values().sum::<usize>() - tp;
    let fn_ = t.values().sum::<usize>() - tp;
    let s = (tp + fp + fn_) as f64;
    if s == 0.0 {
        return (0.0, 0.0, 0.0);
    }
    (tp as f64 / s, fp as f64 / s, fn_ as f64 / s)
}

/// AEB scores over pages of (tp, fp, fn).
pub fn aeb_scores(pages: &[(f64, f64, f64)]) -> Scores {
    let prec = |&(tp, fp, fn_): &(f64, f64, f64)| {
        if fp == 0.0 && fn_ == 0.0 {
            1.0
        } else if tp + fp > 0.0 {
            tp / (tp + fp)
        } else {
            0.0
        }
    };
    let rec = |&(tp, fp, fn_): &(f64, f64, f64)| {
        if fp == 0.0 && fn_ == 0.0 {
            1.0
        } else if tp + fn_ > 0.0 {
            tp / (tp + fn_)
        } else {
            0.0
        }
    };
    let ps: Vec<f64> = pages.iter().filter(|c| c.0 + c.1 > 0.0).map(prec).collect();
    let rs: Vec<f64> = pages.iter().filter(|c| c.0 + c.2 > 0.0).map(rec).collect();
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let (p, r) = (mean(&ps), mean(&rs));
    Scores {
        precision: p,
        recall: r,
        f1: if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        },
    }
}

fn normalise(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// trafilatura-eval counts for one page: (tp, fp, fn).
pub fn snippet_page(
    with: &[String],
    without: &[String],
    pred: Option<&str>,
) -> (usize, usize, usize) {
    let Some(pred) = pred else {
        return (0, 0, with.len());
    };
    let r = normalise(pred);
    let tp = with.iter().filter(|w| r.contains(&normalise(w))).count();
    let fp = without.iter().filter(|w| r.contains(&normalise(w))).count();
    (tp, fp, with.len() - tp)
}

/// trafilatura-eval scores from summed counts.
pub fn snippet_scores(tp: usize, fp: usize, fn_: usize) -> Scores {
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Scores {
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, tp + fn_),
        f1: ratio(2 * tp, 2 * tp + fp + fn_),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aeb_metric() {
        let truth = "one two three four five";
        assert_eq!(aeb_page(truth, Some(truth)), (1.0, 0.0, 0.0));
        let (tp, fp, fn_) = aeb_page(truth, Some("one two three four"));
        assert!((tp - 0.5).abs() < 1e-9 && fp == 0.0 && (fn_ - 0.5).abs() < 1e-9);
        let s = aeb_scores(&[aeb_page(truth, Some(truth)), aeb_page(truth, None)]);
        assert!((s.recall - 0.5).abs() < 1e-9, "{s:?}");
        assert!((s.precision - 1.0).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn snippet_metric() {
        let with = vec!["a  b".to_string(), "c".to_string()];
        let without = vec!["x".to_string()];
        assert_eq!(snippet_page(&with, &without, Some("a b\nx")), (1, 1, 1));
        let s = snippet_scores(1, 1, 1);
        assert!((s.f1 - 0.5).abs() < 1e-9);
    }
}
