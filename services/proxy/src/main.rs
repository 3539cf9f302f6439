//! The proxy binary: logging, configuration, then the application until stopped.

use proxy::config::Config;
use proxy::startup::Application;
use sqlgate::config::{ProcessEnv, EXIT_CONFIG};

/// The driver keeps up to 128 spare packet buffers for reuse, each up to this size (its own
/// default is 4 MiB, so one burst of large rows could leave 512 MiB resident). Point selects
/// and ordinary rows fit in far less; a larger packet gets a fresh buffer, freed after use.
const DRIVER_BUFFER_CAP: &str = "65536";

fn main() -> anyhow::Result<()> {
    // Read once, when the driver's buffer pool is first used; set before any thread starts.
    if std::env::var_os("MYSQL_ASYNC_BUFFER_SIZE_CAP").is_none() {
        std::env::set_var("MYSQL_ASYNC_BUFFER_SIZE_CAP", DRIVER_BUFFER_CAP);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
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
