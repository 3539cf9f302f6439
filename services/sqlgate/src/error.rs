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

/// Where a failure comes from, as pingora's `ErrorSource`: the client's request, the service
/// behind this one (the database for the proxy; the proxy, and through it the database, for the
/// gatekeeper), or this service itself. Logged with every failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorSource {
    /// The request was wrong or not allowed; the client can fix it.
    Client,
    /// The upstream failed, refused the statement or did not answer in time.
    Upstream,
    /// A bug or an unexpected condition here.
    Internal,
}

impl ErrorSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Upstream => "upstream",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the contract says about one code: its name on the wire, its status, its source.
struct Contract {
    name: &'static str,
    status: StatusCode,
    source: ErrorSource,
}

impl ErrorCode {
    /// Every code, for tests and for parsing.
    pub const ALL: [ErrorCode; 19] = [
        Self::BadRequest,
        Self::InvalidSql,
        Self::AmbiguousSql,
        Self::StatementDenied,
        Self::InvalidParams,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::PayloadTooLarge,
        Self::ResultTooLarge,
        Self::UnsupportedMediaType,
        Self::SqlError,
        Self::TransactionBroken,
        Self::RateLimited,
        Self::BadGateway,
        Self::Unavailable,
        Self::Timeout,
        Self::Internal,
    ];

    /// The one place that maps a code to its wire name, HTTP status and source. Nothing else
    /// decides a status or a source, and nothing reads them from a message.
    fn contract(self) -> Contract {
        use ErrorSource::{Client, Internal, Upstream};
        let (name, status, source) = match self {
            Self::BadRequest => ("bad_request", StatusCode::BAD_REQUEST, Client),
            Self::InvalidSql => ("invalid_sql", StatusCode::BAD_REQUEST, Client),
            Self::AmbiguousSql => ("ambiguous_sql", StatusCode::BAD_REQUEST, Client),
            Self::StatementDenied => ("statement_denied", StatusCode::BAD_REQUEST, Client),
            Self::InvalidParams => ("invalid_params", StatusCode::BAD_REQUEST, Client),
            Self::Unauthorized => ("unauthorized", StatusCode::UNAUTHORIZED, Client),
            Self::Forbidden => ("forbidden", StatusCode::FORBIDDEN, Client),
            Self::NotFound => ("not_found", StatusCode::NOT_FOUND, Client),
            Self::MethodNotAllowed => {
                ("method_not_allowed", StatusCode::METHOD_NOT_ALLOWED, Client)
            }
            Self::PayloadTooLarge => ("payload_too_large", StatusCode::PAYLOAD_TOO_LARGE, Client),
            // The client asked for more than the limits allow; a LIMIT fixes it.
            Self::ResultTooLarge => ("result_too_large", StatusCode::PAYLOAD_TOO_LARGE, Client),
            Self::UnsupportedMediaType => (
                "unsupported_media_type",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Client,
            ),
            // The database's own answer to the statement.
            Self::SqlError => ("sql_error", StatusCode::UNPROCESSABLE_ENTITY, Upstream),
            Self::TransactionBroken => (
                "transaction_broken",
                StatusCode::UNPROCESSABLE_ENTITY,
                Upstream,
            ),
            Self::RateLimited => ("rate_limited", StatusCode::TOO_MANY_REQUESTS, Client),
            Self::BadGateway => ("bad_gateway", StatusCode::BAD_GATEWAY, Upstream),
            Self::Unavailable => ("unavailable", StatusCode::SERVICE_UNAVAILABLE, Upstream),
            Self::Timeout => ("timeout", StatusCode::GATEWAY_TIMEOUT, Upstream),
            Self::Internal => ("internal", StatusCode::INTERNAL_SERVER_ERROR, Internal),
        };
        Contract {
            name,
            status,
            source,
        }
    }

    /// The HTTP status this code is sent with.
    pub fn status(self) -> StatusCode {
        self.contract().status
    }

    /// Where a failure with this code comes from.
    pub fn source(self) -> ErrorSource {
        self.contract().source
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        self.contract().name
    }

