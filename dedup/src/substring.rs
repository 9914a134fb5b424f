//! ExactSubstr (Lee et al. 2022, "Deduplicating Training Data Makes Language Models
//! Better"): spans of at least `min_bytes` bytes that already occurred earlier in a group of
//! documents are found with a suffix array (divsufsort) and its LCP array (Kasai), and
//! removed from the later occurrences; the first occurrence stays, so no text is lost
//! entirely.
//!
//! Documents are concatenated with a 0xFF byte after each (a byte UTF-8 never contains), so
//! no match crosses a document boundary. A suffix-array interval whose neighbours share at
//! least `min_bytes` bytes is a set of occurrences of the same `min_bytes`-byte string; every
//! occurrence but the earliest is marked for `min_bytes` bytes, and the union of the marks is
//! what repeats. Spans are shrunk to character boundaries. Memory is about 13 bytes per byte
//! of the group, so callers bound the group size (the dedup stage: `substring_group_mb`).

/// Byte ranges, per document, of text that repeats an earlier occurrence in the group.
pub fn repeated_spans(docs: &[&str], min_bytes: usize) -> Vec<Vec<(usize, usize)>> {
    let mut out = vec![Vec::new(); docs.len()];
    let min_bytes = min_bytes.max(1);
    let total: usize = docs.iter().map(|d| d.len() + 1).sum();
    if total == 0 || total > i32::MAX as usize {
        return out;
    }
    let mut text = Vec::with_capacity(total);
    let mut starts = Vec::with_capacity(docs.len() + 1);
    for d in docs {
        starts.push(text.len());
        text.extend_from_slice(d.as_bytes());
        text.push(0xFF);
    }
    starts.push(text.len());
    let n = text.len();
    let mut sa = vec![0i32; n];
    cdivsufsort::sort_in_place(&text, &mut sa);

    // Kasai: lcp[i] = common prefix of the suffixes at sa[i - 1] and sa[i].
    let mut rank = vec![0u32; n];
    for (i, &p) in sa.iter().enumerate() {
        rank[p as usize] = i as u32;
    }
    let mut lcp = vec![0u32; n];
    let mut h = 0usize;
    for p in 0..n {
        let r = rank[p] as usize;
        if r == 0 {
            h = 0;
            continue;
        }
        let q = sa[r - 1] as usize;
        while p + h < n && q + h < n && text[p + h] == text[q + h] {
            h += 1;
        }
        lcp[r] = h as u32;
        h = h.saturating_sub(1);
    }
    drop(rank);

    // Bytes from a position to the separator that ends its document.
    let to_separator = |p: usize| -> usize {
        let d = starts.partition_point(|&s| s <= p) - 1;
        starts[d + 1] - 1 - p
    };
    let effective = |i: usize| -> usize {
        let l = lcp[i] as usize;
        if l < min_bytes {
            0
        } else {
            l.min(to_separator(sa[i] as usize))
        }
    };
    let mut marks: Vec<usize> = Vec::new();
    let mut i = 1;
    while i < n {
        if effective(i) < min_bytes {
            i += 1;
            continue;
        }
        let run_start = i - 1;
        while i < n && effective(i) >= min_bytes {
            i += 1;
        }
        let members = &sa[run_start..i];
        let first = members.iter().copied().min().unwrap_or(0);
        marks.extend(members.iter().filter(|&&p| p != first).map(|&p| p as usize));
    }
    marks.sort_unstable();

    // Merge [p, p + min_bytes) marks into spans and give them to their documents.
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for p in marks {
        let end = p + min_bytes;
        match merged.last_mut() {
            Some(last) if p <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((p, end)),
        }
    }
    for (a, b) in merged {
        let d = starts.partition_point(|&s| s <= a) - 1;
        let doc = docs[d];
        let (mut lo, mut hi) = (a - starts[d], (b - starts[d]).min(doc.len()));
        while lo < hi && !doc.is_char_boundary(lo) {
            lo += 1;
        }
        while hi > lo && !doc.is_char_boundary(hi) {
            hi -= 1;
        }
        if lo < hi {
            out[d].push((lo, hi));
        }
    }
    out
}

/// `text` without `spans` (sorted, disjoint byte ranges on character boundaries).
pub fn remove_spans(text: &str, spans: &[(usize, usize)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for &(a, b) in spans {
        if a >= at && b <= text.len() && a <= b {
            out.push_str(&text[at..a]);
            at = b;
        }
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAGRAPH: &str = "Subscribe to our newsletter to receive the latest news, offers and updates from the harvest team every week.";

    #[test]
    fn later_copies_of_a_long_span_are_removed_and_the_first_kept() {
        let a = format!("The barley was threshed on the floor at dawn. {PARAGRAPH}");
        let b = format!("{PARAGRAPH} Then the wind carried the chaff away over the river.");
        let c = format!("Oxen walked in circles. {PARAGRAPH} The grain stayed behind.");
        let docs = [a.as_str(), b.as_str(), c.as_str()];
        let spans = repeated_spans(&docs, 100);
        assert!(spans[0].is_empty(), "the first occurrence stays: {spans:?}");
        assert_eq!(
            remove_spans(&b, &spans[1]).trim(),
            "Then the wind carried the chaff away over the river."
        );
        // The repeat is maximal: ". " before and " The" after also occurred before.
        assert_eq!(
            remove_spans(&c, &spans[2]),
            "Oxen walked in circles grain stayed behind."
        );
        // Below the threshold nothing is removed.
        assert!(repeated_spans(&docs, PARAGRAPH.len() + 8)
            .iter()
            .all(Vec::is_empty));
    }

    #[test]
    fn repeats_inside_one_document_and_across_boundaries() {
        // A document repeating itself loses the second copy.
        let twice = format!("{PARAGRAPH} / {PARAGRAPH}");
        let spans = repeated_spans(&[twice.as_str()], 50);
        assert_eq!(remove_spans(&twice, &spans[0]), format!("{PARAGRAPH} / "));
        // The end of one document + the start of the next is not a match of either.
        let (x, y) = ("a".repeat(60), "b".repeat(60));
        let docs = [x.as_str(), y.as_str(), x.as_str(), y.as_str()];
        let spans = repeated_spans(&docs, 80);
        assert!(spans.iter().all(Vec::is_empty), "{spans:?}");
        assert!(repeated_spans(&[], 10).is_empty());
        assert_eq!(repeated_spans(&["", ""], 10), vec![vec![], vec![]]);
    }

    #[test]
    fn spans_stay_on_character_boundaries() {
        let s = "ğüşçöı".repeat(30);
        let a = format!("x{s}");
        let b = format!("yy{s}");
        let spans = repeated_spans(&[a.as_str(), b.as_str()], 40);
        assert!(!spans[1].is_empty());
        let kept = remove_spans(&b, &spans[1]);
        assert!(kept.len() < b.len() && kept.starts_with("yy"));
        // Valid UTF-8 by construction (a String); the whole repeat went.
        assert!(kept.chars().count() <= 3, "{kept}");
    }
}
