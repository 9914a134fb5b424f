//! What an evaluation produces: [`EvalReport`] (written as `eval.json`), its human summary
//! (`report.md`: the model, every metric next to its chance level, the training loss curve
//! and sample generations) and [`compare`], several runs' reports side by side.

use crate::intrinsic::Intrinsic;
use crate::tasks::{LambadaResult, McResult};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

/// One sample generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    pub prompt: String,
    pub text: String,
}

fn cpu() -> String {
    "cpu".into()
}

/// The results of evaluating one checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// A name for the run (its folder, or the DAG stage's name).
    pub run: String,
    pub step: u64,
    pub parameters: u64,
    pub config: serde_json::Value,
    /// Where the model's forward passes ran: `cpu` (fp32) or `cuda` (bf16 on the GPU), so
    /// the scores of two reports are known to be comparable digit for digit or not.
    #[serde(default = "cpu")]
    pub device: String,
    /// Intrinsic metrics by dataset name (`val` = the held-out token shards).
    pub intrinsic: BTreeMap<String, Intrinsic>,
    /// Multiple-choice tasks by name (hellaswag, arc, …).
    pub multiple_choice: BTreeMap<String, McResult>,
    pub lambada: Option<LambadaResult>,
    pub generations: Vec<Generation>,
}

impl EvalReport {
    /// The report without per-item log-likelihoods (what eval.json keeps).
    pub fn summary(&self) -> EvalReport {
        let mut r = self.clone();
        for m in r.multiple_choice.values_mut() {
            m.lls.clear();
        }
        if let Some(l) = r.lambada.as_mut() {
            l.lls.clear();
        }
        r
    }

    /// Metric rows: (name, value, chance level if any), in a fixed order.
    pub fn rows(&self) -> Vec<(String, f64, Option<f64>)> {
        let mut rows = Vec::new();
        for (name, m) in &self.intrinsic {
            rows.push((format!("{name} loss (nats/token)"), m.loss, None));
            rows.push((format!("{name} perplexity"), m.perplexity, None));
            rows.push((format!("{name} bits per byte"), m.bits_per_byte, None));
        }
        for (name, m) in &self.multiple_choice {
            rows.push((format!("{name} acc"), m.acc, Some(m.chance)));
            rows.push((format!("{name} acc_norm"), m.acc_norm, Some(m.chance)));
        }
        if let Some(l) = &self.lambada {
            rows.push(("lambada acc".into(), l.acc, None));
            rows.push(("lambada perplexity".into(), l.perplexity, None));
        }
        rows
    }

    /// (task, metric, value, chance, items) rows: the `eval_results` table.
    pub fn table(&self) -> Vec<(String, &'static str, f64, Option<f64>, u64)> {
        let mut rows = Vec::new();
        for (name, m) in &self.intrinsic {
            for (metric, v) in [
                ("loss", m.loss),
                ("perplexity", m.perplexity),
                ("bits_per_byte", m.bits_per_byte),
            ] {
                rows.push((name.clone(), metric, v, None, m.tokens));
            }
        }
        for (name, m) in &self.multiple_choice {
            rows.push((name.clone(), "acc", m.acc, Some(m.chance), m.items as u64));
            rows.push((
                name.clone(),
                "acc_norm",
                m.acc_norm,
                Some(m.chance),
                m.items as u64,
            ));
        }
        if let Some(l) = &self.lambada {
            rows.push(("lambada".into(), "acc", l.acc, None, l.items as u64));
            rows.push((
                "lambada".into(),
                "perplexity",
                l.perplexity,
                None,
                l.items as u64,
            ));
        }
        rows
    }

    /// The files an evaluation writes: `eval.json` (the [`summary`](EvalReport::summary)),
    /// `report.md`, and `loss.svg` drawn from the training log's text when there is one.
    pub fn files(&self, training_log: Option<&str>) -> Vec<(&'static str, Vec<u8>)> {
        let mut json = serde_json::to_vec_pretty(&self.summary()).unwrap_or_default();
        json.push(b'\n');
        let svg = training_log.map(harman_train::trainer::loss_svg);
        let mut files = vec![
            ("eval.json", json),
            (
                "report.md",
                self.markdown(svg.as_ref().map(|_| "loss.svg")).into_bytes(),
            ),
        ];
        if let Some(svg) = svg {
            files.push(("loss.svg", svg.into_bytes()));
        }
        files
    }

    /// The Markdown summary; `loss_svg` names the loss curve image beside it, if any.
    pub fn markdown(&self, loss_svg: Option<&str>) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Evaluation of `{}` at step {}\n", self.run, self.step);
        let _ = writeln!(
            s,
            "{:.2}M parameters; model {}; scored on the {}\n",
            self.parameters as f64 / 1e6,
            self.config,
            if self.device == "cuda" {
                "GPU (bf16)"
            } else {
                "CPU (fp32)"
            }
        );
        if let Some(svg) = loss_svg {
            let _ = writeln!(
                s,
                "## Training loss\n\n![training and validation loss]({svg})\n"
            );
        }
        let _ = writeln!(
            s,
            "## Metrics\n\n| metric | value | chance |\n|---|---|---|"
        );
        for (name, v, chance) in self.rows() {
            let c = chance.map_or("–".to_string(), |c| format!("{c:.4}"));
            let _ = writeln!(s, "| {name} | {v:.4} | {c} |");
        }
        let counts: Vec<String> = self
            .multiple_choice
            .iter()
            .map(|(n, m)| format!("{n}: {} items", m.items))
            .chain(
                self.lambada
                    .iter()
                    .map(|l| format!("lambada: {} items", l.items)),
            )
            .chain(
                self.intrinsic
                    .iter()
                    .map(|(n, m)| format!("{n}: {} tokens, {} bytes", m.tokens, m.bytes)),
            )
            .collect();
        let _ = writeln!(s, "\n{}\n", counts.join("; "));
        if !self.generations.is_empty() {
            let _ = writeln!(s, "## Sample generations\n");
            for g in &self.generations {
                let _ = writeln!(
                    s,
                    "- **{}**{}",
                    g.prompt.replace('\n', " "),
                    g.text.replace('\n', " ")
                );
            }
        }
        s
    }
}

/// Several runs side by side: one Markdown table, a row per metric, a column per run.
pub fn compare(reports: &[EvalReport]) -> String {
    let mut names: Vec<String> = Vec::new();
    let mut chance: BTreeMap<String, Option<f64>> = BTreeMap::new();
    for r in reports {
        for (n, _, c) in r.rows() {
            if !names.contains(&n) {
                names.push(n.clone());
            }
            chance.insert(n, c);
        }
    }
    let mut s = String::from("| metric |");
    for r in reports {
        let _ = write!(s, " {} (step {}) |", r.run, r.step);
    }
    s.push_str(" chance |\n|---|");
    for _ in reports {
        s.push_str("---|");
    }
    s.push_str("---|\n");
    for n in &names {
        let _ = write!(s, "| {n} |");
        for r in reports {
            match r.rows().into_iter().find(|(m, _, _)| m == n) {
                Some((_, v, _)) => {
                    let _ = write!(s, " {v:.4} |");
                }
                None => s.push_str(" – |"),
            }
        }
        let c = chance
            .get(n)
            .copied()
            .flatten()
            .map_or("–".to_string(), |c| format!("{c:.4}"));
        let _ = writeln!(s, " {c} |");
    }
    s
}
