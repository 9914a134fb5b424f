//! HTML to main text, the code behind the `extract` stage and `harman extract`: charset
//! decoding (`decode`), a bounded document tree on the html5gum tokenizer (`dom`),
//! boilerplate removal and main-content selection (`content`), and text fixes (`fixes`).
//! Every input gets an answer: text plus a status saying what happened, never a panic.

pub mod content;
pub mod decode;
pub mod dom;
pub mod eval;
pub mod fixes;

pub use fixes::TextFixes;

use dom::{Dom, DomLimits, Tag};
use serde::{Deserialize, Serialize};

/// Boilerplate removal, or every visible text of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Main content only (navigation, footers, comments, ads… removed).
    #[default]
    Main,
    /// All visible text (scripts, styles and hidden elements removed, nothing else).
    Plain,
}

/// Trade-off of main-content selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Favor {
    Precision,
    #[default]
    Balanced,
    Recall,
}

/// Extraction options (the `extract` stage's table in the config).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtractOptions {
    pub mode: Mode,
    pub favor: Favor,
    /// Keep table text (cells separated by ` | `).
    pub tables: bool,
    /// Append link targets after link text, as ` (URL)`.
    pub links: bool,
    /// Keep image alt text.
    pub images: bool,
    /// Texts shorter than this many characters get status `too_short` (and no text).
    pub min_text_chars: usize,
    /// Pages larger than this are cut here before parsing (status `truncated`).
    pub max_html_bytes: usize,
    /// Tree limits: deeper elements are flattened, further elements dropped.
    pub max_depth: usize,
    pub max_nodes: usize,
    pub fixes: TextFixes,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            mode: Mode::Main,
            favor: Favor::Balanced,
            tables: true,
            links: false,
            images: false,
            min_text_chars: 0,
            max_html_bytes: 8 << 20,
            max_depth: 512,
            max_nodes: 1 << 20,
            fixes: TextFixes::default(),
        }
    }
}

/// What happened to one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Text extracted from HTML.
    Ok,
    /// Text extracted from the first `max_html_bytes` of an oversized page, or from a tree
    /// cut at the depth/node limits.
    Truncated,
    /// Already text (WET conversion, JSONL): only the text fixes were applied.
    Passthrough,
    /// The page has no main text.
    Empty,
    /// Less text than `min_text_chars`.
    TooShort,
    /// The payload is binary data, not markup.
    Binary,
    /// A content type that is not HTML/XHTML/text (images, PDF, …).
    Unsupported,
    /// Neither payload nor text.
    NoContent,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Truncated => "truncated",
            Status::Passthrough => "passthrough",
            Status::Empty => "empty",
            Status::TooShort => "too_short",
            Status::Binary => "binary",
            Status::Unsupported => "unsupported",
            Status::NoContent => "no_content",
        }
    }

    /// Statuses that carry text.
    pub fn has_text(self) -> bool {
        matches!(self, Status::Ok | Status::Truncated | Status::Passthrough)
    }
}

/// The result for one document.
#[derive(Debug, Clone)]
pub struct Extraction {
    pub status: Status,
    /// Why, for statuses other than ok/passthrough (and how a truncated page was cut).
    pub reason: Option<String>,
    pub text: Option<String>,
    pub title: Option<String>,
    /// `<html lang>`, as written (a hint from the page, not a detection).
    pub lang: Option<String>,
    /// Charset used and where it came from.
    pub charset: Option<String>,
    pub bytes_in: u64,
}

impl Extraction {
    fn without_text(status: Status, reason: String, bytes_in: u64) -> Self {
        Extraction {
            status,
            reason: Some(reason),
            text: None,
            title: None,
            lang: None,
            charset: None,
            bytes_in,
        }
    }
}

/// Binary data mislabelled as HTML: NUL bytes or many control bytes at the start.
pub fn looks_binary(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(2048)];
    if head.is_empty() {
        return false;
    }
    // UTF-16 with a BOM is text.
    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        return false;
    }
    let controls = head
        .iter()
        .filter(|&&b| b < 0x09 || (0x0E..0x20).contains(&b) && b != 0x1B)
        .count();
    memchr::memchr(0, head).is_some() || controls * 20 > head.len()
}

/// Content types that are worth parsing as markup (None: unknown, try).
pub fn is_markup_type(content_type: Option<&str>) -> bool {
    match content_type {
        None => true,
        Some(ct) => {
            let ct = ct.trim().to_ascii_lowercase();
            ct.is_empty()
                || ct.starts_with("text/")
                || ct.contains("html")
                || ct.contains("xml")
                || ct == "application/octet-stream"
                || ct == "unk"
        }
    }
}

