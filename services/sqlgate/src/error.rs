//! The error contract both services speak: one code per failure, one status per code.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Every error code of the API, with the HTTP status it maps to (see `docs/api.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not the JSON shape the endpoint expects.
    BadRequest,
    /// The SQL is empty, too long, or holds more than one statement.
    InvalidSql,
    /// The SQL holds something the server and the classifier could read differently
    /// (executable comments, non-ASCII or control characters outside literals).
    AmbiguousSql,
    /// The statement is on the deny-list no key may pass.
    StatementDenied,
    /// `params` do not match the placeholders, or hold a value that cannot be bound.
    InvalidParams,
    /// `X-API-Key` (gatekeeper) or the internal token (proxy) is missing or wrong.
    Unauthorized,
    /// The key's role does not allow this statement.
    Forbidden,
    /// No such endpoint.
    NotFound,
    /// The endpoint exists but not for this method.
    MethodNotAllowed,
    /// The request body exceeds the configured limit.
    PayloadTooLarge,
    /// The result exceeds the row or byte limit.
    ResultTooLarge,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// The database rejected the statement (`mysql_code` says why).
    SqlError,
    /// A statement of a `/transaction` ended the transaction on the server (found before
    /// COMMIT; the message says what may have been committed).
    TransactionBroken,
    /// Too many requests for this key.
    RateLimited,
    /// The proxy answered with something the gatekeeper cannot use.
    BadGateway,
    /// No database node (or, at the gatekeeper, no proxy) can serve the request.
    Unavailable,
    /// The statement or the upstream did not finish in time.
    Timeout,
    /// A bug or an unexpected condition on our side.
    Internal,
}

impl ErrorCode {
    /// The HTTP status this code is sent with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadRequest
            | Self::InvalidSql
            | Self::AmbiguousSql
            | Self::StatementDenied
            | Self::InvalidParams => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge | Self::ResultTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::SqlError | Self::TransactionBroken => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::BadGateway => StatusCode::BAD_GATEWAY,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::InvalidSql => "invalid_sql",
            Self::AmbiguousSql => "ambiguous_sql",
            Self::StatementDenied => "statement_denied",
            Self::InvalidParams => "invalid_params",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::ResultTooLarge => "result_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::SqlError => "sql_error",
            Self::TransactionBroken => "transaction_broken",
            Self::RateLimited => "rate_limited",
            Self::BadGateway => "bad_gateway",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::Internal => "internal",
        }
    }
}

/// The `error` object of an error response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// The MySQL/MariaDB error number, for `sql_error`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mysql_code: Option<u16>,
    /// The SQLSTATE, for `sql_error`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sqlstate: Option<String>,
    /// For `/transaction`: the index of the statement that failed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub statement_index: Option<usize>,
}

/// The whole error response body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<String>,
}

/// An error ready to be sent: every failure of both services ends up as one of these.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub detail: ErrorDetail,
    pub request_id: Option<String>,
    /// Seconds the client should wait before retrying (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            detail: ErrorDetail {
                code,
                message: message.into(),
                mysql_code: None,
                sqlstate: None,
                statement_index: None,
            },
            request_id: None,
            retry_after: None,
        }
    }

    pub fn code(&self) -> ErrorCode {
        self.detail.code
    }

    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }

    pub fn with_statement_index(mut self, index: usize) -> Self {
        self.detail.statement_index = Some(index);
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// An error the database returned for the statement itself.
    pub fn sql(mysql_code: u16, sqlstate: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorCode::SqlError, message);
        e.detail.mysql_code = Some(mysql_code);
        e.detail.sqlstate = Some(sqlstate.into());
        e
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.detail.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.detail.code.as_str(), self.detail.message)
    }
}

impl std::error::Error for ApiError {}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.detail.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status_code());
        if let Some(s) = self.retry_after {
            resp.insert_header(("Retry-After", s.to_string()));
        }
        resp.json(self.body())
    }
}

impl From<crate::statement::SqlError> for ApiError {
    fn from(e: crate::statement::SqlError) -> Self {
        use crate::statement::SqlError as E;
        let code = match &e {
            E::Empty | E::TooLong { .. } | E::MultipleStatements | E::Unparseable(_) => {
                ErrorCode::InvalidSql
            }
            E::Denied(_) => ErrorCode::StatementDenied,
            E::Ambiguous(_) => ErrorCode::AmbiguousSql,
            E::NotAllowed { .. } => ErrorCode::Forbidden,
        };
        Self::new(code, e.to_string())
    }
}

/// Answers unknown routes with the JSON error shape instead of an empty 404.
pub async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
    // The path is the client's: say it only when it is short and printable.
    let path = req.path();
    let shown = if path.len() <= 128 && path.bytes().all(|b| b.is_ascii_graphic()) {
        path
    } else {
        "(this path)"
    };
    ApiError::new(ErrorCode::NotFound, format!("no endpoint {shown}"))
        .with_request_id(crate::wire::new_request_id())
        .error_response()
}

/// Answers a known route called with the wrong method.
pub async fn method_not_allowed(req: actix_web::HttpRequest) -> HttpResponse {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.path()),
    )
    .with_request_id(crate::wire::new_request_id())
    .error_response()
}

/// Registers `path` for one method, answering other methods with a JSON 405.
pub fn route(cfg: &mut actix_web::web::ServiceConfig, path: &str, route: actix_web::Route) {
    cfg.service(
        actix_web::web::resource(path)
            .route(route)
            .default_service(actix_web::web::to(method_not_allowed)),
    );
}
