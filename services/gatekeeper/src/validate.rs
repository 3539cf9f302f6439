//! Checks a request before it is forwarded: JSON shape, request id, GTID, one statement, the
//! deny-list, params, and the key's role (`sqlgate::wire::prepare_for`). What passes becomes a
//! `Checked`, the only thing the forwarder sends; it holds the exact bytes that were checked.

use sqlgate::wire::{self, BatchRequest, QueryRequest, RequestId, TransactionRequest};
#[cfg(test)]
use sqlgate::ErrorCode;
use sqlgate::{ApiError, Classifier, Mode, Role, Route};

/// The endpoints that run SQL, on the gatekeeper and on the proxy alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Query,
    Transaction,
    Batch,
}

impl Endpoint {
    pub const ALL: [Endpoint; 3] = [Endpoint::Query, Endpoint::Transaction, Endpoint::Batch];

    /// The label in metrics (`query`, `transaction`, `batch`).
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Query => "query",
            Endpoint::Transaction => "transaction",
            Endpoint::Batch => "batch",
        }
    }

    /// The path, the same on the gatekeeper and the proxy.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Query => "/query",
            Endpoint::Transaction => "/transaction",
            Endpoint::Batch => "/batch",
        }
    }
}

/// What validation needs besides the body: the classifier and the limits.
pub struct Rules<'a> {
    pub classifier: &'a Classifier,
    pub limits: wire::Limits,
}

/// A request that passed every check, with the body exactly as it was checked. The proxy parses
/// those same bytes with the same function (`wire::parse_json`) and checks them again.
#[derive(Debug)]
pub struct Checked {
    endpoint: Endpoint,
    request_id: RequestId,
    body: actix_web::web::Bytes,
    kind: Route,
    mode: Option<Mode>,
}

impl Checked {
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// The body's request id, or a fresh one when it has none (the proxy then takes it from
    /// `X-Request-Id`).
    pub fn request_id(&self) -> &RequestId {
        &self.request_id
    }

    /// The bytes that were checked, to be forwarded as they are.
    pub fn body(&self) -> &actix_web::web::Bytes {
        &self.body
    }

    /// `Read` when every statement may run on a worker.
    pub fn kind(&self) -> Route {
        self.kind
    }

    /// The mode the client asked for, if any.
    pub fn mode(&self) -> Option<Mode> {
        self.mode
    }
}

/// Checks `body` for `endpoint` as a key with `role` sends it (`wire::prepare_query`,
/// `prepare_transaction`, `prepare_batch`: the same checks the proxy makes). An error names the
/// request id once it is known (the client's, when valid).
pub fn check(
    endpoint: Endpoint,
    rules: &Rules<'_>,
    role: Role,
    body: actix_web::web::Bytes,
) -> Result<Checked, ApiError> {
    let c = rules.classifier;
    let (request_id, kind, mode) = match endpoint {
        Endpoint::Query => {
            let req: QueryRequest = wire::parse_json(&body)?;
            let id = RequestId::given_or_new(req.request_id.clone())?;
            let p = wire::prepare_query(c, role, &req, &rules.limits).map_err(named(&id))?;
            (id, p.route(), req.mode)
        }
        Endpoint::Transaction => {
            let req: TransactionRequest = wire::parse_json(&body)?;
            let id = RequestId::given_or_new(req.request_id.clone())?;
            wire::prepare_transaction(c, role, &req, &rules.limits).map_err(named(&id))?;
            let kind = if req.read_only == Some(true) {
                Route::Read
            } else {
                Route::Write
            };
            (id, kind, req.mode)
        }
        Endpoint::Batch => {
            let req: BatchRequest = wire::parse_json(&body)?;
            let id = RequestId::given_or_new(req.request_id.clone())?;
            wire::prepare_batch(c, role, &req, &rules.limits).map_err(named(&id))?;
            (id, Route::Write, None)
        }
    };
    Ok(Checked {
        endpoint,
        request_id,
        body,
        kind,
        mode,
    })
}

