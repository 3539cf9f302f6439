//! The gatekeeper binary: `gatekeeper` serves; `gatekeeper keygen --role R [--id ID]` prints a
//! new API key once, with the line to add to the keys file.

use gatekeeper::auth;
use gatekeeper::config::Config;
use gatekeeper::startup::Application;
use sqlgate::config::{ProcessEnv, EXIT_CONFIG};
use sqlgate::Role;

const USAGE: &str = "usage: gatekeeper [keygen --role read|write|admin [--id ID]]";

fn keygen(args: &[String]) -> i32 {
    let mut role = None;
    let mut id = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--role" => role = it.next().and_then(|r| Role::parse(r)),
            "--id" => id = it.next().cloned(),
            _ => {
                eprintln!("{USAGE}");
                return EXIT_CONFIG;
            }
        }
    }
    let Some(role) = role else {
        eprintln!("{USAGE}");
        return EXIT_CONFIG;
    };
    match auth::generate(role, id.as_deref()) {
        Ok(k) => {
            println!(
                "# API key ({} role); shown once, store it now:",
                role.as_str()
            );
            println!("{}", k.key);
            println!("# Line for the keys file (GATEKEEPER_KEYS_FILE):");
            println!("{}", k.line);
            0
        }
        Err(e) => {
            eprintln!("gatekeeper: {e}");
            EXIT_CONFIG
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("keygen") => std::process::exit(keygen(&args[1..])),
        Some(_) => {
            eprintln!("{USAGE}");
            std::process::exit(EXIT_CONFIG);
        }
        None => {}
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = match Config::from_env(&ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gatekeeper: configuration error: {e}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    let app = match Application::build(config) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gatekeeper: cannot start: {e}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    log::info!(
        "Gatekeeper listening port={} admin_port={}",
        app.port(),
        app.admin_port()
    );
    app.run_until_stopped().await?;
    Ok(())
}
