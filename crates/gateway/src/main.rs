//! The `mediagate` binary.
//!
//! `mediagate run` (or no command at all) runs the gateway ([`app`]); the other commands
//! administer it: `cert` and `trust` (R-CERT-8), `config`, `dialplan` and `peer` (R-OPS-1,
//! R-OPS-4), `test-connectivity` (R-OPS-3). See `mediagate --help` and the README.
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

mod app;
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
    // The gateway logs its event codes at INFO; admin commands only warnings.
    let running = matches!(args.command, None | Some(cli::Command::Run(_)));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if running { "info" } else { "warn" })
    });
    let json = matches!(&args.command, Some(cli::Command::Run(r)) if r.log_json);
    let fmt = tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if json {
        fmt.json().init();
    } else {
        fmt.init();
    }
    match cli::run(args, &clock::SystemClock) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mediagate: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
