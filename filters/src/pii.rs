//! PII redaction: e-mail addresses, IP addresses (v4 and v6) and phone numbers are replaced by
//! placeholders, and counted. Patterns favour precision: an IPv4 needs four octets in range,
//! a phone number 9 to 15 digits in a phone-like grouping, so dates, versions and prices
//! stay as they are.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

/// Placeholders written instead of what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PiiOptions {
    pub email: Option<String>,
    pub ip: Option<String>,
    pub phone: Option<String>,
}

impl Default for PiiOptions {
    fn default() -> Self {
        PiiOptions {
            email: Some("<EMAIL>".into()),
            ip: Some("<IP_ADDRESS>".into()),
            phone: Some("<PHONE_NUMBER>".into()),
        }
    }
}

/// What was replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PiiCounts {
    pub emails: u32,
    pub ips: u32,
    pub phones: u32,
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)[a-z0-9][a-z0-9._%+-]{0,63}@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}(?-u:\b)")
        .expect("valid e-mail pattern")
});

static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?-u:\b)(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?-u:\b)")
        .expect("valid IPv4 pattern")
});

static IPV6: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?-u:\b)(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}(?-u:\b)|(?-u:\b)(?:[0-9a-f]{1,4}:){1,6}:(?:[0-9a-f]{1,4}:){0,5}[0-9a-f]{1,4}(?-u:\b)")
        .expect("valid IPv6 pattern")
});

static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}(?-u:\b)|\+\d{9,15}(?-u:\b)",
    )
    .expect("valid phone pattern")
});

fn digits(s: &str) -> usize {
    s.bytes().filter(u8::is_ascii_digit).count()
}

/// Not a file name such as `logo@2x.png` (retina image names look like addresses).
fn email_like(hay: &str, start: usize, end: usize) -> bool {
    let tld = hay[start..end].rsplit('.').next().unwrap_or_default();
    ![
        "png", "jpg", "jpeg", "gif", "svg", "webp", "css", "js", "pdf",
    ]
    .iter()
    .any(|ext| tld.eq_ignore_ascii_case(ext))
}

/// A date at the start of a match: 2024-05-21, 2024.05.21, 21.05.2024, 21/05/2024.
static DATE_START: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4})(?:[^\d]|$)")
        .expect("valid date pattern")
});

/// Does the match `hay[start..end]` look like a phone number rather than a date, a time, a
/// DOI, a version or a quantity?
fn phone_like(hay: &str, start: usize, end: usize) -> bool {
    let s = &hay[start..end];
    let d = digits(s);
    if !(9..=15).contains(&d) {
        return false;
    }
    let before = hay[..start].chars().next_back();
    let after = hay[end..].chars().next();
    // Inside a longer token: a time (`… 10:30`), a DOI or version (`j.cub.2013.09.012`),
    // a path, a word glued to the number.
    if after == Some(':')
        || matches!(before, Some('.' | '/' | ':' | '-' | '_'))
        || before.is_some_and(char::is_alphanumeric)
    {
        return false;
    }
    // A date with a time or a number after it (`2024-05-21 10`, `12.03.2020 10`).
    if DATE_START.is_match(s) {
        return false;
    }
    // Decimal numbers and plain dates are not phones.
    let has_sep = s.contains([' ', '-', '.', '(']) || s.starts_with('+');
    let dotted_date = s.split(['.', '-', '/']).count() == 3 && d <= 8;
    has_sep && !dotted_date || s.starts_with('+')
}

/// Replace PII in `text`; None when nothing was found (the text is unchanged).
pub fn redact(text: &str, opts: &PiiOptions) -> (Option<String>, PiiCounts) {
    let mut counts = PiiCounts::default();
    let mut out: Option<String> = None;
    if let Some(ph) = &opts.email {
        if text.contains('@') {
            counts.emails = replace(&EMAIL, &mut out, text, ph, email_like);
        }
    }
    if let Some(ph) = &opts.ip {
        if text.contains('.') {
            counts.ips += replace(&IPV4, &mut out, text, ph, |_, _, _| true);
        }
        if text.contains(':') {
            counts.ips += replace(&IPV6, &mut out, text, ph, |_, _, _| true);
        }
    }
    if let Some(ph) = &opts.phone {
        counts.phones = replace(&PHONE, &mut out, text, ph, phone_like);
    }
    (out, counts)
}

