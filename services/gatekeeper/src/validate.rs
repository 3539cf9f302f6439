//! Checks a request before it is forwarded: JSON shape, one statement, the deny-list, params,
//! and the key's role. Only what passes reaches the proxy.

use crate::State;
use sqlgate::wire::{self, QueryRequest, TransactionRequest};
use sqlgate::{ApiError, ErrorCode, Role, Statement};

fn statement(
    state: &State,
    role: Role,
    sql: &str,
    params: &[serde_json::Value],
) -> Result<Statement, ApiError> {
    let stmt = wire::prepare(&state.classifier, sql, params, state.config.max_params)?;
    stmt.check_role(role)?;
    Ok(stmt)
}

/// The request id a validated body carries: the client's when valid, else a fresh one. It is
/// recorded in `seen` before any later check, so every error can name it.
fn request_id(given: &Option<String>, seen: &mut Option<String>) -> Result<String, ApiError> {
    if let Some(id) = given {
        wire::check_request_id(id)?;
    }
    let id = given.clone().unwrap_or_else(wire::new_request_id);
    *seen = Some(id.clone());
    Ok(id)
}

/// Validates a `/query` body; fills in the request id.
pub fn query(
    state: &State,
    role: Role,
    body: &[u8],
    seen: &mut Option<String>,
) -> Result<(QueryRequest, Statement), ApiError> {
    let mut req: QueryRequest = wire::parse_json(body)?;
    req.request_id = Some(request_id(&req.request_id, seen)?);
    if let Some(g) = &req.after_gtid {
        wire::check_gtid(g)?;
    }
    let stmt = statement(state, role, &req.sql, &req.params)?;
    Ok((req, stmt))
}

/// Validates a `/transaction` body; fills in the request id.
pub fn transaction(
    state: &State,
    role: Role,
    body: &[u8],
    seen: &mut Option<String>,
) -> Result<TransactionRequest, ApiError> {
    let mut req: TransactionRequest = wire::parse_json(body)?;
    req.request_id = Some(request_id(&req.request_id, seen)?);
    let max = state.config.max_tx_statements;
    if req.statements.is_empty() || req.statements.len() > max {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("a transaction holds 1 to {max} statements"),
        ));
    }
    for (i, s) in req.statements.iter().enumerate() {
        statement(state, role, &s.sql, &s.params)
            .and_then(|stmt| Ok(stmt.check_in_transaction()?))
            .map_err(|e| e.with_statement_index(i))?;
    }
    Ok(req)
}
