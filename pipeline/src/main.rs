//! The `harman` binary: parses arguments and hands over to [`harman_pipeline::cli`].

/// mimalloc keeps freed batch buffers for reuse instead of returning them to the kernel and
/// faulting fresh pages in for the next batch (measured: BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    harman_pipeline::cli::main()
}
