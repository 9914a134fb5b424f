//! The GPT model's operations, one module per op: forward and backward on the CPU in Rust
//! ([`cpu`]), fp32, multi-threaded, the numerical reference every CUDA kernel (`kernels/*.cu`)
//! is tested against. Shapes follow llm.c: activations are row-major `[B, T, C]` (or
//! `[N, C]` with N = B·T), weights `[out, in]`.
//!
//! Every reduction across rows (weight and bias gradients) is summed in fixed blocks of
//! [`cpu::ROW_BLOCK`] rows, in block order, so results are bit-identical whatever the thread
//! count.

pub mod cpu;
pub mod cuda;
