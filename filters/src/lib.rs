//! Document annotations for the filter stage: `annotate`, all of them for one document; `quality`, the Gopher
//! quality and repetition rules, the C4 document rules and FineWeb's additional rules, each a
//! named flag with the published thresholds as defaults; `pii`, redaction of e-mail
//! addresses, IP addresses and phone numbers with counts; `badwords`, the LDNOOBW lists of
//! every language (the C4-style toxicity signal); `langid`, language identification; `toxicity`, the trainable toxicity classifier.

pub mod annotate;
pub mod badwords;
pub mod langid;
pub mod pii;
pub mod quality;
pub mod toxicity;
