//! The `caracal` binary: parse arguments, run the command, print one line on error.
//! The only place that uses `anyhow` to the end; everything else returns typed errors.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: caracal::cli::Cli = argh::from_env();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(caracal::cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
