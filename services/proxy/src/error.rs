//! Maps every proxy failure to the API's error codes, tagged by source: client (4xx),
//! upstream database (422/503/504), internal (500).

use crate::db::ExecError;
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
    /// A bug: a state the proxy should never reach.
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

    /// Whether a write was refused by a read-only node (nothing ran): see `execute::follow`.
    pub fn refused_read_only(&self) -> bool {
        matches!(self, ProxyError::Exec(e) if e.refused_read_only())
    }

    /// Whether the connection it happened on must not go back to the pool.
    pub fn breaks_connection(&self) -> bool {
        matches!(self, ProxyError::Exec(e) if e.breaks_connection())
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
            e if e.refused_read_only() => hidden(
                ErrorCode::Unavailable,
                "no writable manager: a switchover or failover is under way",
                &e,
            )
            .with_retry_after(1),
            ProxyError::Exec(ExecError::Sql {
                code,
                state,
                message,
            }) => ApiError::sql(code, state, message),
            ProxyError::Exec(ExecError::Timeout(m)) => {
                hidden(ErrorCode::Timeout, "statement timed out", &m)
            }
            ProxyError::Exec(ExecError::Deadline) => hidden(
                ErrorCode::Timeout,
                "statement timed out",
                &"killed at the proxy's deadline",
            ),
            ProxyError::Exec(ExecError::TransactionDeadline) => ApiError::new(
                ErrorCode::Timeout,
                "transaction timed out; nothing was committed",
            ),
            ProxyError::Exec(ExecError::CommitUnknown) => ApiError::new(
                ErrorCode::Timeout,
                "COMMIT got no answer in time; whether the transaction committed is unknown",
            ),
            ProxyError::Exec(ExecError::TooLarge(m)) => ApiError::new(ErrorCode::ResultTooLarge, m),
            ProxyError::Exec(ExecError::Abandoned) => {
                ApiError::new(ErrorCode::Timeout, "the client went away")
            }
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
