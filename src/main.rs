//! The `outcore` command: parse the arguments, run, map errors to exit codes.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let outcore::Error::Io { source, .. } = e.root() {
                // `outcore query ... | head` closes the pipe early: that is not a failure.
                if source.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            eprintln!("error: {e}");
            if matches!(e.root(), outcore::Error::Interrupted) {
                return ExitCode::from(130);
            }
            ExitCode::FAILURE
        }
    }
}
