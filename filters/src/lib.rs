//! Document annotations for the filter stage. So far: `quality`, the Gopher quality and
//! repetition rules, the C4 document rules and FineWeb's additional rules, each computed as a
//! named flag with the published thresholds as defaults.

pub mod quality;
