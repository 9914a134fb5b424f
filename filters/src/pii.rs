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

/// Does this match look like a phone number rather than a date, a time or a quantity?
fn phone_like(s: &str) -> bool {
    let d = digits(s);
    if !(9..=15).contains(&d) {
        return false;
    }
    // Dates like 2021-03-04 or 04.03.2021 and decimal numbers are not phones.
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
            counts.emails = replace(&EMAIL, &mut out, text, ph, |_| true);
        }
    }
    if let Some(ph) = &opts.ip {
        if text.contains('.') {
            counts.ips += replace(&IPV4, &mut out, text, ph, |_| true);
        }
        if text.contains(':') {
            counts.ips += replace(&IPV6, &mut out, text, ph, |_| true);
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
    accept: impl Fn(&str) -> bool,
) -> u32 {
    let current = out.as_deref().unwrap_or(text);
    let mut result = String::new();
    let mut last = 0;
    let mut n = 0;
    for m in re.find_iter(current) {
        if !accept(m.as_str()) {
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
        let text = "Version 1.2.3.4567 costs 12.50 on 2021-03-04 at 10:30; 300.1.1.1 is not an address; the year 1999.";
        let (out, c) = redact(text, &PiiOptions::default());
        assert_eq!(c, PiiCounts::default(), "{out:?}");
        assert!(out.is_none());
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
