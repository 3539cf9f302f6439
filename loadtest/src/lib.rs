//! loadtest: measures sqlgate through its gatekeeper (the seed benchmark, closed and open
//! loop, HDR percentiles, row counts), runs the sysbench baselines, and compares the gateway
//! with direct database access; reports as tables, JSON, CSV and PNG charts.
#![forbid(unsafe_code)]

pub mod bench;
pub mod chart;
pub mod cli;
pub mod client;
pub mod commands;
pub mod doc;
pub mod error;
pub mod facts;
pub mod memory;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod schedule;
pub mod stats;
pub mod sysbench;
pub mod targets;
pub mod verify;

pub use error::Error;
