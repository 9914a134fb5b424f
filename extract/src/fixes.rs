//! Text fixes applied after extraction, each behind a switch: mojibake repair (UTF-8 that was
//! decoded as Windows-1252/Latin-1, like "CafÃ©" or "donâ€™t"), Unicode NFC, emoji to
//! `:name:` text (as the `emoji`/`demoji` libraries write them), and removal of control
//! characters.

use unicode_normalization::UnicodeNormalization;

/// Which fixes to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextFixes {
    pub mojibake: bool,
    pub nfc: bool,
    pub emoji_to_text: bool,
    pub control_chars: bool,
}

impl Default for TextFixes {
    fn default() -> Self {
        TextFixes {
            mojibake: true,
            nfc: true,
            emoji_to_text: false,
            control_chars: true,
        }
    }
}

/// Apply the enabled fixes.
pub fn apply(text: &str, fixes: &TextFixes) -> String {
    let mut s = if fixes.mojibake {
        fix_mojibake(text)
    } else {
        text.to_string()
    };
    if fixes.control_chars {
        s = remove_control_chars(&s);
    }
    if fixes.nfc
        && !unicode_normalization::is_nfc_quick(s.chars())
            .eq(&unicode_normalization::IsNormalized::Yes)
    {
        s = s.nfc().collect();
    }
    if fixes.emoji_to_text {
        s = emoji_to_text(&s);
    }
    s
}

/// Characters that show up when UTF-8 lead bytes are read as Windows-1252.
fn looks_like_mojibake(s: &str) -> bool {
    s.contains('Ã') || s.contains('Â') || s.contains("â€") || s.contains('Ð') || s.contains('Å')
}

/// Re-read runs of text that are UTF-8 bytes decoded as Windows-1252, when doing so gives
/// valid UTF-8 and fewer suspicious characters. Text that is not mojibake is left alone.
pub fn fix_mojibake(text: &str) -> String {
    if !looks_like_mojibake(text) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&fix_line(line));
    }
    out
}

fn fix_line(line: &str) -> String {
    if !looks_like_mojibake(line) {
        return line.to_string();
    }
    // Runs of characters that Windows-1252 can encode are re-read one by one, so a line that
    // also holds other characters (emoji, CJK) is still repaired where it is broken.
    let mut out = String::with_capacity(line.len());
    let mut run = Vec::new();
    let mut run_text = String::new();
    let flush = |run: &mut Vec<u8>, run_text: &mut String, out: &mut String| {
        match std::str::from_utf8(run) {
            Ok(fixed)
                if looks_like_mojibake(run_text)
                    && fixed.chars().count() < run_text.chars().count() =>
            {
                out.push_str(fixed)
            }
            _ => out.push_str(run_text),
        }
        run.clear();
        run_text.clear();
    };
    for c in line.chars() {
        match cp1252_byte(c) {
            Some(b) => {
                run.push(b);
                run_text.push(c);
            }
            None => {
                flush(&mut run, &mut run_text, &mut out);
                out.push(c);
            }
        }
    }
    flush(&mut run, &mut run_text, &mut out);
    out
}

/// The Windows-1252 byte of a character, if it has one.
fn cp1252_byte(c: char) -> Option<u8> {
    static HIGH: std::sync::LazyLock<Vec<char>> = std::sync::LazyLock::new(|| {
        let bytes: Vec<u8> = (0x80..=0x9F).collect();
        encoding_rs::WINDOWS_1252
            .decode_without_bom_handling(&bytes)
            .0
            .chars()
            .collect()
    });
    let u = c as u32;
    if u < 0x80 || (0xA0..=0xFF).contains(&u) {
        return Some(u as u8);
    }
    HIGH.iter().position(|&h| h == c).map(|i| 0x80 + i as u8)
}

/// Drop C0/C1 control characters except newline and tab; zero-width and BOM characters too.
pub fn remove_control_chars(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            c == '\n'
                || c == '\t'
                || !(c.is_control() || matches!(c, '\u{200B}' | '\u{FEFF}' | '\u{00AD}'))
        })
        .collect()
}

/// Replace each emoji by `:its_name:` (CLDR short name, spaces as underscores).
pub fn emoji_to_text(text: &str) -> String {
    if text.is_ascii() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while let Some(c) = rest.chars().next() {
        if !c.is_ascii() {
            // Longest emoji sequence starting here (ZWJ sequences, flags, skin tones).
            let mut ends: Vec<usize> = rest
                .char_indices()
                .map(|(i, _)| i)
                .skip(1)
                .take(12)
                .collect();
            ends.push(
                rest.len()
                    .min(rest.char_indices().nth(12).map_or(rest.len(), |(i, _)| i)),
            );
            ends.sort_unstable();
            ends.dedup();
            for &end in ends.iter().rev() {
                if let Some(e) = emojis::get(&rest[..end]) {
                    out.push(':');
                    out.push_str(
                        &e.name()
                            .replace([' ', '-'], "_")
                            .replace([':', ',', '.', '’', '“', '”'], ""),
                    );
                    out.push(':');
                    rest = &rest[end..];
                    continue 'outer;
                }
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repairs_mojibake_only_where_present() {
        assert_eq!(fix_mojibake("CafÃ© and donâ€™t"), "Café and don’t");
        assert_eq!(
            fix_mojibake("Straße, Ærø, Ð is a letter"),
            "Straße, Ærø, Ð is a letter"
        );
        assert_eq!(fix_mojibake("plain ascii"), "plain ascii");
        assert_eq!(fix_mojibake("CafÃ© ❤ donâ€™t"), "Café ❤ don’t");
    }

    #[test]
    fn nfc_and_controls() {
        let fixes = TextFixes::default();
        assert_eq!(
            apply("e\u{301}te\u{0007}\u{200B}\tok\n", &fixes),
            "éte\tok\n"
        );
    }

    #[test]
    fn emoji_names() {
        assert_eq!(emoji_to_text("I ❤️ Rust 🦀!"), "I :red_heart: Rust :crab:!");
        assert_eq!(emoji_to_text("👍🏽 ok"), ":thumbs_up_medium_skin_tone: ok");
        assert_eq!(emoji_to_text("no emoji: é"), "no emoji: é");
    }
}
