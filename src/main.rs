//! The `orchestration` binary: parse the command line and hand over to [`orchestration::cli`].

fn main() -> std::process::ExitCode {
    orchestration::cli::main()
}
