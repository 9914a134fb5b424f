//! Document annotations for the filter stage. So far: `quality`, the Gopher quality and
//! repetition rules, the C4 document rules and FineWeb's additional rules, each computed as a
//! named flag with the published thresholds as defaults, and `pii`, redaction of e-mail
//! addresses, IP addresses and phone numbers.

pub mod pii;
pub mod quality;
