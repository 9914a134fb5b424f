//! One document's annotations, everything the filter stage writes as columns: PII redaction
//! first (every later measurement sees the redacted text, as it is written), then language,
//! the quality rules, LDNOOBW matches (the list of the detected language plus English) and
//! the toxicity score. An [`Annotator`] is built once per stage and shared by its threads.

use crate::badwords::{self, WordList};
use crate::langid;
use crate::pii::{self, PiiCounts, PiiOptions};
use crate::quality::{self, Quality, QualityParams};
use crate::toxicity::Classifier;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Settings of an [`Annotator`].
#[derive(Debug, Clone)]
pub struct AnnotatorConfig {
    pub quality: QualityParams,
    /// Placeholders; None = no redaction.
    pub pii: Option<PiiOptions>,
    /// Characters of a document the language detector reads.
    pub lang_max_chars: usize,
}

/// A document's annotations.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// The redacted text, when redaction changed it.
    pub redacted: Option<String>,
    /// ISO 639-1 code where the language has one, else ISO 639-3.
    pub lang: Option<&'static str>,
    pub lang_score: f64,
    pub quality: Quality,
    pub badwords: u32,
    /// The classifier's score; None when the document's language is not one the model was
    /// trained for.
    pub toxicity: Option<f64>,
    pub pii: PiiCounts,
}

impl Annotation {
    /// Bad-word matches per word.
    pub fn badword_frac(&self) -> f64 {
        if self.quality.words == 0 {
            0.0
        } else {
            self.badwords as f64 / self.quality.words as f64
        }
    }

    /// Whether any rule of `family` (`gopher`, `c4`, `fineweb`) failed.
    pub fn family_failed(&self, family: &str) -> bool {
        self.quality
            .failed
            .iter()
            .any(|r| quality::family(r) == family)
    }
}

/// Computes annotations; cheap to share (`Arc` inside).
#[derive(Clone)]
pub struct Annotator {
    cfg: AnnotatorConfig,
    classifier: Arc<Classifier>,
    lists: Arc<BTreeMap<&'static str, WordList>>,
}

impl std::fmt::Debug for Annotator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Annotator")
            .field("cfg", &self.cfg)
            .field("model", &self.classifier.header.name)
            .finish()
    }
}

/// whatlang's ISO 639-3 codes with their ISO 639-1 equivalents.
const ISO_639_1: &[(&str, &str)] = &[
    ("afr", "af"),
    ("aka", "ak"),
    ("amh", "am"),
    ("ara", "ar"),
    ("aze", "az"),
    ("bel", "be"),
    ("ben", "bn"),
    ("bul", "bg"),
    ("cat", "ca"),
    ("ces", "cs"),
    ("cmn", "zh"),
    ("dan", "da"),
    ("deu", "de"),
    ("ell", "el"),
    ("eng", "en"),
    ("epo", "eo"),
    ("est", "et"),
    ("fin", "fi"),
    ("fra", "fr"),
    ("guj", "gu"),
    ("heb", "he"),
    ("hin", "hi"),
    ("hrv", "hr"),
    ("hun", "hu"),
    ("hye", "hy"),
    ("ind", "id"),
    ("ita", "it"),
    ("jav", "jv"),
    ("jpn", "ja"),
    ("kan", "kn"),
    ("kat", "ka"),
    ("khm", "km"),
    ("kor", "ko"),
    ("lat", "la"),
    ("lav", "lv"),
    ("lit", "lt"),
    ("mal", "ml"),
    ("mar", "mr"),
    ("mkd", "mk"),
    ("mya", "my"),
    ("nep", "ne"),
    ("nld", "nl"),
    ("nob", "nb"),
    ("ori", "or"),
    ("pan", "pa"),
    ("pes", "fa"),
    ("pol", "pl"),
    ("por", "pt"),
    ("ron", "ro"),
    ("rus", "ru"),
    ("sin", "si"),
    ("slk", "sk"),
    ("slv", "sl"),
    ("sna", "sn"),
    ("spa", "es"),
    ("srp", "sr"),
    ("swe", "sv"),
    ("tam", "ta"),
    ("tel", "te"),
    ("tgl", "tl"),
    ("tha", "th"),
    ("tuk", "tk"),
    ("tur", "tr"),
    ("ukr", "uk"),
    ("urd", "ur"),
    ("uzb", "uz"),
    ("vie", "vi"),
    ("yid", "yi"),
    ("zul", "zu"),
];