/// Names the request in an error.
fn named(id: &RequestId) -> impl Fn(ApiError) -> ApiError + '_ {
    move |e| e.with_request_id(id.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::web::Bytes;

    fn rules(c: &Classifier) -> Rules<'_> {
        Rules {
            classifier: c,
            limits: wire::Limits {
                max_params: 2,
                max_tx_statements: 2,
                max_batch_sets: 2,
            },
        }
    }

    #[test]
    fn checked_requests_keep_their_bytes_and_name_their_id() {
        let c = Classifier::new(1024, 8);
        let body = Bytes::from_static(br#"{"sql":"SELECT ?","params":[1],"request_id":"q-1"}"#);
        let ok = check(Endpoint::Query, &rules(&c), Role::Read, body.clone()).unwrap();
        assert_eq!(ok.body(), &body, "forwarded as checked");
        assert_eq!((ok.request_id().as_str(), ok.kind()), ("q-1", Route::Read));
        let body = Bytes::from_static(br#"{"sql":"SELECT 1"}"#);
        let ok = check(Endpoint::Query, &rules(&c), Role::Read, body).unwrap();
        assert_eq!(ok.request_id().as_str().len(), 16, "a fresh id");
        let body = Bytes::from_static(
            br#"{"statements":[{"sql":"INSERT INTO app.t VALUES (?)","params":[1]}]}"#,
        );
        let ok = check(Endpoint::Transaction, &rules(&c), Role::Write, body).unwrap();
        assert_eq!(
            (ok.endpoint(), ok.kind()),
            (Endpoint::Transaction, Route::Write)
        );
    }

    #[test]
    fn refusals_say_why_and_name_the_request_once_known() {
        let c = Classifier::new(1024, 8);
        let cases: &[(Endpoint, Role, &str, ErrorCode, Option<&str>)] = &[
            (
                Endpoint::Query,
                Role::Read,
                r#"{"sql":1}"#,
                ErrorCode::BadRequest,
                None,
            ),
            (
                Endpoint::Query,
                Role::Read,
                r#"{"sql":"SELECT 1","request_id":"bad id"}"#,
                ErrorCode::BadRequest,
                None,
            ),
            (
                Endpoint::Query,
                Role::Read,
                r#"{"sql":"DELETE FROM app.t","request_id":"r1"}"#,
                ErrorCode::Forbidden,
                Some("r1"),
            ),
            (
                Endpoint::Query,
                Role::Read,
                r#"{"sql":"SELECT 1","after_gtid":"x'","request_id":"r2"}"#,
                ErrorCode::BadRequest,
                Some("r2"),
            ),
            (
                Endpoint::Transaction,
                Role::Admin,
                r#"{"statements":[],"request_id":"r3"}"#,
                ErrorCode::BadRequest,
                Some("r3"),
            ),
            (
                Endpoint::Transaction,
                Role::Admin,
                r#"{"statements":[{"sql":"SELECT 1"},{"sql":"SELECT 1"},{"sql":"SELECT 1"}]}"#,
                ErrorCode::BadRequest,
                None,
            ),
            (
                Endpoint::Transaction,
                Role::Admin,
                r#"{"statements":[{"sql":"SELECT 1"},{"sql":"DROP TABLE app.t"}],"request_id":"r4"}"#,
                ErrorCode::StatementDenied,
                Some("r4"),
            ),
        ];
        for (endpoint, role, body, code, id) in cases {
            let e =
                check(*endpoint, &rules(&c), *role, Bytes::from(body.to_string())).expect_err(body);
            assert_eq!(e.code(), *code, "{body}: {e}");
            if let Some(id) = id {
                assert_eq!(e.request_id.as_deref(), Some(*id), "{body}");
            }
        }
        let e = check(
            Endpoint::Transaction,
            &rules(&c),
            Role::Admin,
            Bytes::from_static(
                br#"{"statements":[{"sql":"SELECT 1"},{"sql":"DROP TABLE app.t"}]}"#,
            ),
        )
        .unwrap_err();
        assert_eq!(e.detail.statement_index, Some(1));
    }
}