/// Extract the main text of an HTML page.
pub fn extract_html(
    bytes: &[u8],
    content_type: Option<&str>,
    http_charset: Option<&str>,
    opts: &ExtractOptions,
) -> Extraction {
    let bytes_in = bytes.len() as u64;
    if !is_markup_type(content_type) {
        return Extraction::without_text(
            Status::Unsupported,
            format!("content type {} is not HTML", content_type.unwrap_or("")),
            bytes_in,
        );
    }
    if looks_binary(bytes) {
        return Extraction::without_text(
            Status::Binary,
            "payload starts with binary bytes (NUL or control characters)".into(),
            bytes_in,
        );
    }
    let mut truncated = None;
    // The tree indexes its text with u32: never parse more than 1 GiB, whatever the options.
    let max_html_bytes = opts.max_html_bytes.min(1 << 30);
    let max_nodes = opts.max_nodes.min(1 << 28);
    let bytes = if bytes.len() > max_html_bytes {
        truncated = Some(format!(
            "page of {} bytes cut to max_html_bytes = {}",
            bytes.len(),
            max_html_bytes
        ));
        &bytes[..max_html_bytes]
    } else {
        bytes
    };
    let decoded = decode::decode(bytes, http_charset);
    let dom = dom::parse(
        &decoded.text,
        DomLimits {
            max_depth: opts.max_depth,
            max_nodes,
        },
    );
    if dom.limited && truncated.is_none() {
        truncated = Some(format!(
            "document tree cut at max_depth = {} / max_nodes = {}",
            opts.max_depth, opts.max_nodes
        ));
    }
    let page = content::Page::new(&dom, opts);
    let mut text = match opts.mode {
        Mode::Plain => page.render(&page.plain_blocks()),
        Mode::Main => {
            let main = page.render(&page.main_blocks());
            let enough = match opts.favor {
                Favor::Recall => 500,
                _ => 150,
            };
            if main.chars().count() < enough {
                let all = page.render(&page.all_paragraph_blocks());
                if all.chars().count() > main.chars().count() * 2 {
                    all
                } else {
                    main
                }
            } else {
                main
            }
        }
    };
    if opts.mode == Mode::Main && opts.favor != Favor::Recall {
        text = trim_edges(&text);
    }
    text = fixes::apply(&text, &opts.fixes);
    let (title, lang) = head_info(&dom);
    let charset = Some(format!(
        "{} ({})",
        decoded.encoding.name().to_ascii_lowercase(),
        decoded.source.as_str()
    ));
    let (status, reason) = match truncated {
        Some(why) => (Status::Truncated, Some(why)),
        None => (Status::Ok, None),
    };
    let (status, reason, text) = judge_text(text, status, reason, "no main text found", opts);
    Extraction {
        status,
        reason,
        text,
        title: title.map(|t| fixes::apply(&t, &opts.fixes)),
        lang,
        charset,
        bytes_in,
    }
}

/// Short lines that are not sentences at the very start or end of the main text are almost
/// always leftovers of the page around it (bylines, dates, "Share", "Related", ad labels).
fn trim_edges(text: &str) -> String {
    /// Calls to action that end (or open) an article on many sites.
    const PROMPTS: &[&str] = &[
        "share this",
        "teilen",
        "subscribe",
        "abonnieren",
        "newsletter",
        "follow us",
        "folgen sie uns",
        "suscríbete",
        "compartir",
        "partager",
    ];
    let lines: Vec<&str> = text.lines().collect();
    let stray = |l: &&&str| {
        let t = l.trim();
        let n = t.chars().count();
        (n < 40
            && !t.ends_with([
                '.', '!', '?', '"', '”', '“', '»', '«', '。', '！', '？', ')',
            ]))
            || (n < 100 && {
                let lower = t.to_lowercase();
                PROMPTS.iter().any(|p| lower.contains(p))
            })
    };
    let start = lines.iter().take_while(stray).count();
    let end = lines.len() - lines[start..].iter().rev().take_while(stray).count();
    if start >= end {
        return text.to_string();
    }
    lines[start..end].join("\n")
}

/// The final status of a text: `Empty` (with `empty_reason`) when it has no visible
/// character, `TooShort` below `min_text_chars` (both without text), else `status` and
/// `reason` as given, with the text.
fn judge_text(
    text: String,
    status: Status,
    reason: Option<String>,
    empty_reason: &str,
    opts: &ExtractOptions,
) -> (Status, Option<String>, Option<String>) {
    let chars = text.chars().filter(|c| !c.is_whitespace()).count();
    if chars == 0 {
        (Status::Empty, Some(empty_reason.to_string()), None)
    } else if chars < opts.min_text_chars {
        (
            Status::TooShort,
            Some(format!(
                "{chars} characters of text, below min_text_chars = {}",
                opts.min_text_chars
            )),
            None,
        )
    } else {
        (status, reason, Some(text))
    }
}

