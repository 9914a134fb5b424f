//! Bytes to text: the charset comes from a byte-order mark, then the HTTP header, then a
//! `<meta charset>` / `http-equiv` declaration in the first bytes, then detection
//! (`chardetng`). Decoding never fails: invalid sequences become U+FFFD and are counted.

use encoding_rs::{Encoding, UTF_8};

/// Where the charset came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharsetSource {
    Bom,
    Http,
    Meta,
    Detected,
}

impl CharsetSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CharsetSource::Bom => "bom",
            CharsetSource::Http => "http",
            CharsetSource::Meta => "meta",
            CharsetSource::Detected => "detected",
        }
    }
}

#[derive(Debug)]
pub struct Decoded {
    pub text: String,
    pub encoding: &'static Encoding,
    pub source: CharsetSource,
    /// Replacement characters produced by invalid input.
    pub malformed: bool,
}

/// How far into the document a `<meta>` charset declaration is looked for.
const META_PRESCAN: usize = 4096;

/// The charset named by a `<meta charset=…>` or `<meta http-equiv=content-type
/// content="…; charset=…">` in the first bytes.
pub fn meta_charset(bytes: &[u8]) -> Option<&'static Encoding> {
    let head = &bytes[..bytes.len().min(META_PRESCAN)];
    let lower = head.to_ascii_lowercase();
    let mut pos = 0;
    while let Some(i) = memchr::memmem::find(&lower[pos..], b"<meta") {
        let start = pos + i;
        let end = memchr::memchr(b'>', &lower[start..]).map_or(lower.len(), |e| start + e);
        let tag = &lower[start..end];
        if let Some(c) = memchr::memmem::find(tag, b"charset") {
            let rest = &tag[c + 7..];
            let rest = rest
                .iter()
                .position(|&b| b != b' ' && b != b'=' && b != b'"' && b != b'\'')
                .map_or(&rest[rest.len()..], |k| &rest[k..]);
            let label_end = rest
                .iter()
                .position(|&b| matches!(b, b'"' | b'\'' | b';' | b' ' | b'/' | b'>'))
                .unwrap_or(rest.len());
            if let Some(enc) = Encoding::for_label(&rest[..label_end]) {
                // A page that declares UTF-16 in ASCII is not UTF-16 (HTML spec).
                if enc == encoding_rs::UTF_16LE || enc == encoding_rs::UTF_16BE {
                    return Some(UTF_8);
                }
                return Some(enc);
            }
        }
        pos = end.max(start + 5);
        if pos >= lower.len() {
            break;
        }
    }
    None
}

/// Decode a page. `http_charset` is the charset parameter of the HTTP Content-Type.
pub fn decode(bytes: &[u8], http_charset: Option<&str>) -> Decoded {
    if let Some((enc, bom_len)) = Encoding::for_bom(bytes) {
        let (text, malformed) = enc.decode_without_bom_handling(&bytes[bom_len..]);
        return Decoded {
            text: text.into_owned(),
            encoding: enc,
            source: CharsetSource::Bom,
            malformed,
        };
    }
    let declared = http_charset
        .and_then(|c| Encoding::for_label(c.trim().as_bytes()))
        .map(|e| (e, CharsetSource::Http))
        .or_else(|| meta_charset(bytes).map(|e| (e, CharsetSource::Meta)));
    let valid_utf8 = std::str::from_utf8(bytes).is_ok();
    let (encoding, source) = match declared {
        // A legacy single-byte declaration on bytes that are valid, non-ASCII UTF-8 is a
        // misconfigured server: the UTF-8 reading is the right one.
        Some((enc, _))
            if enc != UTF_8 && valid_utf8 && !bytes.is_ascii() && enc.is_single_byte() =>
        {
            (UTF_8, CharsetSource::Detected)
        }
        Some(found) => found,
        None if valid_utf8 => (UTF_8, CharsetSource::Detected),
        None => {
            let mut det = chardetng::EncodingDetector::new();
            det.feed(
                &bytes[..bytes.len().min(64 * 1024)],
                bytes.len() <= 64 * 1024,
            );
            (det.guess(None, true), CharsetSource::Detected)
        }
    };
    let (text, malformed) = encoding.decode_without_bom_handling(bytes);
    Decoded {
        text: text.into_owned(),
        encoding,
        source,
        malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bom_wins() {
        let mut b = vec![0xEF, 0xBB, 0xBF];
        b.extend_from_slice("<p>café</p>".as_bytes());
        let d = decode(&b, Some("iso-8859-1"));
        assert_eq!(d.source, CharsetSource::Bom);
        assert_eq!(d.text, "<p>café</p>");
    }

    #[test]
    fn http_header_then_meta() {
        let latin1 = b"<meta charset=\"windows-1252\"><p>caf\xe9 \x93quoted\x94</p>";
        let d = decode(latin1, None);
        assert_eq!(d.source, CharsetSource::Meta);
        assert!(d.text.contains("café “quoted”"), "{}", d.text);
        let d = decode(latin1, Some("ISO-8859-1"));
        assert_eq!(d.source, CharsetSource::Http);
        assert!(d.text.contains("café"));
    }

    #[test]
    fn http_equiv_declaration() {
        let b = b"<head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=koi8-r\"></head>\xf0\xd2\xc9\xd7\xc5\xd4";
        let d = decode(b, None);
        assert_eq!(d.encoding, encoding_rs::KOI8_R);
        assert!(d.text.ends_with("Привет"), "{}", d.text);
    }

    #[test]
    fn wrong_single_byte_label_on_utf8_bytes() {
        let d = decode("<p>naïve — ok</p>".as_bytes(), Some("iso-8859-1"));
        assert_eq!(d.encoding, UTF_8);
        assert_eq!(d.text, "<p>naïve — ok</p>");
    }

    #[test]
    fn undeclared_legacy_bytes_are_detected() {
        // Shift_JIS Japanese without any declaration.
        let (sjis, _, _) = encoding_rs::SHIFT_JIS
            .encode("<p>日本語のテキストです。これは文字コードの検出のテストです。</p>");
        let d = decode(&sjis, None);
        assert_eq!(d.source, CharsetSource::Detected);
        assert_eq!(d.encoding, encoding_rs::SHIFT_JIS);
        assert!(d.text.contains("日本語"));
    }

    #[test]
    fn invalid_bytes_never_panic() {
        let d = decode(b"<p>\xff\xfe\x00\x80 broken \xc3</p>", Some("utf-8"));
        assert!(d.malformed);
        assert!(d.text.contains("broken"));
    }
}
