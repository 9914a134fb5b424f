//! GPT-2's pre-tokenization, hand-written: the pieces that the regex
//! `'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` finds, with
//! the same leftmost-first alternation and backtracking, in one pass over the bytes.
//! Letters, numbers and white space are the regex crate's own Unicode classes (taken from
//! `regex-syntax`, the tables tiktoken's regex engine uses), so every code point is
//! classified as tiktoken classifies it.

use std::sync::OnceLock;

/// The class of a character as the pattern sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CharClass {
    /// Anything else: punctuation, symbols, marks, controls that are not white space.
    Other = 0,
    /// `\p{L}`.
    Letter = 1,
    /// `\p{N}`.
    Number = 2,
    /// `\s` (Unicode White_Space).
    Space = 3,
}

/// Character classes of all code points: one byte per code point of a block, blocks of 256
/// shared when equal.
struct ClassTable {
    block_of: Vec<u16>,
    blocks: Vec<[u8; 256]>,
}

fn class_ranges(pattern: &str) -> Vec<(u32, u32)> {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(true)
        .build()
        .parse(pattern)
        .expect("a valid Unicode class pattern");
    match hir.kind() {
        regex_syntax::hir::HirKind::Class(regex_syntax::hir::Class::Unicode(c)) => c
            .ranges()
            .iter()
            .map(|r| (r.start() as u32, r.end() as u32))
            .collect(),
        other => panic!("{pattern} is not a Unicode class: {other:?}"),
    }
}

fn table() -> &'static ClassTable {
    static TABLE: OnceLock<ClassTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut flat = vec![0u8; 0x110000];
        for (pattern, class) in [
            (r"\p{L}", CharClass::Letter),
            (r"\p{N}", CharClass::Number),
            (r"\s", CharClass::Space),
        ] {
            for (lo, hi) in class_ranges(pattern) {
                for c in lo..=hi {
                    flat[c as usize] = class as u8;
                }
            }
        }
        let mut blocks: Vec<[u8; 256]> = Vec::new();
        let mut index: rustc_hash::FxHashMap<[u8; 256], u16> = Default::default();
        let block_of = flat
            .chunks_exact(256)
            .map(|chunk| {
                let block: [u8; 256] = chunk.try_into().expect("256 entries");
                *index.entry(block).or_insert_with(|| {
                    blocks.push(block);
                    (blocks.len() - 1) as u16
                })
            })
            .collect();
        ClassTable { block_of, blocks }
    })
}

/// Classes of the ASCII characters, without the table lookup.
const ASCII: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut c = 0;
    while c < 128 {
        let b = c as u8;
        t[c] = if b.is_ascii_alphabetic() {
            1
        } else if b.is_ascii_digit() {
            2
        } else if matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
            3
        } else {
            0
        };
        c += 1;
    }
    t
};

fn class_of_u32(c: u32) -> u8 {
    if c < 128 {
        return ASCII[c as usize];
    }
    let t = table();
    t.blocks[t.block_of[(c >> 8) as usize] as usize][(c & 0xff) as usize]
}

/// The pattern's class of one character.
pub fn class_of(c: char) -> CharClass {
    match class_of_u32(c as u32) {
        1 => CharClass::Letter,
        2 => CharClass::Number,
        3 => CharClass::Space,
        _ => CharClass::Other,
    }
}

/// Decodes the character starting at `i` of valid UTF-8: (code point, its length).
#[inline(always)]
fn char_at(s: &[u8], i: usize) -> (u32, usize) {
    let b0 = s[i] as u32;
    if b0 < 0x80 {
        (b0, 1)
    } else if b0 < 0xE0 {
        (((b0 & 0x1F) << 6) | (s[i + 1] as u32 & 0x3F), 2)
    } else if b0 < 0xF0 {
        (
            ((b0 & 0x0F) << 12) | ((s[i + 1] as u32 & 0x3F) << 6) | (s[i + 2] as u32 & 0x3F),
            3,
        )
    } else {
        (
            ((b0 & 0x07) << 18)
                | ((s[i + 1] as u32 & 0x3F) << 12)
                | ((s[i + 2] as u32 & 0x3F) << 6)
                | (s[i + 3] as u32 & 0x3F),
            4,
        )
    }
}

/// The class and length of the character at `i` (ASCII without decoding).
#[inline(always)]
fn class_at(s: &[u8], i: usize) -> (u8, usize) {
    let b = s[i];
    if b < 0x80 {
        (ASCII[b as usize], 1)
    } else {
        let (c, n) = char_at(s, i);
        (class_of_u32(c), n)
    }
}