    /// The code named `name` on the wire.
    pub fn parse(name: &str) -> Option<ErrorCode> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
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

    /// Where this failure comes from (from its code: see `ErrorCode::source`).
    pub fn source(&self) -> ErrorSource {
        self.detail.code.source()
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

    /// The response for this error. It keeps the error, so the request log can name its code
    /// and source (`crate::request_log`); prefer it to `error_response()` in handlers.
    pub fn into_response(self) -> HttpResponse {
        HttpResponse::from_error(self)
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
        .with_request_id(crate::wire::RequestId::new())
        .into_response()
}

/// Answers a known route called with the wrong method.
pub async fn method_not_allowed(req: actix_web::HttpRequest) -> HttpResponse {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.path()),
    )
    .with_request_id(crate::wire::RequestId::new())
    .into_response()
}

/// Registers `path` for one method, answering other methods with a JSON 405.
pub fn route(cfg: &mut actix_web::web::ServiceConfig, path: &str, route: actix_web::Route) {
    cfg.service(
        actix_web::web::resource(path)
            .route(route)
            .default_service(actix_web::web::to(method_not_allowed)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails to compile when a code is added without a place in `ErrorCode::ALL`.
    fn position(c: ErrorCode) -> usize {
        use ErrorCode::*;
        match c {
            BadRequest => 0,
            InvalidSql => 1,
            AmbiguousSql => 2,
            StatementDenied => 3,
            InvalidParams => 4,
            Unauthorized => 5,
            Forbidden => 6,
            NotFound => 7,
            MethodNotAllowed => 8,
            PayloadTooLarge => 9,
            ResultTooLarge => 10,
            UnsupportedMediaType => 11,
            SqlError => 12,
            TransactionBroken => 13,
            RateLimited => 14,
            BadGateway => 15,
            Unavailable => 16,
            Timeout => 17,
            Internal => 18,
        }
    }

    #[test]
    fn one_contract_per_code() {
        for (i, c) in ErrorCode::ALL.into_iter().enumerate() {
            assert_eq!(position(c), i, "{c:?}");
            let wire = serde_json::to_value(c).unwrap();
            assert_eq!(wire, serde_json::Value::from(c.as_str()), "serde name");
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
            // 4xx but 422 are the client's; 422 and 5xx but 500 are upstream's; 500 ours.
            let status = c.status().as_u16();
            let want = match status {
                422 | 502..=504 => ErrorSource::Upstream,
                500 => ErrorSource::Internal,
                _ => ErrorSource::Client,
            };
            assert_eq!(c.source(), want, "{c:?} ({status})");
            let e = ApiError::new(c, "m");
            assert_eq!((e.status_code(), e.source()), (c.status(), c.source()));
        }
        assert_eq!(ErrorCode::parse("nope"), None);
        let table = [
            (ErrorCode::Unauthorized, 401, "client"),
            (ErrorCode::RateLimited, 429, "client"),
            (ErrorCode::ResultTooLarge, 413, "client"),
            (ErrorCode::SqlError, 422, "upstream"),
            (ErrorCode::Unavailable, 503, "upstream"),
            (ErrorCode::Timeout, 504, "upstream"),
            (ErrorCode::BadGateway, 502, "upstream"),
            (ErrorCode::Internal, 500, "internal"),
        ];
        for (c, status, source) in table {
            assert_eq!((c.status().as_u16(), c.source().as_str()), (status, source));
        }
    }

    #[test]
    fn an_error_response_keeps_its_error_for_the_log() {
        let resp = ApiError::new(ErrorCode::Forbidden, "no")
            .with_request_id("r")
            .with_retry_after(3)
            .into_response();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(resp.headers().get("Retry-After").unwrap(), "3");
        let kept = resp.error().and_then(|e| e.as_error::<ApiError>()).unwrap();
        assert_eq!(
            (kept.code(), kept.request_id.as_deref()),
            (ErrorCode::Forbidden, Some("r"))
        );
    }
}
