//! The proxy binary: logging, configuration, then the application until stopped.

use proxy::config::Config;
use proxy::Application;
use sqlgate::config::{ProcessEnv, EXIT_CONFIG};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = match Config::from_env(&ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("proxy: configuration error: {e}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    let app = Application::build(config)?;
    log::info!("Proxy listening port={}", app.port());
    app.run_until_stopped().await?;
    Ok(())
}
