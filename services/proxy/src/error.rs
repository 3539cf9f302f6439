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
    /// Whether a read may be retried on another node: only when it never reached a server
    /// (no connection could be had). A statement that was sent may have run, or may still be
    /// running; running it again elsewhere would run it twice.
    pub fn retryable_read(&self) -> bool {
        matches!(self, ProxyError::NodeUnavailable { .. })
    }

    /// The label used for the outcome in metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            ProxyError::Client(_) => "client_error",
            ProxyError::Exec(ExecError::Sql { .. }) => "sql_error",
            ProxyError::Exec(
                ExecError::Timeout(_) | ExecError::Deadline(_) | ExecError::TransactionDeadline,
            ) => "timeout",
            ProxyError::Exec(ExecError::TooLarge(_)) => "too_large",
            ProxyError::Exec(ExecError::Connection(_)) | ProxyError::NodeUnavailable { .. } => {
                "unavailable"
            }
            ProxyError::Unexpected(_) => "internal",
        }
    }

    /// The error the client sees. Upstream failures carry a fixed message; what the driver
    /// said goes to the log only (with the request id), never into a response.
    pub fn into_api(self, request_id: &str) -> ApiError {
        let hidden = |code: ErrorCode, message: &str, detail: &dyn std::fmt::Display| {
            log::warn!("Database failure request_id={request_id} error={detail}");
            ApiError::new(code, message)
        };
        match self {
            ProxyError::Client(e) => e,
            ProxyError::Exec(ExecError::Sql {
                code,
                state,
                message,
            }) => ApiError::sql(code, state, message),
            ProxyError::Exec(ExecError::Timeout(m) | ExecError::Deadline(m)) => {
                hidden(ErrorCode::Timeout, "statement timed out", &m)
            }
            ProxyError::Exec(ExecError::TransactionDeadline) => ApiError::new(
                ErrorCode::Timeout,
                "transaction timed out; nothing was committed",
            ),
            ProxyError::Exec(ExecError::TooLarge(m)) => ApiError::new(ErrorCode::ResultTooLarge, m),
            ProxyError::Exec(ExecError::Connection(m)) => {
                hidden(ErrorCode::Unavailable, "database unavailable", &m).with_retry_after(1)
            }
            e @ ProxyError::NodeUnavailable { .. } => {
                hidden(ErrorCode::Unavailable, "no node can serve", &e).with_retry_after(1)
            }
            ProxyError::Unexpected(m) => {
                log::error!("Unexpected failure request_id={request_id} error={m:?}");
                ApiError::new(ErrorCode::Internal, "internal error")
            }
        }
    }
}