/// End of the run of characters of class `class` starting at `i`.
#[inline(always)]
fn run_end(s: &[u8], mut i: usize, class: u8) -> usize {
    while i < s.len() {
        let (c, n) = class_at(s, i);
        if c != class {
            break;
        }
        i += n;
    }
    i
}

/// End of the run of characters that are neither letters, numbers nor white space.
#[inline(always)]
fn other_run_end(s: &[u8], mut i: usize) -> usize {
    while i < s.len() {
        let (c, n) = class_at(s, i);
        if c != 0 {
            break;
        }
        i += n;
    }
    i
}

/// The end of the piece that starts at `i` (`i < s.len()`).
#[inline]
fn piece_end(s: &[u8], i: usize) -> usize {
    let b = s[i];
    // '(?:[sdmt]|ll|ve|re)
    if b == b'\'' && i + 1 < s.len() {
        match s[i + 1] {
            b's' | b'd' | b'm' | b't' => return i + 2,
            b'l' if s.get(i + 2) == Some(&b'l') => return i + 3,
            b'v' | b'r' if s.get(i + 2) == Some(&b'e') => return i + 3,
            _ => {}
        }
    }
    // An optional single space before a letter, number or other run.
    let (start, class, n) = if b == b' ' && i + 1 < s.len() {
        let (c, n) = class_at(s, i + 1);
        if c == 3 {
            (i, 3, 1)
        } else {
            (i + 1, c, n)
        }
    } else {
        let (c, n) = class_at(s, i);
        (i, c, n)
    };
    match class {
        1 | 2 => run_end(s, start + n, class),
        0 => other_run_end(s, start + n),
        _ => {
            // \s+(?!\S) | \s+ : a white-space run that is not followed by the end leaves
            // its last character to the next piece, unless that would leave nothing.
            let end = run_end(s, i, 3);
            if end == s.len() {
                return end;
            }
            // The last white-space character of the run.
            let mut last = end - 1;
            while s[last] & 0xC0 == 0x80 {
                last -= 1;
            }
            if last > i {
                last
            } else {
                end
            }
        }
    }
}

/// The pieces of `text`, in order; their concatenation is `text`.
pub fn pieces(text: &str) -> Pieces<'_> {
    Pieces {
        s: text.as_bytes(),
        text,
        i: 0,
    }
}

/// Iterator over the pre-tokenization pieces of a text.
pub struct Pieces<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        if self.i >= self.s.len() {
            return None;
        }
        let start = self.i;
        let end = piece_end(self.s, start);
        self.i = end;
        // Piece boundaries always fall on character boundaries.
        Some(&self.text[start..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<&str> {
        pieces(s).collect()
    }

    #[test]
    fn pieces_follow_the_gpt2_pattern() {
        assert_eq!(split("Hello world"), ["Hello", " world"]);
        assert_eq!(
            split("I'm here, it's"),
            ["I", "'m", " here", ",", " it", "'s"]
        );
        assert_eq!(
            split("we'll they've you're 'x"),
            ["we", "'ll", " they", "'ve", " you", "'re", " '", "x"]
        );
        assert_eq!(split("a   b"), ["a", "  ", " b"]);
        assert_eq!(split("a \n\nb"), ["a", " \n", "\n", "b"]);
        assert_eq!(split("end  "), ["end", "  "]);
        assert_eq!(split(" 123abc!!?"), [" 123", "abc", "!!?"]);
        assert_eq!(split("x\t y"), ["x", "\t", " y"]);
        assert_eq!(split(""), Vec::<&str>::new());
        assert_eq!(split(" "), [" "]);
        assert_eq!(split("!'s"), ["!'", "s"]);
        assert_eq!(split("İstanbul'da ıi"), ["İstanbul", "'d", "a", " ıi"]);
        assert_eq!(split("日本語 テキスト"), ["日本語", " テキスト"]);
        assert_eq!(split("a\u{a0}b"), ["a", "\u{a0}", "b"]);
        assert_eq!(split("Ⅻ½"), ["Ⅻ½"]);
    }

    #[test]
    fn classes_come_from_the_regex_tables() {
        assert_eq!(class_of('a'), CharClass::Letter);
        assert_eq!(class_of('ß'), CharClass::Letter);
        assert_eq!(class_of('中'), CharClass::Letter);
        assert_eq!(class_of('٣'), CharClass::Number);
        assert_eq!(class_of('Ⅻ'), CharClass::Number);
        assert_eq!(class_of('\u{3000}'), CharClass::Space);
        assert_eq!(class_of('\u{85}'), CharClass::Space);
        assert_eq!(class_of('\u{200b}'), CharClass::Other);
        assert_eq!(class_of('\u{301}'), CharClass::Other);
        assert_eq!(class_of('😀'), CharClass::Other);
    }
}