/// Text that needs no extraction (WET conversions, JSONL): fixes only.
pub fn pass_through(text: &str, opts: &ExtractOptions) -> Extraction {
    let bytes_in = text.len() as u64;
    let fixed = fixes::apply(text, &opts.fixes);
    let (status, reason, text) =
        judge_text(fixed, Status::Passthrough, None, "the text is empty", opts);
    Extraction {
        status,
        reason,
        text,
        title: None,
        lang: None,
        charset: None,
        bytes_in,
    }
}

/// `<title>` (else `og:title`, else the first `<h1>`) and `<html lang>`.
fn head_info(dom: &Dom) -> (Option<String>, Option<String>) {
    let mut title = None;
    let mut og_title = None;
    let mut h1 = None;
    let mut lang = None;
    for (i, node) in dom.nodes.iter().enumerate() {
        match node.tag {
            Tag::Html if lang.is_none() => lang = node.attrs.lang.as_deref().map(str::to_string),
            Tag::Title if title.is_none() => {
                let t = dom.collect_text(i as u32, |_| false);
                if !t.is_empty() {
                    title = Some(t);
                }
            }
            Tag::Meta => {
                let name = node.attrs.meta_name.as_deref().unwrap_or("");
                if og_title.is_none() && name.eq_ignore_ascii_case("og:title") {
                    og_title = node.attrs.meta_content.as_deref().map(str::to_string);
                }
            }
            Tag::H(1) if h1.is_none() => {
                let t = dom.collect_text(i as u32, |_| false);
                if !t.is_empty() {
                    h1 = Some(t);
                }
            }
            _ => {}
        }
    }
    let title = title
        .or(og_title)
        .or(h1)
        .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "));
    (title, lang.filter(|l| !l.trim().is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> ExtractOptions {
        ExtractOptions::default()
    }

    const ARTICLE: &str = "<html lang=\"en\"><head><title>A title</title></head><body>\
        <nav><a href=/>Home</a> <a href=/news>News</a></nav>\
        <article><h1>A title</h1><p>The first paragraph of the article, long enough to be \
        content, with commas, clauses, and a full stop.</p><p>A second paragraph &amp; an \
        entity: caf&eacute; &mdash; done.</p></article>\
        <div class=\"comments\"><p>A reader's comment that is not part of the article.</p></div>\
        <footer>Copyright footer text</footer></body></html>";

    #[test]
    fn main_text_without_boilerplate() {
        let e = extract_html(ARTICLE.as_bytes(), Some("text/html"), None, &opts());
        assert_eq!(e.status, Status::Ok);
        let text = e.text.unwrap();
        assert!(text.starts_with("The first paragraph"), "{text}");
        assert!(
            text.contains("A second paragraph & an entity: café — done."),
            "{text}"
        );
        assert!(!text.contains("Home"), "{text}");
        assert!(!text.contains("comment"), "{text}");
        assert!(!text.contains("Copyright"), "{text}");
        assert_eq!(e.title.as_deref(), Some("A title"));
        assert_eq!(e.lang.as_deref(), Some("en"));
        assert_eq!(e.charset.as_deref(), Some("utf-8 (detected)"));
    }

    #[test]
    fn plain_mode_keeps_everything_visible() {
        let o = ExtractOptions {
            mode: Mode::Plain,
            ..opts()
        };
        let text = extract_html(ARTICLE.as_bytes(), None, None, &o)
            .text
            .unwrap();
        for s in ["Home", "comment", "Copyright", "first paragraph"] {
            assert!(text.contains(s), "{s}: {text}");
        }
    }

    #[test]
    fn lists_tables_and_breaks_keep_their_lines() {
        let html =
            "<body><article><p>Intro paragraph that is long enough to be kept as content here.</p>\
            <ul><li>first item</li><li>second item</li></ul>\
            <table><tr><th>Name</th><th>Value</th></tr><tr><td>a</td><td>1</td></tr></table>\
            <p>line one<br>line two</p>\
            <p>A closing paragraph, so that the lists above are not the last lines of the text.</p></article></body>";
        let text = extract_html(html.as_bytes(), None, None, &opts())
            .text
            .unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.contains(&"first item") && lines.contains(&"second item"),
            "{text}"
        );
        assert!(
            lines.contains(&"Name | Value") && lines.contains(&"a | 1"),
            "{text}"
        );
        assert!(
            lines.contains(&"line one") && lines.contains(&"line two"),
            "{text}"
        );
        let no_tables = ExtractOptions {
            tables: false,
            ..opts()
        };
        let text = extract_html(html.as_bytes(), None, None, &no_tables)
            .text
            .unwrap();
        assert!(!text.contains("Value"), "{text}");
    }

    #[test]
    fn links_and_images_on_request() {
        let html = "<article><p>Read the <a href=\"https://example.org/doc\">documentation page</a> \
            for details, it explains everything that matters.</p>\
            <p><img src=x.png alt=\"A diagram of the system\"> Below the diagram comes more text.</p></article>";
        let o = ExtractOptions {
            links: true,
            images: true,
            ..opts()
        };
        let text = extract_html(html.as_bytes(), None, None, &o).text.unwrap();
        assert!(
            text.contains("documentation page (https://example.org/doc)"),
            "{text}"
        );
        assert!(text.contains("A diagram of the system"), "{text}");
        let text = extract_html(html.as_bytes(), None, None, &opts())
            .text
            .unwrap();
        assert!(
            !text.contains("https://") && !text.contains("diagram of"),
            "{text}"
        );
    }

    #[test]
    fn every_status() {
        // binary mislabelled as HTML
        let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR".to_vec();
        png.extend_from_slice(&[0u8; 64]);
        assert_eq!(
            extract_html(&png, Some("text/html"), None, &opts()).status,
            Status::Binary
        );
        // not markup
        let e = extract_html(b"%PDF-1.4", Some("application/pdf"), None, &opts());
        assert_eq!(e.status, Status::Unsupported);
        assert!(e.reason.unwrap().contains("application/pdf"));
        // nothing to extract
        let e = extract_html(
            b"<html><body><script>var a;</script></body></html>",
            None,
            None,
            &opts(),
        );
        assert_eq!(e.status, Status::Empty);
        assert!(e.text.is_none());
        // below the minimum
        let short = ExtractOptions {
            min_text_chars: 10_000,
            ..opts()
        };
        let e = extract_html(ARTICLE.as_bytes(), None, None, &short);
        assert_eq!(e.status, Status::TooShort);
        assert!(e.reason.unwrap().contains("min_text_chars"));
        // oversized page: cut, still extracted
        let mut big = String::from("<html><body><article>");
        while big.len() < 3 << 20 {
            big.push_str("<p>Another paragraph of the very long page, with words, commas, and more words.</p>");
        }
        let small = ExtractOptions {
            max_html_bytes: 1 << 20,
            ..opts()
        };
        let e = extract_html(big.as_bytes(), None, None, &small);
        assert_eq!(e.status, Status::Truncated);
        assert!(e.text.unwrap().len() < 1 << 20);
        // pathological nesting: bounded, reported
        let deep = "<div>".repeat(200_000)
            + "<p>deep text that is long enough to count as a paragraph here</p>";
        let e = extract_html(deep.as_bytes(), None, None, &opts());
        assert_eq!(e.status, Status::Truncated, "{:?}", e.reason);
        assert!(e.reason.unwrap().contains("max_depth"));
        // text records
        assert_eq!(
            pass_through("already text", &opts()).status,
            Status::Passthrough
        );
        assert_eq!(pass_through("  \n ", &opts()).status, Status::Empty);
    }

    #[test]
    fn invalid_bytes_and_legacy_charsets() {
        let html = b"<html><head><meta charset=windows-1252></head><body><article><p>Caf\xe9 cr\xe8me \x93quoted\x94, a paragraph long enough to be the content of the page.</p></article></body></html>";
        let e = extract_html(html, None, None, &opts());
        assert!(e.text.unwrap().contains("Café crème “quoted”"));
        assert_eq!(e.charset.as_deref(), Some("windows-1252 (meta)"));
        let broken = b"<article><p>Valid start \xff\xfe\xc3 then more text, enough of it to be a paragraph of content.</p></article>";
        let e = extract_html(broken, None, Some("utf-8"), &opts());
        assert_eq!(e.status, Status::Ok);
        assert!(e.text.unwrap().contains("then more text"));
    }

    #[test]
    fn text_fixes_are_switches() {
        let text = "CafÃ©\u{0007} e\u{301} ❤️";
        let all = ExtractOptions {
            fixes: TextFixes {
                emoji_to_text: true,
                ..TextFixes::default()
            },
            ..opts()
        };
        assert_eq!(pass_through(text, &all).text.unwrap(), "Café é :red_heart:");
        let none = ExtractOptions {
            fixes: TextFixes {
                mojibake: false,
                nfc: false,
                emoji_to_text: false,
                control_chars: false,
            },
            ..opts()
        };
        assert_eq!(pass_through(text, &none).text.unwrap(), text);
    }
}
