//! Maps every proxy failure to the API's error codes, tagged by source: client (4xx),
//! upstream database (422/503/504), internal (500).

use crate::execute::ExecError;
use sqlgate::{ApiError, ErrorCode};

/// Why a request could not be answered with a result.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The request itself is wrong (already an API error).
    #[error(transparent)]
    Client(#[from] ApiError),
    /// The database failed or refused the statement.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// No connection could be had from the chosen node.
    #[error("node {node} unavailable: {detail}")]
    NodeUnavailable { node: String, detail: String },
    /// A bug: the blocking task panicked or was cancelled.
    #[error("unexpected: {0}")]
    Unexpected(String),
}

impl ProxyError {
    /// Whether a read may be retried on another node: it never reached a server.
    pub fn retryable_read(&self) -> bool {
        matches!(
            self,
            ProxyError::NodeUnavailable { .. } | ProxyError::Exec(ExecError::Connection(_))
        )
    }

    /// The label used for the outcome in metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            ProxyError::Client(_) => "client_error",
            ProxyError::Exec(ExecError::Sql { .. }) => "sql_error",
            ProxyError::Exec(ExecError::Timeout(_)) => "timeout",
            ProxyError::Exec(ExecError::TooLarge(_)) => "too_large",
            ProxyError::Exec(ExecError::Connection(_)) | ProxyError::NodeUnavailable { .. } => {
                "unavailable"
            }
            ProxyError::Unexpected(_) => "internal",
        }
    }

    pub fn into_api(self) -> ApiError {
        match self {
            ProxyError::Client(e) => e,
            ProxyError::Exec(ExecError::Sql {
                code,
                state,
                message,
            }) => ApiError::sql(code, state, message),
            ProxyError::Exec(ExecError::Timeout(m)) => ApiError::new(ErrorCode::Timeout, m),
            ProxyError::Exec(ExecError::TooLarge(m)) => ApiError::new(ErrorCode::ResultTooLarge, m),
            ProxyError::Exec(ExecError::Connection(m)) => {
                if m.to_ascii_lowercase().contains("timed out") {
                    ApiError::new(
                        ErrorCode::Timeout,
                        format!("database did not answer in time: {m}"),
                    )
                } else {
                    ApiError::new(
                        ErrorCode::Unavailable,
                        format!("database connection failed: {m}"),
                    )
                    .with_retry_after(1)
                }
            }
            e @ ProxyError::NodeUnavailable { .. } => {
                ApiError::new(ErrorCode::Unavailable, e.to_string()).with_retry_after(1)
            }
            ProxyError::Unexpected(m) => {
                log::error!("Unexpected failure error={m:?}");
                ApiError::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}
