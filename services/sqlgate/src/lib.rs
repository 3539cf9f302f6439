//! Shared library of the sqlgate services: wire types, SQL classification and policy, errors.
#![forbid(unsafe_code)]

pub mod body;
pub mod config;
pub mod error;
pub mod lexer;
pub mod params;
pub mod request_log;
pub mod statement;
pub mod stream;
pub mod tls;
pub mod wire;

pub use error::{ApiError, ErrorCode, ErrorSource};
pub use statement::{Category, Classifier, Role, Route, SqlError, Statement};
pub use wire::{Gtid, Mode, NodeRole, Prepared, QueryRequest, RequestId, TransactionRequest};
