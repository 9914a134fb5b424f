//! harman's pipeline: config parsing, the stage DAG, the executor that compiles each stage
//! into DataFusion plans and commits their Parquet outputs, object-store access, manifests,
//! and the command-line interface built on them.

pub mod cli;
pub mod config;
pub mod dag;
pub mod exec;
pub mod manifest;
pub mod progress;
pub mod store;
