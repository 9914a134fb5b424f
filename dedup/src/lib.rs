//! Deduplication algorithms, free of any engine: the word tokens and shingles documents are
//! compared by ([`shingle`]), MinHash signatures and their LSH band keys ([`minhash`]), the
//! S-curve of a banding and the check that it suits a Jaccard threshold ([`lsh`]), exact
//! Jaccard of two shingle sets, and a union-find reference for connected components
//! ([`components`]), and ExactSubstr removal of repeated spans with a suffix array
//! ([`substring`]). The `dedup` stage runs these inside DataFusion plans.

pub mod components;
pub mod lsh;
pub mod minhash;
pub mod shingle;
pub mod substring;

pub use lsh::{check_banding, s_curve, Banding, BandingError};
pub use minhash::{MinHasher, Signature};
pub use shingle::{jaccard, Shingler};
