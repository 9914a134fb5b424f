//! The GPT model harman trains: its configuration and parameter layout ([`model`]) and the
//! CPU backend that runs its forward and backward passes with the reference ops of
//! `harman-kernels` ([`cpu`]).

pub mod checkpoint;
pub mod cpu;
pub mod cuda;
pub mod data;
pub mod generate;
pub mod model;
pub mod rng;
pub mod schedule;
pub mod trainer;

pub use model::{GptConfig, ParamLayout, Params};
