//! The banding of MinHash-LSH: a pair whose true Jaccard similarity is `j` shares at least
//! one of `b` bands of `r` rows with probability `1 − (1 − j^r)^b` (the S-curve, steepest
//! near `(1/b)^(1/r)`). [`check_banding`] refuses a banding that contradicts the configured
//! threshold, naming the option to change and a banding that would suit it.

use std::fmt::Write;

/// `b` bands of `r` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Banding {
    pub bands: usize,
    pub rows: usize,
}

impl Banding {
    /// Probability that a pair with Jaccard `j` becomes a candidate.
    pub fn probability(&self, j: f64) -> f64 {
        1.0 - (1.0 - j.powi(self.rows as i32)).powi(self.bands as i32)
    }

    /// The similarity where the S-curve is steepest (≈ where the probability is one half).
    pub fn midpoint(&self) -> f64 {
        (1.0 / self.bands as f64).powf(1.0 / self.rows as f64)
    }

    pub fn hashes(&self) -> usize {
        self.bands * self.rows
    }
}

/// The banding with `hashes` functions (or fewer, when it does not divide) that catches at
/// least 95% of the pairs at `threshold` with the fewest candidates below it; if none
/// reaches 95%, the one that catches most.
pub fn suggest(threshold: f64, hashes: usize) -> Banding {
    let options: Vec<Banding> = (1..=hashes.max(1))
        .map(|rows| Banding {
            bands: (hashes / rows).max(1),
            rows,
        })
        .collect();
    let good = options
        .iter()
        .filter(|b| b.probability(threshold) >= 0.95)
        .max_by(|x, y| x.rows.cmp(&y.rows));
    match good {
        Some(b) => *b,
        None => *options
            .iter()
            .max_by(|x, y| {
                x.probability(threshold)
                    .total_cmp(&y.probability(threshold))
            })
            .unwrap_or(&Banding { bands: 1, rows: 1 }),
    }
}

/// The S-curve as a text table, for Jaccard 0.0..1.0 in steps of 0.05, with the threshold
/// marked.
pub fn s_curve(banding: Banding, threshold: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "LSH S-curve: {} bands x {} rows = {} hashes; midpoint (1/b)^(1/r) = {:.3}; threshold {threshold}",
        banding.bands,
        banding.rows,
        banding.hashes(),
        banding.midpoint()
    );
    let _ = writeln!(out, "jaccard  P(candidate)");
    for step in 0..=20 {
        let j = step as f64 / 20.0;
        let p = banding.probability(j);
        let bar = "#".repeat((p * 40.0).round() as usize);
        let mark = if (j - threshold).abs() < 0.025 {
            "  <- threshold"
        } else {
            ""
        };
        let _ = writeln!(out, "{j:>7.2}  {p:>12.4}  {bar}{mark}");
    }
    out
}

/// A banding that does not suit its threshold: the option to change and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct BandingError {
    pub field: &'static str,
    pub message: String,
}

/// Refuse bandings that contradict the threshold: one that misses most pairs at the
/// threshold (P < 0.5 there), and, when candidates are not verified by exact Jaccard, one
/// whose midpoint lies more than 0.15 below the threshold (it would remove pairs far less
/// similar than asked).
pub fn check_banding(banding: Banding, threshold: f64, verify: bool) -> Result<(), BandingError> {
    if !(threshold > 0.0 && threshold <= 1.0) {
        return Err(BandingError {
            field: "threshold",
            message: format!("threshold = {threshold}: must be in (0, 1], e.g. 0.8"),
        });
    }
    if banding.bands == 0 || banding.rows == 0 || banding.hashes() > 4096 {
        return Err(BandingError {
            field: "bands",
            message: format!(
                "bands = {}, rows = {}: both must be at least 1 and bands x rows at most 4096",
                banding.bands, banding.rows
            ),
        });
    }
    let at = banding.probability(threshold);
    let better = suggest(threshold, banding.hashes());
    if at < 0.5 {
        return Err(BandingError {
            field: "rows",
            message: format!(
                "bands = {} x rows = {} makes a pair at the threshold (Jaccard {threshold}) a candidate with probability {at:.3}: most such duplicates would be missed (the S-curve's midpoint is {:.3}). Use fewer rows or more bands, e.g. bands = {}, rows = {} (P = {:.3}), or lower `threshold`",
                banding.bands,
                banding.rows,
                banding.midpoint(),
                better.bands,
                better.rows,
                better.probability(threshold)
            ),
        });
    }
    if !verify && banding.midpoint() < threshold - 0.15 {
        let loose = banding.midpoint();
        return Err(BandingError {
            field: "rows",
            message: format!(
                "bands = {} x rows = {} without verification removes pairs down to Jaccard ~{loose:.2} (the S-curve's midpoint), far below threshold = {threshold}. Set verify = true (candidates checked by exact Jaccard) or use e.g. bands = {}, rows = {}",
                banding.bands, banding.rows, better.bands, better.rows
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fineweb_banding_has_its_published_shape() {
        let b = Banding { bands: 14, rows: 8 };
        assert!((b.midpoint() - 0.719).abs() < 0.001);
        assert!((b.probability(0.8) - 0.924).abs() < 0.001);
        assert!(b.probability(0.5) < 0.06);
        assert!(b.probability(0.95) > 0.9999);
        let table = s_curve(b, 0.8);
        assert!(table.contains("0.80        0.9235"), "{table}");
        assert!(table
            .lines()
            .any(|l| l.starts_with("   0.80") && l.ends_with("<- threshold")));
    }

    #[test]
    fn contradictory_bandings_are_refused_with_a_fix() {
        // Fine: 14x8 for 0.75 or 0.8.
        check_banding(Banding { bands: 14, rows: 8 }, 0.8, true).unwrap();
        check_banding(Banding { bands: 14, rows: 8 }, 0.75, false).unwrap();
        // 2 bands of 20 rows barely ever catch a pair at 0.8.
        let e = check_banding(Banding { bands: 2, rows: 20 }, 0.8, true).unwrap_err();
        assert_eq!(e.field, "rows");
        assert!(e.message.contains("probability 0.023"), "{}", e.message);
        let fix = suggest(0.8, 40);
        assert!(fix.probability(0.8) >= 0.95);
        assert!(e
            .message
            .contains(&format!("bands = {}, rows = {}", fix.bands, fix.rows)));
        // 50 bands of 2 rows merge pairs at J 0.1 unless verified.
        assert!(check_banding(Banding { bands: 50, rows: 2 }, 0.8, false).is_err());
        check_banding(Banding { bands: 50, rows: 2 }, 0.8, true).unwrap();
        assert_eq!(
            check_banding(Banding { bands: 14, rows: 8 }, 1.5, true)
                .unwrap_err()
                .field,
            "threshold"
        );
    }
}
