//! The `outcore` command: parse the arguments, run, map errors to exit codes.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::tune_malloc();
    let result = cli::run();
    while cli::exiting() {
        // SIGTERM or a second Ctrl-C: the signal thread removes the temporary
        // folders and exits with the signal's code; its removal may have made
        // `run` fail, and that error is not the story.
        std::thread::park();
    }
    match result {
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
