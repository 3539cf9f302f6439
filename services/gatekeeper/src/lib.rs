//! sqlgate gatekeeper: the only public component. Authenticates every request by API key,
//! validates it against the key's policy, and forwards only valid requests to the proxy.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod forward;
pub mod limit;
pub mod metrics;
pub mod routes;
pub mod validate;

use actix_web::{dev::Server, web, App, HttpServer};
use config::Config;
use std::net::TcpListener;

/// Shared by every request handler.
pub struct State {
    pub config: Config,
    pub keys: auth::KeyStore,
    pub forwarder: forward::Forwarder,
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
        let state = web::Data::new(State {
            forwarder: forward::Forwarder::new(&config)?,
            limiter: limit::Limiter::new(config.rate_limit_rps, config.rate_limit_burst),
            classifier: sqlgate::Classifier::new(config.max_sql_bytes, 1024),
            keys,
            config,
            metrics: metrics::Metrics::default(),
        });
        let s = state.clone();
        let tls = match &state.config.tls {
            Some(identity) => {
                Some(sqlgate::tls::server_config(identity).map_err(|e| anyhow::anyhow!(e))?)
            }
            None => None,
        };
        let public =
            HttpServer::new(move || App::new().app_data(s.clone()).configure(routes::public))
                .workers(workers);
        let public = match tls {
            Some(tls) => public.listen_rustls_0_23(public_listener, tls)?,
            None => public.listen(public_listener)?,
        }
        .run();
        let admin =
            HttpServer::new(move || App::new().app_data(state.clone()).configure(routes::admin))
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
