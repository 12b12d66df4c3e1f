//! The `mediagate` binary.
//!
//! Today it carries the certificate and trust admin commands (R-CERT-8); the gateway itself
//! (`mediagate run`) comes with the gateway issue. See `mediagate --help` and
//! the README's "Certificates" section.
//!
//! Exit codes (stable, for scripts):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | usage error (unknown command, bad or missing argument) |
//! | 2 | invalid input: a file that does not parse, a key that does not match, a certificate that is expired, not yet valid or has the wrong purpose, an invalid name |
//! | 3 | environment: a directory that is missing or unreadable, a file that already exists (nothing is overwritten), a write that failed |
//! | 4 | the certificate store holds no usable certificate |
//! | 5 | connectivity test failed: a `test-connectivity` step did not pass (the report says which and why) |

mod cli;
mod clock;
mod connectivity;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match cli::run(args, &clock::SystemClock) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mediagate: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
