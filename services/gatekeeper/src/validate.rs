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

/// Validates a `/query` body; fills in the request id.
pub fn query(
    state: &State,
    role: Role,
    body: &[u8],
) -> Result<(QueryRequest, Statement), ApiError> {
    let mut req: QueryRequest = wire::parse_json(body)?;
    match &req.request_id {
        Some(id) => wire::check_request_id(id)?,
        None => req.request_id = Some(wire::new_request_id()),
    }
    if let Some(g) = &req.after_gtid {
        wire::check_gtid(g)?;
    }
    let stmt = statement(state, role, &req.sql, &req.params)?;
    Ok((req, stmt))
}

/// Validates a `/transaction` body; fills in the request id.
pub fn transaction(state: &State, role: Role, body: &[u8]) -> Result<TransactionRequest, ApiError> {
    let mut req: TransactionRequest = wire::parse_json(body)?;
    match &req.request_id {
        Some(id) => wire::check_request_id(id)?,
        None => req.request_id = Some(wire::new_request_id()),
    }
    let max = state.config.max_tx_statements;
    if req.statements.is_empty() || req.statements.len() > max {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("a transaction holds 1 to {max} statements"),
        ));
    }
    for (i, s) in req.statements.iter().enumerate() {
        statement(state, role, &s.sql, &s.params).map_err(|e| e.with_statement_index(i))?;
    }
    Ok(req)
}
