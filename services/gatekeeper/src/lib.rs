//! sqlgate gatekeeper: the only public component. Authenticates every request by API key,
//! validates it against the key's policy, and forwards only valid requests to the proxy.
//!
//! A request's path: `routes` (the handlers) → `auth` (the key) → `limit` (the key's rate) →
//! `validate` (body, SQL, policy) → `forward` (to the proxy). `startup` builds the servers and
//! the state they share; `config` reads the environment; `metrics` counts what the request log
//! (`sqlgate::request_log`) observes.
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod forward;
pub mod limit;
pub mod metrics;
pub mod routes;
pub mod startup;
pub mod validate;
