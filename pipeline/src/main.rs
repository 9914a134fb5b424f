//! The `harman` binary: parses arguments and hands over to [`harman_pipeline::cli`].

fn main() -> std::process::ExitCode {
    harman_pipeline::cli::main()
}