/// Replace the matches of `re` that `accept` in the current text (`out`, else `text`) by
/// `placeholder`; returns how many. The lazy DFA of `find_iter` does the scanning: the
/// patterns use ASCII word boundaries so it never falls back to the slow engine on
/// non-ASCII text.
fn replace(
    re: &Regex,
    out: &mut Option<String>,
    text: &str,
    placeholder: &str,
    accept: impl Fn(&str, usize, usize) -> bool,
) -> u32 {
    let current = out.as_deref().unwrap_or(text);
    let mut result = String::new();
    let mut last = 0;
    let mut n = 0;
    for m in re.find_iter(current) {
        if !accept(current, m.start(), m.end()) {
            continue;
        }
        if n == 0 {
            result.reserve(current.len());
        }
        result.push_str(&current[last..m.start()]);
        result.push_str(placeholder);
        last = m.end();
        n += 1;
    }
    if n > 0 {
        result.push_str(&current[last..]);
        *out = Some(result);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_counts() {
        let text = "Write to jane.doe+news@example.co.uk or call +1 (415) 555-0132, \
                    server 192.168.10.254 and 2001:db8:85a3::8a2e:370:7334.";
        let (out, c) = redact(text, &PiiOptions::default());
        let out = out.unwrap();
        assert_eq!(
            c,
            PiiCounts {
                emails: 1,
                ips: 2,
                phones: 1
            },
            "{out}"
        );
        assert!(
            out.contains("Write to <EMAIL> or call <PHONE_NUMBER>"),
            "{out}"
        );
        assert!(
            out.contains("server <IP_ADDRESS> and <IP_ADDRESS>."),
            "{out}"
        );
    }

    #[test]
    fn leaves_numbers_that_are_not_pii() {
        let text = "Version 1.2.3.4567 costs 12.50 on 2021-03-04 at 10:30; 300.1.1.1 is not an address; the year 1999; logo@2x.png.";
        let (out, c) = redact(text, &PiiOptions::default());
        assert_eq!(c, PiiCounts::default(), "{out:?}");
        assert!(out.is_none());
    }

    #[test]
    fn dates_times_and_dois_are_not_phones() {
        // Seen on real pages: timestamps, dates with hours, DOIs, numbers glued to words.
        for text in [
            "Wydrukowano: 2024-05-21 10:22:17.242000+02:00",
            "Nachtrag 12.03.2020 10:30 Uhr: Der Gesundheitsminister",
            "doi:10.1016/j.vaccine.2013.09.012 Crossref",
            "Current Biology doi:10.1016/j.cub.2013.05.045",
            "Geschrieben von Cooper am 21.05.2019 18:30 (1599 x gelesen)",
        ] {
            let (out, c) = redact(text, &PiiOptions::default());
            assert_eq!(c.phones, 0, "{text} → {out:?}");
        }
        for (text, phones) in [
            ("Tel.: 0471 924 19 0 * info@example.de", 1),
            ("Fone: (11) 3456-7890", 1),
            ("Signal: +1 415 555 0132.", 1),
        ] {
            let (out, c) = redact(text, &PiiOptions::default());
            assert_eq!(c.phones, phones, "{text} → {out:?}");
        }
    }

    #[test]
    fn placeholders_are_options() {
        let opts = PiiOptions {
            email: Some("[email]".into()),
            ip: None,
            phone: None,
        };
        let (out, c) = redact("a@b.org from 10.0.0.1", &opts);
        assert_eq!(out.as_deref(), Some("[email] from 10.0.0.1"));
        assert_eq!(c.ips, 0);
    }
}
