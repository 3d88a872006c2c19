//! `cargo xtask <task>`: project automation in Rust instead of shell scripts.
//!
//! - `ci`: exactly what `.ci/run` does: fmt check, clippy with warnings denied,
//!   then the README's test command.

use std::process::{Command, ExitCode};

fn run(program: &str, args: &[&str]) -> bool {
    eprintln!("xtask: {program} {}", args.join(" "));
    match Command::new(program).args(args).status() {
        Ok(s) => s.success(),
        Err(e) => {
            eprintln!("xtask: cannot start {program}: {e}");
            false
        }
    }
}

fn ci() -> bool {
    run("bash", &[".ci/run"])
}

fn main() -> ExitCode {
    let task = std::env::args().nth(1).unwrap_or_default();
    let ok = match task.as_str() {
        "ci" => ci(),
        _ => {
            eprintln!("usage: cargo xtask ci");
            false
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
