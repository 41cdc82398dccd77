//! `corral`: the engine as a process manager for any server program that can take an inherited
//! listening socket (systemd's `LISTEN_FDS` protocol: uvicorn `--fd 3`, gunicorn (no `--bind`),
//! Node's `listen({ fd: 3 })`, Go's and Rust's activation libraries).
//!
//! - `args`: the command line (clap) and `--config corral.toml` (serde + toml), merged into one
//!   [`args::RunConfig`] whose errors name the flag or key.
//! - `run`: `corral run`: binds the listeners, runs the engine's primary and supervisor over
//!   workers started without a channel, readiness by `NOTIFY_SOCKET` or a delay.
//! - `notify`: the per-worker `NOTIFY_SOCKET`s (sd_notify from the workers).
//! - `connections`: open connections per worker for `corral status`, counted from `/proc`.
//! - `probe`: `--ready-cmd`, readiness by a probe command for programs without sd_notify.
//! - `control`: the control socket (`corral status|reload|scale|stop`).
//! - `systemd`: corral itself under systemd (socket activation in, sd_notify out).

/// `eprintln!` as one `write(2)`: stderr is unbuffered, and `eprintln!` writes each piece of
/// its format as it comes. corral's stderr is usually the workers' too (one pipe to a log
/// collector), so a line written in pieces comes out with a worker's line inside it. Formatted
/// first, a line under `PIPE_BUF` (4 KiB) reaches a pipe whole.
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut line = format!($($arg)*);
        line.push('\n');
        // Nowhere to report a failing stderr.
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    }};
}

mod args;
mod connections;
mod control;
mod notify;
mod probe;
mod run;
mod systemd;

use clap::Parser;

fn main() {
    let cli = args::Cli::parse();
    let code = match cli.command {
        args::Command::Run(run) => match args::RunConfig::resolve(*run) {
            Ok(cfg) => run::run(cfg),
            Err(e) => {
                say!("corral: {e}");
                2
            }
        },
        args::Command::Status { target, json } => control::client_status(&target, json),
        args::Command::Reload { target } => control::client_simple(&target, "reload", None),
        args::Command::Scale { target, workers } => {
            control::client_simple(&target, "scale", Some(workers))
        }
        args::Command::Stop { target } => control::client_simple(&target, "stop", None),
    };
    std::process::exit(code);
}
