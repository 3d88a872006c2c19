//! `lighthouse`: the command line for agents and operators.
//!
//! Thin by design: parse the arguments, call `lighthouse-client`, print the
//! result. Exit codes (docs/CLI.md): 0 success; 1 the bridge refused (its
//! problem on stderr), or `ops verify` found the chain broken; 2 bad usage or
//! input; 3 transport failure, an unreadable answer, or a write answered with a
//! 5xx (it may or may not have taken effect).

mod args;
mod input;
mod output;
mod run;

use std::process::ExitCode;

use clap::Parser;

use crate::args::Cli;
use crate::output::Out;
use crate::run::Failure;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with success; usage errors exit 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let json = cli.json;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let mut out = Out::new(json);
    match runtime.block_on(run::run(cli, &mut out)) {
        Ok(()) | Err(Failure::OutputClosed) => ExitCode::SUCCESS,
        Err(f) => {
            f.report(json);
            ExitCode::from(f.exit_code())
        }
    }
}
