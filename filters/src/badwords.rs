//! Bad-word lists (LDNOOBW, every language it has, shipped in `data/ldnoobw` with its source
//! and CC BY 4.0 license): the C4-style signal of toxicity. Text and entries are lowercased
//! (Turkish with its own dotted/dotless i rules) and matched with one Aho-Corasick automaton
//! per language; a match counts only on word boundaries, except in languages written
//! without spaces (Japanese, Chinese, Thai), where substrings count.

use aho_corasick::{AhoCorasick, MatchKind};

/// (language, list) as shipped.
const LISTS: &[(&str, &str)] = &[
    ("ar", include_str!("../data/ldnoobw/ar.txt")),
    ("cs", include_str!("../data/ldnoobw/cs.txt")),
    ("da", include_str!("../data/ldnoobw/da.txt")),
    ("de", include_str!("../data/ldnoobw/de.txt")),
    ("en", include_str!("../data/ldnoobw/en.txt")),
    ("eo", include_str!("../data/ldnoobw/eo.txt")),
    ("es", include_str!("../data/ldnoobw/es.txt")),
    ("fa", include_str!("../data/ldnoobw/fa.txt")),
    ("fi", include_str!("../data/ldnoobw/fi.txt")),
    ("fil", include_str!("../data/ldnoobw/fil.txt")),
    ("fr", include_str!("../data/ldnoobw/fr.txt")),
    (
        "fr-CA-u-sd-caqc",
        include_str!("../data/ldnoobw/fr-CA-u-sd-caqc.txt"),
    ),
    ("hi", include_str!("../data/ldnoobw/hi.txt")),
    ("hu", include_str!("../data/ldnoobw/hu.txt")),
    ("it", include_str!("../data/ldnoobw/it.txt")),
    ("ja", include_str!("../data/ldnoobw/ja.txt")),
    ("kab", include_str!("../data/ldnoobw/kab.txt")),
    ("ko", include_str!("../data/ldnoobw/ko.txt")),
    ("nl", include_str!("../data/ldnoobw/nl.txt")),
    ("no", include_str!("../data/ldnoobw/no.txt")),
    ("pl", include_str!("../data/ldnoobw/pl.txt")),
    ("pt", include_str!("../data/ldnoobw/pt.txt")),
    ("ru", include_str!("../data/ldnoobw/ru.txt")),
    ("sv", include_str!("../data/ldnoobw/sv.txt")),
    ("th", include_str!("../data/ldnoobw/th.txt")),
    ("tlh", include_str!("../data/ldnoobw/tlh.txt")),
    ("tr", include_str!("../data/ldnoobw/tr.txt")),
    ("zh", include_str!("../data/ldnoobw/zh.txt")),
];

/// Languages written without spaces between words.
const NO_SPACES: [&str; 3] = ["ja", "zh", "th"];

/// One language's list, compiled.
pub struct WordList {
    lang: String,
    automaton: AhoCorasick,
    substrings: bool,
    entries: usize,
}

fn turkic(lang: &str) -> bool {
    lang == "tr" || lang == "az"
}

/// Lowercase the way the language does (Turkish: İ→i, I→ı).
pub fn lowercase(text: &str, lang: &str) -> String {
    if turkic(lang) {
        text.chars()
            .flat_map(|c| match c {
                'İ' => vec!['i'],
                'I' => vec!['ı'],
                c => c.to_lowercase().collect(),
            })
            .collect()
    } else {
        text.to_lowercase()
    }
}

impl WordList {
    /// The shipped list of `lang` (an LDNOOBW code such as `en`, `tr`, `zh`), if there is one.
    pub fn shipped(lang: &str) -> Option<WordList> {
        let (_, list) = LISTS.iter().find(|(l, _)| *l == lang)?;
        Some(WordList::from_entries(lang, list.lines()))
    }

    /// Every language shipped.
    pub fn languages() -> impl Iterator<Item = &'static str> {
        LISTS.iter().map(|(l, _)| *l)
    }

    /// A list from entries (one word or phrase each; blank lines ignored).
    pub fn from_entries<'a>(lang: &str, entries: impl Iterator<Item = &'a str>) -> WordList {
        let words: Vec<String> = entries
            .map(|e| lowercase(e.trim(), lang))
            .filter(|e| !e.is_empty())
            .collect();
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&words)
            .expect("word lists compile");
        WordList {
            lang: lang.to_string(),
            automaton,
            substrings: NO_SPACES.contains(&lang),
            entries: words.len(),
        }
    }

    pub fn lang(&self) -> &str {
        &self.lang
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Matches in `text` (on word boundaries unless the language has no spaces).
    pub fn count(&self, text: &str) -> usize {
        self.count_lowercased(&lowercase(text, &self.lang))
    }

    /// Whether this list's language lowercases like `other` (so one lowercased text serves
    /// both).
    pub fn lowercases_like(&self, other: &str) -> bool {
        turkic(&self.lang) == turkic(other)
    }

    /// Matches in text already lowercased with [`lowercase`] for this list's language.
    pub fn count_lowercased(&self, lower: &str) -> usize {
        self.automaton
            .find_iter(lower)
            .filter(|m| {
                self.substrings || {
                    let before = lower[..m.start()].chars().next_back();
                    let after = lower[m.end()..].chars().next();
                    !before.is_some_and(char::is_alphanumeric)
                        && !after.is_some_and(char::is_alphanumeric)
                }
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_list_loads() {
        let langs: Vec<_> = WordList::languages().collect();
        assert_eq!(langs.len(), 28);
        for l in langs {
            let list = WordList::shipped(l).unwrap();
            assert!(!list.is_empty(), "{l}");
        }
        assert_eq!(WordList::shipped("en").unwrap().len(), 403);
    }

    #[test]
    fn word_boundaries_and_case() {
        let en = WordList::from_entries("en", ["ass", "two words"].into_iter());
        assert_eq!(en.count("You ASS! Two  words? two words."), 2);
        assert_eq!(en.count("a class of assets, passing"), 0);
    }

    #[test]
    fn substrings_where_there_are_no_spaces() {
        let zh = WordList::from_entries("zh", ["坏词"].into_iter());
        assert_eq!(zh.count("这是一个坏词的例子"), 1);
    }

    #[test]
    fn turkish_case_rules() {
        let tr = WordList::from_entries("tr", ["ıslak"].into_iter());
        assert_eq!(tr.count("ISLAK zemin"), 1);
        assert_eq!(lowercase("İSTANBUL", "tr"), "istanbul");
    }
}
