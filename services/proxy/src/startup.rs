//! Builds the proxy: state shared by every handler, the HTTP server, the background tasks.

use crate::{config, metrics, monitor, node, probe, routes};
use actix_web::{dev::Server, web, App, HttpServer};
use config::Config;
use node::Cluster;
use std::net::TcpListener;
use std::sync::Arc;

/// Shared by every request handler.
pub struct State {
    pub config: Config,
    pub cluster: Arc<Cluster>,
    pub metrics: Arc<metrics::Metrics>,
    pub classifier: sqlgate::Classifier,
}

/// A built proxy: its listener is bound and its monitors run; `run_until_stopped` serves.
pub struct Application {
    port: u16,
    server: Server,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Application {
    /// Binds `config.listen` and starts the monitors (needs a tokio runtime).
    pub fn build(config: Config) -> anyhow::Result<Application> {
        let listener = TcpListener::bind(config.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        Self::with_listener(config, listener)
    }

    /// Like `build`, on a listener the caller bound (tests bind port 0).
    pub fn with_listener(config: Config, listener: TcpListener) -> anyhow::Result<Application> {
        let port = listener.local_addr()?.port();
        let metrics = Arc::new(metrics::Metrics::default());
        let cluster = Arc::new(Cluster::new(&config, &metrics));
        let mut tasks = monitor::spawn(&cluster, &config);
        tasks.extend(probe::spawn(
            &cluster,
            config.ping_interval,
            config.rtt_probe,
        ));
        let workers = config.http_workers;
        let tls = config.tls.clone();
        let state = web::Data::new(State {
            classifier: sqlgate::Classifier::new(config.limits.max_sql_bytes, 1024),
            config,
            cluster,
            metrics,
        });
        let observed = state.metrics.clone();
        let log = sqlgate::request_log::RequestLog::new()
            .quiet("/health")
            .quiet("/ready")
            .quiet("/metrics")
            .observe(move |done| observed.observe(done));
        let server = HttpServer::new(move || {
            App::new()
                .wrap(log.clone())
                .app_data(state.clone())
                .configure(routes::configure)
        })
        .workers(workers)
        // A client that closes its side has gone away: its request is cancelled (and a
        // statement it was running is killed, `pool::Lease`), not run to the end for nobody.
        .h1_allow_half_closed(false);
        let server = match &tls {
            Some(identity) => server.listen_rustls_0_23(
                listener,
                sqlgate::tls::server_config(identity).map_err(|e| anyhow::anyhow!(e))?,
            )?,
            None => server.listen(listener)?,
        }
        .run();
        Ok(Application {
            port,
            server,
            tasks,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that stops the server (`stop(true)` drains requests first).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until the server is stopped (SIGINT/SIGTERM, or the handle).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        for t in self.tasks {
            t.abort();
        }
        result
    }
}