/// The ISO 639-1 code of an ISO 639-3 code, where there is one (else the code itself).
pub fn iso_639_1(code: &'static str) -> &'static str {
    ISO_639_1
        .iter()
        .find(|(three, _)| *three == code)
        .map_or(code, |(_, two)| two)
}

/// The LDNOOBW list name of a language code (`nb` → `no`, `tl` → `fil`).
fn list_name(lang: &str) -> &str {
    match lang {
        "nb" | "nn" => "no",
        "tl" => "fil",
        other => other,
    }
}

impl Annotator {
    pub fn new(cfg: AnnotatorConfig, classifier: Arc<Classifier>) -> Annotator {
        let lists = WordList::languages()
            .filter_map(|l| WordList::shipped(l).map(|w| (l, w)))
            .collect();
        Annotator {
            cfg,
            classifier,
            lists: Arc::new(lists),
        }
    }

    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// Annotate one document's text.
    pub fn annotate(&self, text: &str) -> Annotation {
        let (redacted, pii) = match &self.cfg.pii {
            Some(opts) => pii::redact(text, opts),
            None => (None, PiiCounts::default()),
        };
        let body = redacted.as_deref().unwrap_or(text);
        let detected = langid::detect(body, self.cfg.lang_max_chars);
        let lang = detected.as_ref().map(|l| iso_639_1(l.code));
        let quality = quality::assess(body, &self.cfg.quality);
        // One lowercased copy serves the English list and the document language's list,
        // unless that language lowercases differently (Turkish).
        let lower = badwords::lowercase(body, "en");
        let mut badwords = self
            .lists
            .get("en")
            .map_or(0, |w| w.count_lowercased(&lower));
        if let Some(l) = lang.map(list_name).filter(|l| *l != "en") {
            if let Some(list) = self.lists.get(l) {
                badwords += if list.lowercases_like("en") {
                    list.count_lowercased(&lower)
                } else {
                    list.count(body)
                };
            }
        }
        let toxicity = self
            .classifier
            .covers(lang)
            .then(|| self.classifier.score(body) as f64);
        Annotation {
            redacted,
            lang,
            lang_score: detected.map_or(0.0, |l| l.confidence),
            quality,
            badwords: badwords as u32,
            toxicity,
            pii,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotator() -> Annotator {
        Annotator::new(
            AnnotatorConfig {
                quality: QualityParams::default(),
                pii: Some(PiiOptions::default()),
                lang_max_chars: 2000,
            },
            Arc::new(Classifier::shipped().unwrap()),
        )
    }

    #[test]
    fn annotates_language_pii_badwords_and_toxicity() {
        let a = annotator();
        let x = a.annotate("Write to jane.doe@example.com if the shipment is late. This is a plain business message about the delivery schedule.");
        assert_eq!(x.lang, Some("en"));
        assert!(x.lang_score > 0.5);
        assert_eq!(x.pii.emails, 1);
        assert!(x.redacted.as_deref().unwrap().contains("<EMAIL>"));
        assert_eq!(x.badwords, 0);
        assert!(x.toxicity.unwrap() < 0.5, "{:?}", x.toxicity);
        let t = a.annotate("Shut up you stupid fucking idiot, nobody wants your shit here.");
        assert!(t.badwords >= 2, "{}", t.badwords);
        assert!(t.toxicity.unwrap() > 0.5, "{:?}", t.toxicity);
        assert!(t.badword_frac() > 0.1);
    }

    #[test]
    fn turkish_text_uses_the_turkish_list_too() {
        let a = annotator();
        let x = a.annotate("Bu akşam arkadaşlarımızla birlikte sahilde yürüyüş yapmayı düşünüyoruz ama hava çok soğuk, siktir.");
        assert_eq!(x.lang, Some("tr"));
        assert!(x.badwords >= 1, "{x:?}");
        assert_eq!(x.toxicity, None, "the shipped model is for English only");
        assert_eq!(iso_639_1("tur"), "tr");
        assert_eq!(iso_639_1("xyz"), "xyz");
    }

    #[test]
    fn pathological_text_is_annotated_without_panicking() {
        let a = annotator();
        let long_word = "a".repeat(2_000_000);
        let emoji = "🙂".repeat(100_000);
        let lines = "- x\n".repeat(100_000);
        let digits = "1234567890 ".repeat(20_000);
        let cases: Vec<&str> = vec![
            "",
            " ",
            "\n\n\n",
            "@@@@ ... ### …",
            "İSTANBUL IĞDIR ıi",
            "مرحبا بالعالم שלום עולם",
            "x@y a@b.c 1.2.3.4.5 ::1 +",
            &long_word,
            &emoji,
            &lines,
            &digits,
        ];
        for t in cases {
            let x = a.annotate(t);
            assert!(x.lang_score >= 0.0 && x.lang_score <= 1.0);
            if let Some(tox) = x.toxicity {
                assert!((0.0..=1.0).contains(&tox));
            }
            assert!(x.badword_frac() >= 0.0);
        }
        let x = a.annotate(&long_word);
        assert!(x.quality.failed.contains(&"c4_long_word"));
        let x = a.annotate(&digits);
        assert_eq!(x.quality.words, 20_000);
        assert!(x.quality.failed.contains(&"gopher_alpha_words"));
    }
}
