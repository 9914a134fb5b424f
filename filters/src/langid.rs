//! Language identification per document with `whatlang` (trigram profiles, 69 languages, no
//! model files): an ISO 639-3 code (`eng`, `tur`, `cmn`…), the script, and a confidence in
//! [0, 1]. Only the first `max_chars` characters are looked at, which bounds the cost of long
//! documents without changing the answer for real text.

/// A detected language.
#[derive(Debug, Clone, PartialEq)]
pub struct Language {
    /// ISO 639-3 code, as `whatlang` names it.
    pub code: &'static str,
    pub script: String,
    pub confidence: f64,
    pub reliable: bool,
}

/// Detect the language of `text` from its first `max_chars` characters; None for text with
/// no letters.
pub fn detect(text: &str, max_chars: usize) -> Option<Language> {
    let end = text
        .char_indices()
        .nth(max_chars)
        .map_or(text.len(), |(i, _)| i);
    let info = whatlang::detect(&text[..end])?;
    Some(Language {
        code: info.lang().code(),
        script: info.script().name().to_string(),
        confidence: info.confidence(),
        reliable: info.is_reliable(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_common_languages() {
        let cases = [
            ("eng", "The quick brown fox jumps over the lazy dog while the farmer watches from the field."),
            ("tur", "Bu akşam arkadaşlarımızla birlikte sahilde yürüyüş yapmayı ve balık yemeyi düşünüyoruz."),
            ("deu", "Die Kinder spielen im Garten, während die Eltern in der Küche das Abendessen vorbereiten."),
            ("rus", "Вчера вечером мы долго гуляли по набережной и разговаривали о будущем нашего города."),
        ];
        for (code, text) in cases {
            let l = detect(text, 2000).unwrap();
            assert_eq!(l.code, code, "{text}");
            assert!(l.confidence > 0.0 && l.confidence <= 1.0, "{l:?}");
        }
        assert!(detect("1234 !!! ---", 2000).is_none());
    }
}
