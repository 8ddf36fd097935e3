//! The `caracal` binary: parse arguments, run the command, print one line on error.
//! The only place that uses `anyhow` to the end; everything else returns typed errors.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = match std::env::args_os()
        .map(|a| a.into_string())
        .collect::<Result<_, _>>()
    {
        Ok(args) => args,
        Err(arg) => {
            eprintln!("error: argument {arg:?} is not valid UTF-8");
            return ExitCode::FAILURE;
        }
    };
    let cli = match caracal::cli::parse(&args) {
        caracal::cli::Parsed::Run(cli) => *cli,
        caracal::cli::Parsed::Exit { text, code: 0 } => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        caracal::cli::Parsed::Exit { text, code } => {
            eprintln!("{text}");
            return ExitCode::from(code);
        }
    };
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
