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
    Regex::new(r"(?i)\b[a-z0-9][a-z0-9._%+-]{0,63}@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}\b")
        .expect("valid e-mail pattern")
});

static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\b")
        .expect("valid IPv4 pattern")
});

static IPV6: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}\b|\b(?:[0-9a-f]{1,4}:){1,6}:(?:[0-9a-f]{1,4}:){0,5}[0-9a-f]{1,4}\b")
        .expect("valid IPv6 pattern")
});

static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}\b|\+\d{9,15}\b",
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
    let mut out = std::borrow::Cow::Borrowed(text);
    if let Some(ph) = &opts.email {
        if out.contains('@') {
            let replaced = EMAIL.replace_all(&out, |_: &regex::Captures| {
                counts.emails += 1;
                ph.clone()
            });
            if let std::borrow::Cow::Owned(s) = replaced {
                out = std::borrow::Cow::Owned(s);
            }
        }
    }
    if let Some(ph) = &opts.ip {
        for re in [&*IPV4, &*IPV6] {
            let replaced = re.replace_all(&out, |_: &regex::Captures| {
                counts.ips += 1;
                ph.clone()
            });
            if let std::borrow::Cow::Owned(s) = replaced {
                out = std::borrow::Cow::Owned(s);
            }
        }
    }
    if let Some(ph) = &opts.phone {
        let mut n = 0;
        let replaced = PHONE.replace_all(&out, |c: &regex::Captures| {
            let m = c.get(0).map_or("", |m| m.as_str());
            if phone_like(m) {
                n += 1;
                ph.clone()
            } else {
                m.to_string()
            }
        });
        if n > 0 {
            counts.phones += n;
            out = std::borrow::Cow::Owned(replaced.into_owned());
        }
    }
    match out {
        std::borrow::Cow::Borrowed(_) => (None, counts),
        std::borrow::Cow::Owned(s) => (Some(s), counts),
    }
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
