//! Builds the gatekeeper: the state every handler shares, and its two servers (the public
//! HTTPS listener and the private admin listener), each wrapped in the request log.

use crate::config::Config;
use crate::{auth, forward, limit, metrics, routes};
use actix_web::{dev::Server, web, App, HttpServer};
use sqlgate::request_log::RequestLog;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Shared by every request handler. The client for the proxy is not here: each HTTP worker has
/// its own (`web::Data<forward::Forwarder>`), so that a request and the connection it uses to
/// the proxy run on the same thread (decisions.md, the gatekeeper's forward path).
pub struct State {
    pub config: Config,
    pub keys: auth::KeyStore,
    pub limiter: limit::Limiter,
    pub metrics: metrics::Metrics,
    pub classifier: sqlgate::Classifier,
}

/// A built gatekeeper: public and admin listeners bound; `run_until_stopped` serves.
pub struct Application {
    port: u16,
    admin_port: u16,
    public: Server,
    admin: Server,
}

impl Application {
    /// Loads the keys (refusing to start without one) and binds both listeners.
    pub fn build(config: Config) -> anyhow::Result<Application> {
        let public = TcpListener::bind(config.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let admin = TcpListener::bind(config.admin_listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.admin_listen))?;
        Self::with_listeners(config, public, admin)
    }

    /// Like `build`, on listeners the caller bound (tests bind port 0).
    pub fn with_listeners(
        config: Config,
        public_listener: TcpListener,
        admin: TcpListener,
    ) -> anyhow::Result<Application> {
        let keys = auth::KeyStore::load(&config.keys_file).map_err(|e| anyhow::anyhow!(e))?;
        log::info!("Keys loaded count={}", keys.len());
        let port = public_listener.local_addr()?.port();
        let admin_port = admin.local_addr()?.port();
        let workers = config.http_workers;
        let tls = match &config.tls {
            Some(identity) => {
                Some(sqlgate::tls::server_config(identity).map_err(|e| anyhow::anyhow!(e))?)
            }
            None => None,
        };
        // One client per worker, built here so that a bad CA file stops the start.
        let forwarders = (0..workers)
            .map(|_| forward::Forwarder::new(&config).map(web::Data::new))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let next_worker = Arc::new(AtomicUsize::new(0));
        let state = web::Data::new(State {
            limiter: limit::Limiter::new(config.rate_limit_rps, config.rate_limit_burst),
            classifier: sqlgate::Classifier::new(
                config.max_sql_bytes,
                sqlgate::config::CLASSIFIER_CACHE_ENTRIES,
            ),
            keys,
            config,
            metrics: metrics::Metrics::default(),
        });
        let observed = state.clone();
        let log = RequestLog::new()
            .quiet("/health")
            .observe(move |done| observed.metrics.observe(done));
        let s = state.clone();
        let public = HttpServer::new(move || {
            // Called once on each worker's thread.
            let i = next_worker.fetch_add(1, Ordering::Relaxed) % forwarders.len();
            App::new()
                .wrap(log.clone())
                .app_data(s.clone())
                .app_data(forwarders[i].clone())
                .configure(routes::public)
        })
        .workers(workers)
        // A client that closes its side has gone away: its request is cancelled, and with it
        // the forward to the proxy, which kills a statement still running (never run to the
        // end, and committed, for nobody).
        .h1_allow_half_closed(false);
        let public = match tls {
            Some(tls) => public.listen_rustls_0_23(public_listener, tls)?,
            None => public.listen(public_listener)?,
        }
        .run();
        let admin = HttpServer::new(move || {
            App::new()
                .wrap(RequestLog::new().quiet("/health").quiet("/metrics"))
                .app_data(state.clone())
                .configure(routes::admin)
        })
        .workers(1)
        .listen(admin)?
        .run();
        Ok(Application {
            port,
            admin_port,
            public,
            admin,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// Handles that stop both servers.
    pub fn handles(&self) -> [actix_web::dev::ServerHandle; 2] {
        [self.public.handle(), self.admin.handle()]
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let (a, b) = tokio::join!(self.public, self.admin);
        a.and(b)
    }
}
