//! The `loadtest` binary: parses the command line, runs it, and turns a failure into one line
//! and its exit code. See `loadtest --help`.
#![forbid(unsafe_code)]

use clap::error::ErrorKind;
use clap::Parser;
use loadtest::cli::Cli;
use loadtest::error::exit;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprintln!("loadtest: a command is needed: seed, select, sysbench, sysbench-report, bench or bench-doc (see loadtest --help)");
            std::process::exit(exit::USAGE);
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!(
                "loadtest: {} (see loadtest --help)",
                first.trim_start_matches("error: ")
            );
            std::process::exit(exit::USAGE);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads as usize)
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadtest: cannot start the runtime: {e}");
            std::process::exit(exit::SOFTWARE);
        }
    };
    if let Err(e) = runtime.block_on(loadtest::commands::run(cli.command)) {
        eprintln!("loadtest: {e}");
        std::process::exit(e.exit_code());
    }
}
