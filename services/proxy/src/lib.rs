//! sqlgate proxy: classifies each statement, sends writes to the manager and reads to a worker
//! chosen by the routing mode, from health kept by background monitors.
//!
//! A request's way through (docs/architecture.md): `routes` (HTTP: parse, call, reply) →
//! `route::plan` (which node, pure) → `execute` (lease a connection, run within the deadline,
//! retry or fall back as planned) → `db` (the statement on the connection, values to JSON) and
//! `pool` (connections per node and account, reset after every use). `node` holds each node's
//! pools and health, which `monitor` and `probe` keep current; `startup` wires it all.
#![forbid(unsafe_code)]

pub mod config;
pub mod db;
pub mod error;
pub mod execute;
pub mod metrics;
pub mod monitor;
pub mod node;
pub mod pool;
pub mod probe;
pub mod route;
pub mod routes;
pub mod startup;
pub mod stream;
