//! The JSON request and response bodies of `POST /query` and `POST /transaction`.
//!
//! Also the rest of the contract between the gatekeeper and the proxy: the headers, the
//! validated values (`RequestId`, `Gtid`, `Prepared`) and the limit checks both apply.

use crate::error::{ApiError, ErrorCode};
use crate::params::{Param, Params};
use crate::statement::{Classifier, Role, Route, Statement};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// How the proxy chooses the node for a read (writes always go to the manager).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Everything on the manager.
    Direct,
    /// A uniformly random eligible worker.
    Random,
    /// The eligible worker with the lowest smoothed ICMP round-trip time.
    Ping,
    /// The eligible worker with the fewest statements in flight (ties at random).
    LeastBusy,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Direct, Mode::Random, Mode::Ping, Mode::LeastBusy];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Random => "random",
            Mode::Ping => "ping",
            Mode::LeastBusy => "least_busy",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

/// Longest accepted client-supplied `request_id`.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// `POST /query`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    pub sql: String,
    /// Values for `?` placeholders (an array) or `:name` ones (an object): `crate::params`.
    #[serde(default, skip_serializing_if = "Params::is_empty")]
    pub params: Params,
    /// The default schema for the statement's unqualified names (`database`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<Database>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Read-your-writes: a read runs on a worker only once it has applied this GTID position
    /// (the `gtid` of an earlier write's response); otherwise on the manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_gtid: Option<String>,
    /// How rows are written in the answer (`arrays`, the default, or `objects`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<RowFormat>,
    /// `false` leaves out `columns` (names and types); rows as objects still carry the names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_metadata: Option<bool>,
}

/// How rows are written in an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowFormat {
    /// Each row an array of values in column order (the default).
    #[default]
    Arrays,
    /// Each row an object keyed by column name. A name that repeats an earlier column's gets
    /// `:2`, `:3`… appended (`SELECT a.id, b.id` gives `id` and `id:2`), so no value is lost.
    Objects,
}

/// The answer's shape, as the request asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowShape {
    pub format: RowFormat,
    pub include_metadata: bool,
}

impl Default for RowShape {
    fn default() -> RowShape {
        RowShape {
            format: RowFormat::Arrays,
            include_metadata: true,
        }
    }
}

impl RowShape {
    pub fn new(format: Option<RowFormat>, include_metadata: Option<bool>) -> RowShape {
        RowShape {
            format: format.unwrap_or_default(),
            include_metadata: include_metadata.unwrap_or(true),
        }
    }

    /// A statement's result in this shape, as JSON: `columns` dropped without metadata, rows
    /// as objects when asked.
    pub fn render(self, result: StatementResult) -> ShapedResult {
        let keys = self.keys(&result.columns);
        let rows = result
            .rows
            .into_iter()
            .map(|row| self.row(&keys, row))
            .collect();
        ShapedResult {
            columns: self.include_metadata.then_some(result.columns),
            rows,
            rows_affected: result.rows_affected,
            last_insert_id: result.last_insert_id,
        }
    }

    /// The keys `row` needs for rows of `columns`: none for arrays, else `object_keys`.
    pub fn keys(self, columns: &[Column]) -> Vec<String> {
        match self.format {
            RowFormat::Arrays => Vec::new(),
            RowFormat::Objects => object_keys(columns),
        }
    }

    /// One row in this shape; `keys` are `self.keys(columns)`.
    pub fn row(self, keys: &[String], row: Vec<Value>) -> Value {
        match self.format {
            RowFormat::Arrays => Value::Array(row),
            RowFormat::Objects => Value::Object(keys.iter().cloned().zip(row).collect()),
        }
    }
}

/// The keys of rows as objects: the column names, a repeated one suffixed `:2`, `:3`… (skipping
/// any suffix that is itself a column's name).
pub fn object_keys(columns: &[Column]) -> Vec<String> {
    let names: std::collections::HashSet<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let mut used = std::collections::HashSet::new();
    columns
        .iter()
        .map(|c| {
            let mut key = c.name.clone();
            let mut n = 2;
            while used.contains(&key) || (n > 2 && names.contains(key.as_str())) {
                key = format!("{}:{n}", c.name);
                n += 1;
            }
            used.insert(key.clone());
            key
        })
        .collect()
}

/// A statement's result as the request shaped it (see `RowShape`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShapedResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<Column>>,
    pub rows: Vec<Value>,
    pub rows_affected: u64,
    pub last_insert_id: Option<u64>,
}

/// One statement of a `POST /transaction`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TxStatement {
    pub sql: String,
    #[serde(default, skip_serializing_if = "Params::is_empty")]
    pub params: Params,
}

/// `POST /transaction`: statements run in order on the manager, committed together or not at all.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TransactionRequest {
    pub statements: Vec<TxStatement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// As in `QueryRequest`, for every statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<Database>,
    /// As in `QueryRequest`, for every statement's rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<RowFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_metadata: Option<bool>,
    /// Only reads, in a read-only transaction (`START TRANSACTION READ ONLY`) that may run on a
    /// worker, chosen by `mode` and `after_gtid` as a `/query` read is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// The transaction's isolation level (the server's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
    /// With `read_only` only: as in `QueryRequest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// With `read_only` only: as in `QueryRequest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_gtid: Option<String>,
}

/// A transaction's isolation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    ReadUncommitted,
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

impl Isolation {
    /// The level as SQL names it (`SET TRANSACTION ISOLATION LEVEL …`).
    pub fn sql(self) -> &'static str {
        match self {
            Isolation::ReadUncommitted => "READ UNCOMMITTED",
            Isolation::ReadCommitted => "READ COMMITTED",
            Isolation::RepeatableRead => "REPEATABLE READ",
            Isolation::Serializable => "SERIALIZABLE",
        }
    }
}

/// The limits `prepare_query`, `prepare_transaction` and `prepare_batch` apply.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_params: usize,
    pub max_tx_statements: usize,
    pub max_batch_sets: usize,
}

/// Checks a `/query` body for a key with `role` (both services): its `after_gtid`, `database`
/// and statement. Returns the statement as it will run.
pub fn prepare_query(
    classifier: &Classifier,
    role: Role,
    req: &QueryRequest,
    limits: &Limits,
) -> Result<Prepared, ApiError> {
    if let Some(g) = &req.after_gtid {
        check_gtid(g)?;
    }
    if let Some(db) = &req.database {
        db.check_policy()?;
    }
    prepare_for(classifier, role, &req.sql, &req.params, limits.max_params)
}

/// Checks a `/transaction` body for a key with `role` (both services): 1 to
/// `max_tx_statements` statements, each allowed in a transaction and to the key; with
/// `read_only`, each a read; `mode` and `after_gtid` only with `read_only`. An error about a
/// statement names its index.
pub fn prepare_transaction(
    classifier: &Classifier,
    role: Role,
    req: &TransactionRequest,
    limits: &Limits,
) -> Result<Vec<Prepared>, ApiError> {
    let max = limits.max_tx_statements;
    if req.statements.is_empty() || req.statements.len() > max {
        return Err(bad(format!("a transaction holds 1 to {max} statements")));
    }
    let read_only = req.read_only.unwrap_or(false);
    if !read_only && (req.mode.is_some() || req.after_gtid.is_some()) {
        return Err(bad(
            "mode and after_gtid choose a worker, which only a read_only transaction may use",
        ));
    }
    if let Some(g) = &req.after_gtid {
        check_gtid(g)?;
    }
    if let Some(db) = &req.database {
        db.check_policy()?;
    }
    if req.isolation == Some(Isolation::Serializable) {
        // InnoDB makes every plain SELECT of a SERIALIZABLE transaction a locking read.
        if read_only {
            return Err(bad(
                "serializable makes every read a locking read: not in a read_only transaction",
            ));
        }
        if role < Role::Write {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "a read key may not take locks, and serializable makes every read a locking read",
            ));
        }
    }
    req.statements
        .iter()
        .enumerate()
        .map(|(i, s)| {
            prepare_in_transaction(classifier, role, s, read_only, limits)
                .map_err(|e| e.with_statement_index(i))
        })
        .collect()
}

/// One statement of a `/transaction`, checked as `prepare_transaction` says.
fn prepare_in_transaction(
    classifier: &Classifier,
    role: Role,
    s: &TxStatement,
    read_only: bool,
    limits: &Limits,
) -> Result<Prepared, ApiError> {
    let p = prepare_for(classifier, role, &s.sql, &s.params, limits.max_params)?;
    p.statement().check_in_transaction()?;
    if read_only && p.route() != Route::Read {
        return Err(bad(format!(
            "a read_only transaction holds only reads, and this is not one ({})",
            p.statement()
                .write_reason()
                .unwrap_or("not provably read-only")
        )));
    }
    Ok(p)
}

/// `POST /batch`: one data change run once per parameter set, in one transaction on the
/// manager: every set applied, or none (the RDS Data API's BatchExecuteStatement).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub sql: String,
    /// One `params` per run: each an array (`?`) or an object (`:name`).
    pub param_sets: Vec<Params>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<Database>,
}

/// What one parameter set of a batch did.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SetResult {
    pub rows_affected: u64,
    pub last_insert_id: Option<u64>,
}

/// 200 answer of `POST /batch`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BatchResponse<R = String> {
    pub request_id: String,
    pub node: String,
    pub role: R,
    /// One per parameter set, in order.
    pub results: Vec<SetResult>,
    /// The committed transaction's GTID, for a later read's `after_gtid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
    pub duration_ms: f64,
}

/// Checks a `/batch` body for a key with `role` (both services): 1 to `max_batch_sets` sets, a
/// data change (INSERT, UPDATE, DELETE, REPLACE) the key may send, each set matching its
/// placeholders. Returns one prepared statement per set; an error about a set names its index
/// (`error.statement_index`).
pub fn prepare_batch(
    classifier: &Classifier,
    role: Role,
    req: &BatchRequest,
    limits: &Limits,
) -> Result<Vec<Prepared>, ApiError> {
    let max = limits.max_batch_sets;
    if req.param_sets.is_empty() || req.param_sets.len() > max {
        return Err(bad(format!("a batch holds 1 to {max} param_sets")));
    }
    if let Some(db) = &req.database {
        db.check_policy()?;
    }
    // The text is classified once for the whole batch; each set is only bound.
    let named = matches!(req.param_sets[0], Params::Named(_));
    let (statement, names) = classify(classifier, &req.sql, named, limits.max_params)?;
    statement.check_role(role)?;
    if statement.category() != crate::statement::Category::Dml {
        return Err(bad(
            "a batch runs one data change (INSERT, UPDATE, DELETE, REPLACE); \
             send reads to /query and other statements on their own",
        ));
    }
    let account = statement.account().min(role);
    let statement = std::sync::Arc::new(statement);
    req.param_sets
        .iter()
        .enumerate()
        .map(|(i, params)| {
            let params = bind(
                &statement,
                names.as_deref(),
                params,
                &req.sql,
                limits.max_params,
            )
            .map_err(|e| e.with_statement_index(i))?;
            Ok(Prepared {
                statement: statement.clone(),
                params,
                account,
            })
        })
        .collect()
}

/// Header carrying the internal token the gatekeeper proves itself with (`PROXY_TOKEN`).
pub const TOKEN_HEADER: &str = "X-Sqlgate-Token";
/// Header carrying the role (`read`, `write`, `admin`) of the key the gatekeeper authenticated;
/// the internal token vouches for it. The proxy runs each statement as the lesser of this role
/// and what the statement needs.
pub const ROLE_HEADER: &str = "X-Sqlgate-Role";
/// Header carrying the request id (the body's, or one the gatekeeper made when it has none).
pub const REQUEST_ID_HEADER: &str = "X-Request-Id";
/// Header carrying the authenticated key's id (never the key), so the proxy's log names it too.
pub const KEY_ID_HEADER: &str = "X-Sqlgate-Key-Id";
/// Response header naming the node that executed the statement.
pub const NODE_HEADER: &str = "X-Sqlgate-Node";

/// A result column: its name and the MySQL type name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

/// The outcome of one statement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct StatementResult {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
    pub rows_affected: u64,
    pub last_insert_id: Option<u64>,
}

/// The role of the node that ran a statement, as responses name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// The primary: every write, and reads that fell back to it.
    Manager,
    /// A replica.
    Worker,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Manager => "manager",
            NodeRole::Worker => "worker",
        }
    }
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// `QueryResponse` and `TransactionResponse` take their `kind` and `role` types as parameters: the
// proxy answers with the typed ones (`Typed…`); a client that must also read other servers'
// answers (the load generator reads the seed design's) reads them as strings. One struct for
// both keeps the JSON the same by construction (tested below).

/// 200 answer of `POST /query`. `kind` is a `Route` (`read`: may run on a worker; `write`: the
/// manager) and `role` a `NodeRole`: use `TypedQueryResponse`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueryResponse<K = String, R = String, T = StatementResult> {
    pub request_id: String,
    /// `read` or `write`: where the classifier sent it.
    pub kind: K,
    pub mode: Mode,
    pub node: String,
    /// `manager` or `worker`: the role of `node`.
    pub role: R,
    /// Why a read ran on the manager although the mode picks workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    #[serde(flatten)]
    pub result: T,
    /// After a write: the manager's GTID position including it, for `after_gtid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
    pub duration_ms: f64,
}

/// 200 answer of `POST /transaction`; `role` is the manager's `NodeRole`: use
/// `TypedTransactionResponse`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TransactionResponse<R = String, T = StatementResult> {
    pub request_id: String,
    pub node: String,
    pub role: R,
    /// Why a read_only transaction did not run on a worker as its mode asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    pub results: Vec<T>,
    /// After a transaction that wrote: its GTID, for a later read's `after_gtid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
    pub duration_ms: f64,
}

/// The answer of `POST /query` with its `kind` and `role` typed.
pub type TypedQueryResponse = QueryResponse<Route, NodeRole, ShapedResult>;
/// The answer of `POST /transaction` with its `role` typed.
pub type TypedTransactionResponse = TransactionResponse<NodeRole, ShapedResult>;
/// The answer of `POST /batch` with its `role` typed.
pub type TypedBatchResponse = BatchResponse<NodeRole>;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, msg)
}

/// Parses a JSON body into `T`, mapping every failure to a 400 that says what is wrong.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid request body: {e}")))
}

/// Checks a client-supplied request id: short, printable, no spaces (it ends up in logs).
pub fn check_request_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "request_id must be 1 to {MAX_REQUEST_ID_LEN} characters of [A-Za-z0-9-_.:/]"
        )))
    }
}

/// Longest accepted `after_gtid`.
pub const MAX_GTID_LEN: usize = 4096;

/// Checks an `after_gtid`: a MariaDB (`0-1-42,1-2-7`) or MySQL (`uuid:1-42,…`) GTID list.
pub fn check_gtid(gtid: &str) -> Result<(), ApiError> {
    let ok = !gtid.trim().is_empty()
        && gtid.len() <= MAX_GTID_LEN
        && gtid
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b"-:,\n ".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "after_gtid must be a GTID list of at most {MAX_GTID_LEN} characters (as in a write's `gtid`)"
        )))
    }
}

fn invalid_params(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidParams, msg)
}

/// Checks the number of `params` (at most `max`) and turns each into the value to bind
/// (`Param::from_json`: scalars, typed values), positional ones in their order.
pub fn check_params(params: &[Value], max: usize) -> Result<Vec<Param>, ApiError> {
    check_count(params.len(), max)?;
    params
        .iter()
        .enumerate()
        .map(|(i, v)| Param::from_json(v).map_err(|e| invalid_params(format!("params[{i}]: {e}"))))
        .collect()
}

fn check_count(given: usize, max: usize) -> Result<(), ApiError> {
    if given > max {
        return Err(invalid_params(format!(
            "{given} params given, at most {max} allowed"
        )));
    }
    Ok(())
}

/// Most bytes the values bound to one statement may add up to. A `:name` used many times binds
/// its value each time, so named params could otherwise turn a small body into gigabytes.
pub const MAX_BOUND_BYTES: usize = 4 << 20;

/// Classifies `sql` for params of the kind given (`named`: `:name` placeholders, rewritten to
/// `?` by `lexer::rewrite_named`, never inside literals or comments; the rewritten text is what
/// is classified, and later sent). Returns the statement and, for named params, the name each
/// placeholder stands for.
fn classify(
    classifier: &Classifier,
    sql: &str,
    named: bool,
    max_params: usize,
) -> Result<(Statement, Option<Vec<String>>), ApiError> {
    if !named {
        return Ok((classifier.parse(sql)?, None));
    }
    let rewritten = crate::lexer::rewrite_named(sql)
        .map_err(|e| crate::statement::SqlError::Ambiguous(e.to_string()))?;
    if rewritten.names.len() > max_params {
        return Err(invalid_params(format!(
            "the statement has {} named placeholders, at most {max_params} allowed",
            rewritten.names.len()
        )));
    }
    let stmt = classifier.parse(&rewritten.sql)?;
    if stmt.placeholders() != rewritten.names.len() {
        return Err(invalid_params(
            "the statement mixes ? and :name placeholders: use one kind",
        ));
    }
    Ok((stmt, Some(rewritten.names)))
}

/// The values to bind, in placeholder order, for a statement `classify` returned (`names`), or
/// what is wrong with `params`.
fn bind(
    stmt: &Statement,
    names: Option<&[String]>,
    params: &Params,
    original_sql: &str,
    max_params: usize,
) -> Result<Vec<Param>, ApiError> {
    match (params, names) {
        (Params::Positional(values), None) => {
            let bound = check_params(values, max_params)?;
            // `:name` placeholders with an array (or none) are refused whatever the count: the
            // server would read them as a syntax error, and the count says nothing useful.
            let named = original_sql
                .contains(':')
                .then(|| crate::lexer::rewrite_named(original_sql).ok())
                .flatten()
                .and_then(|n| n.names.into_iter().next());
            if let Some(n) = named {
                return Err(invalid_params(format!(
                    "the statement uses :{n}: send params as an object"
                )));
            }
            if stmt.placeholders() != values.len() {
                return Err(invalid_params(format!(
                    "the statement has {} placeholders but {} params were given",
                    stmt.placeholders(),
                    values.len()
                )));
            }
            Ok(bound)
        }
        (Params::Named(entries), Some(names)) => {
            check_count(entries.len(), max_params)?;
            if let Some((extra, _)) = entries.iter().find(|(k, _)| !names.contains(k)) {
                return Err(invalid_params(format!(
                    "params names `{extra}`, which the statement does not use"
                )));
            }
            let mut converted: Vec<(&str, Param)> = Vec::with_capacity(entries.len());
            for (k, v) in entries {
                let p =
                    Param::from_json(v).map_err(|e| invalid_params(format!("params.{k}: {e}")))?;
                converted.push((k, p));
            }
            let mut total = 0usize;
            names
                .iter()
                .map(|n| {
                    let (_, p) = converted.iter().find(|(k, _)| k == n).ok_or_else(|| {
                        invalid_params(format!("the statement uses :{n} but params has no `{n}`"))
                    })?;
                    total += p.size();
                    if total > MAX_BOUND_BYTES {
                        return Err(invalid_params(format!(
                            "the values bound add up to more than {MAX_BOUND_BYTES} bytes \
                             (a long value used by many placeholders)"
                        )));
                    }
                    Ok(p.clone())
                })
                .collect()
        }
        (Params::Named(_), None) | (Params::Positional(_), Some(_)) => Err(invalid_params(
            "params must all be arrays (? placeholders) or all objects (:name placeholders)",
        )),
    }
}

/// Classifies `sql` and checks its `params` against the placeholders; returns the statement and
/// the values to bind, in placeholder order. Does not check the key's role: `prepare_for`,
/// which does everything, is the one way in.
fn prepare(
    classifier: &Classifier,
    sql: &str,
    params: &Params,
    max_params: usize,
) -> Result<(Statement, Vec<Param>), ApiError> {
    let named = matches!(params, Params::Named(_));
    if let Params::Named(entries) = params {
        check_count(entries.len(), max_params)?;
    }
    let (stmt, names) = classify(classifier, sql, named, max_params)?;
    let bound = bind(&stmt, names.as_deref(), params, sql, max_params)?;
    Ok((stmt, bound))
}

/// One statement that passed every check for the key that sent it, and the database account it
/// runs as. Only `prepare_for` makes one, so holding a `Prepared` proves the checks were made.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// Shared by the sets of a batch.
    statement: std::sync::Arc<Statement>,
    params: Vec<Param>,
    account: Role,
}

impl Prepared {
    /// The classified statement (its text, route, category).
    pub fn statement(&self) -> &Statement {
        &self.statement
    }

    pub fn sql(&self) -> &str {
        self.statement.sql()
    }

    /// Where it may run: `Read` on any eligible worker, `Write` on the manager.
    pub fn route(&self) -> Route {
        self.statement.route()
    }

    /// The values for the placeholders, in placeholder order, as many as there are.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// The database account the statement runs as: the lesser of what it needs
    /// (`Statement::account`) and the key's role. A `/transaction` runs as the greatest of its
    /// statements' accounts.
    pub fn account(&self) -> Role {
        self.account
    }

    pub fn into_parts(self) -> (std::sync::Arc<Statement>, Vec<Param>) {
        (self.statement, self.params)
    }
}

/// What both services do with every statement before anything else: classify `sql` (lexer
/// check, one statement, deny-list), check `params` (scalars or typed values, at most
/// `max_params`, one per placeholder, named ones by name), check the policy of the key's `role`, and choose the account it runs as.
pub fn prepare_for(
    classifier: &Classifier,
    role: Role,
    sql: &str,
    params: &Params,
    max_params: usize,
) -> Result<Prepared, ApiError> {
    let (statement, params) = prepare(classifier, sql, params, max_params)?;
    statement.check_role(role)?;
    let account = statement.account().min(role);
    Ok(Prepared {
        statement: std::sync::Arc::new(statement),
        params,
        account,
    })
}

/// Defines a string newtype that only holds values `check` accepts; it reads and writes as a
/// plain JSON string, and reading an invalid one fails.
macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        impl $name {
            /// Accepts `s` when it is valid, else the 400 that says why.
            pub fn parse(s: impl Into<String>) -> Result<$name, ApiError> {
                let s = s.into();
                $check(&s)?;
                Ok($name(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = ApiError;

            fn try_from(s: String) -> Result<$name, ApiError> {
                $name::parse(s)
            }
        }

        impl std::str::FromStr for $name {
            type Err = ApiError;

            fn from_str(s: &str) -> Result<$name, ApiError> {
                $name::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

checked_string!(
    /// A request id: 1 to `MAX_REQUEST_ID_LEN` characters of `[A-Za-z0-9-_.:/]`, so it can be
    /// logged and sent as a header as it is.
    RequestId,
    check_request_id
);

checked_string!(
    /// A GTID position as a write's response gives it and a read's `after_gtid` takes it: a
    /// MariaDB (`0-1-42,1-2-7`) or MySQL (`uuid:1-42,…`) GTID list of at most `MAX_GTID_LEN`
    /// characters.
    Gtid,
    check_gtid
);

checked_string!(
    /// A `database`: the default schema of a request's statements, 1 to 64 characters of
    /// `[A-Za-z0-9_$]` (always sent backquoted, so no quoting question arises).
    Database,
    check_database
);

/// Longest schema name MySQL accepts.
pub const MAX_DATABASE_LEN: usize = 64;

/// The schemas no request may make its default: the servers' own. (The proxy also requires an
/// application schema, `PROXY_APP_SCHEMAS`, and the accounts' grants hold without either.)
pub const SYSTEM_SCHEMAS: [&str; 4] = ["mysql", "information_schema", "performance_schema", "sys"];

/// Checks a `database` name's shape.
pub fn check_database(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_DATABASE_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$');
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "database must be 1 to {MAX_DATABASE_LEN} characters of [A-Za-z0-9_$]"
        )))
    }
}

impl Database {
    /// Refuses a server's own schema (403), in both services.
    pub fn check_policy(&self) -> Result<(), ApiError> {
        if SYSTEM_SCHEMAS
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&self.0))
        {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "database `{}` is a system schema; only application schemas may be the default",
                    self.0
                ),
            ));
        }
        Ok(())
    }
}

impl RequestId {
    /// A fresh request id: 16 random hex characters.
    pub fn new() -> RequestId {
        let n: u64 = rand::random();
        RequestId(format!("{n:016x}"))
    }

    /// The client's id when it gave one (checked), else a fresh one.
    pub fn given_or_new(given: Option<String>) -> Result<RequestId, ApiError> {
        given.map_or_else(|| Ok(RequestId::new()), RequestId::parse)
    }
}

impl Default for RequestId {
    /// A fresh id, as `new` (so a missing id is made with `unwrap_or_default`).
    fn default() -> RequestId {
        RequestId::new()
    }
}

/// Converts a 64-bit integer the way the API promises: a JSON number within ±2^53, else a string.
pub fn int_value(n: i128) -> Value {
    const SAFE: i128 = 1 << 53;
    if (-SAFE..=SAFE).contains(&n) {
        if n < 0 {
            Value::from(n as i64)
        } else {
            Value::from(n as u64)
        }
    } else {
        Value::String(n.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_request_shapes() {
        let cases: &[(&str, bool, &str)] = &[
            (r#"{"sql":"SELECT 1"}"#, true, "minimal body"),
            (
                r#"{"sql":"SELECT ?","params":[1,"a",null,true,1.5]}"#,
                true,
                "scalar params",
            ),
            (
                r#"{"sql":"SELECT 1","mode":"ping","request_id":"abc"}"#,
                true,
                "mode and id",
            ),
            (
                r#"{"sql":"SELECT 1","mode":"fastest"}"#,
                false,
                "unknown mode",
            ),
            (r#"{"sql":1}"#, false, "sql not a string"),
            (r#"{"query":"SELECT 1"}"#, false, "missing sql"),
            (r#"{"sql":"SELECT 1","extra":1}"#, false, "unknown field"),
            (
                r#"{"sql":"SELECT ?","params":[18446744073709551615]}"#,
                true,
                "u64 max binds unsigned",
            ),
            (
                r#"{"sql":"SELECT ?","params":[-9223372036854775808]}"#,
                true,
                "i64 min",
            ),
            (
                r#"{"sql":"SELECT ?","params":[18446744073709551616]}"#,
                false,
                "beyond u64",
            ),
            (
                r#"{"sql":"SELECT ?","params":[-9223372036854775809]}"#,
                false,
                "below i64",
            ),
            (
                r#"{"sql":"SELECT ?","params":[1.8e19]}"#,
                true,
                "a double stays a double",
            ),
            (r#"{"sql":"SELECT ?","params":[-0]}"#, true, "minus zero"),
            (r#"[1,2]"#, false, "array body"),
            (r#"{"sql":"SELECT 1""#, false, "truncated JSON"),
            ("\u{0}\u{1}", false, "binary garbage"),
        ];
        for (body, ok, what) in cases {
            let r = parse_json::<QueryRequest>(body.as_bytes());
            assert_eq!(r.is_ok(), *ok, "{what}: {body} -> {r:?}");
            if let Err(e) = r {
                assert_eq!(e.code(), ErrorCode::BadRequest, "{what}");
            }
        }
    }

    #[test]
    fn params_must_be_scalars_and_bounded() {
        assert!(check_params(&[Value::from(1), Value::Null], 2).is_ok());
        assert!(check_params(&[Value::from(1), Value::Null], 1).is_err());
        assert!(check_params(&[serde_json::json!([1])], 5).is_err());
        assert!(check_params(&[serde_json::json!({"a":1})], 5).is_err());
    }

    #[test]
    fn gtid_lists() {
        for ok in [
            "0-1-42",
            "0-1-42,1-2-7",
            "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5,\n3E11FA47-71CA-11E1-9E33-C80AA9429563:1-9",
        ] {
            assert!(check_gtid(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            " ",
            "0-1-42'; DROP",
            "x-y-z",
            &"1".repeat(MAX_GTID_LEN + 1),
        ] {
            assert!(check_gtid(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_ids() {
        assert!(check_request_id("abc-123_x.y:z/1").is_ok());
        assert!(check_request_id("").is_err());
        assert!(check_request_id("has space").is_err());
        assert!(check_request_id("line\nbreak").is_err());
        assert!(check_request_id(&"a".repeat(129)).is_err());
        assert_eq!(RequestId::new().as_str().len(), 16);
    }

    #[test]
    fn integers_beyond_2_pow_53_are_strings() {
        assert_eq!(int_value(7), Value::from(7));
        assert_eq!(int_value(-7), Value::from(-7));
        assert_eq!(int_value(1 << 53), Value::from(1u64 << 53));
        assert_eq!(int_value((1 << 53) + 1), Value::from("9007199254740993"));
        assert_eq!(
            int_value(u64::MAX as i128),
            Value::from("18446744073709551615")
        );
        assert_eq!(
            int_value(i64::MIN as i128),
            Value::from("-9223372036854775808")
        );
    }

    #[test]
    fn request_ids_are_checked_strings() {
        let id = RequestId::parse("abc-123_x.y:z/1").unwrap();
        assert_eq!(id.as_str(), "abc-123_x.y:z/1");
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""abc-123_x.y:z/1""#);
        let back: RequestId = serde_json::from_str(r#""abc-123_x.y:z/1""#).unwrap();
        assert_eq!(back, id);
        for bad in [r#""""#, r#""has space""#, r#""a\nb""#, "7", "null"] {
            assert!(serde_json::from_str::<RequestId>(bad).is_err(), "{bad}");
        }
        assert_eq!(
            RequestId::parse("x y").unwrap_err().code(),
            ErrorCode::BadRequest
        );
        let fresh = RequestId::new();
        assert_eq!(fresh.as_str().len(), 16);
        assert!(
            RequestId::parse(fresh.as_str()).is_ok(),
            "a fresh id is valid"
        );
        assert_ne!(fresh, RequestId::new());
        assert_eq!(
            RequestId::given_or_new(Some("given".into()))
                .unwrap()
                .as_str(),
            "given"
        );
        assert!(RequestId::given_or_new(Some("".into())).is_err());
        assert_eq!(RequestId::given_or_new(None).unwrap().as_str().len(), 16);
        assert_eq!("k:1".parse::<RequestId>().unwrap().to_string(), "k:1");
    }

    #[test]
    fn gtids_are_checked_strings() {
        let g: Gtid = serde_json::from_str(r#""0-1-42,1-2-7""#).unwrap();
        assert_eq!(g.as_str(), "0-1-42,1-2-7");
        assert_eq!(
            serde_json::to_value(&g).unwrap(),
            Value::from("0-1-42,1-2-7")
        );
        for bad in [r#""""#, r#""0-1-42'; DROP""#, "42"] {
            assert!(serde_json::from_str::<Gtid>(bad).is_err(), "{bad}");
        }
        assert!(Gtid::parse("x-y-z").is_err());
    }

    #[test]
    fn rows_as_objects_keep_every_column() {
        let col = |n: &str| Column {
            name: n.into(),
            type_name: "LONG".into(),
        };
        let result = StatementResult {
            columns: vec![col("id"), col("id"), col("id:2"), col("name")],
            rows: vec![vec![
                Value::from(1),
                Value::from(2),
                Value::from(3),
                Value::from("x"),
            ]],
            rows_affected: 0,
            last_insert_id: None,
        };
        assert_eq!(
            object_keys(&result.columns),
            ["id", "id:3", "id:2", "name"],
            "a repeated name gets the first free suffix; a real column keeps its own name"
        );
        let objects = RowShape::new(Some(RowFormat::Objects), Some(false)).render(result.clone());
        assert_eq!(objects.columns, None, "no metadata");
        assert_eq!(
            serde_json::to_value(&objects.rows).unwrap(),
            serde_json::json!([{"id": 1, "id:3": 2, "id:2": 3, "name": "x"}])
        );
        let arrays = RowShape::default().render(result.clone());
        assert_eq!(arrays.columns.as_deref(), Some(&result.columns[..]));
        assert_eq!(
            serde_json::to_value(&arrays.rows).unwrap(),
            serde_json::json!([[1, 2, 3, "x"]]),
            "the default is today's arrays"
        );
        let bad = r#"{"sql": "SELECT 1", "format": "table"}"#;
        assert!(parse_json::<QueryRequest>(bad.as_bytes()).is_err());
        let bad = r#"{"sql": "SELECT 1", "include_metadata": "no"}"#;
        assert!(parse_json::<QueryRequest>(bad.as_bytes()).is_err());
    }

    #[test]
    fn typed_responses_write_the_same_json() {
        // The example of docs/api.md (and README.md), as the proxy writes it today.
        let text = r#"{"request_id":"5f0c","kind":"read","mode":"random","node":"worker-2","role":"worker","columns":[{"name":"first_name","type":"VAR_STRING"}],"rows":[["GRACE"]],"rows_affected":0,"last_insert_id":null,"duration_ms":0.61}"#;
        let untyped: QueryResponse = serde_json::from_str(text).unwrap();
        let typed: TypedQueryResponse = serde_json::from_str(text).unwrap();
        assert_eq!((typed.kind, typed.role), (Route::Read, NodeRole::Worker));
        assert_eq!(serde_json::to_string(&typed).unwrap(), text);
        assert_eq!(serde_json::to_string(&untyped).unwrap(), text);
        let write = text
            .replace(r#""kind":"read""#, r#""kind":"write""#)
            .replace(r#""role":"worker""#, r#""role":"manager""#);
        let typed: TypedQueryResponse = serde_json::from_str(&write).unwrap();
        assert_eq!((typed.kind, typed.role), (Route::Write, NodeRole::Manager));
        assert_eq!(serde_json::to_string(&typed).unwrap(), write);
        assert!(serde_json::from_str::<TypedQueryResponse>(
            &text.replace(r#""role":"worker""#, r#""role":"replica""#)
        )
        .is_err());

        let tx = r#"{"request_id":"t","node":"manager","role":"manager","results":[],"duration_ms":1.5}"#;
        let typed: TypedTransactionResponse = serde_json::from_str(tx).unwrap();
        assert_eq!(typed.role, NodeRole::Manager);
        assert_eq!(serde_json::to_string(&typed).unwrap(), tx);
        for r in [NodeRole::Manager, NodeRole::Worker] {
            assert_eq!(serde_json::to_value(r).unwrap(), Value::from(r.as_str()));
        }
    }

    #[test]
    fn prepare_for_checks_everything_and_chooses_the_account() {
        let c = Classifier::new(1024, 16);
        let ok =
            |role, sql: &str, params: Vec<Value>| prepare_for(&c, role, sql, &params.into(), 3);
        let p = ok(Role::Admin, "SELECT ?", vec![Value::from(1)]).unwrap();
        assert_eq!(
            p.account(),
            Role::Read,
            "a provable read runs as read, whoever asks"
        );
        assert_eq!(
            (p.route(), p.sql(), p.params()),
            (Route::Read, "SELECT ?", &[crate::params::Param::Int(1)][..])
        );
        let p = ok(Role::Admin, "INSERT INTO app.t VALUES (1)", vec![]).unwrap();
        assert_eq!((p.account(), p.route()), (Role::Write, Route::Write));
        let p = ok(Role::Admin, "CREATE TABLE app.t2 (id INT)", vec![]).unwrap();
        assert_eq!(p.account(), Role::Admin);
        let p = ok(Role::Write, "SELECT * FROM app.t FOR UPDATE", vec![]).unwrap();
        assert_eq!(p.account(), Role::Write);
        let cases: &[(Role, &str, Vec<Value>, ErrorCode)] = &[
            (
                Role::Read,
                "INSERT INTO app.t VALUES (1)",
                vec![],
                ErrorCode::Forbidden,
            ),
            (
                Role::Write,
                "DROP TABLE app.t",
                vec![],
                ErrorCode::Forbidden,
            ),
            (Role::Read, "SHOW PROCESSLIST", vec![], ErrorCode::Forbidden),
            (
                Role::Admin,
                "SET @a = 1",
                vec![],
                ErrorCode::StatementDenied,
            ),
            (
                Role::Admin,
                "SELECT 1; SELECT 2",
                vec![],
                ErrorCode::InvalidSql,
            ),
            (
                Role::Admin,
                "SELECT /*! 1 */",
                vec![],
                ErrorCode::AmbiguousSql,
            ),
            (Role::Admin, "SELECT ?", vec![], ErrorCode::InvalidParams),
            // Found by schemathesis (make api-contract): `:name` with no params reached the
            // driver, which read it as a placeholder (503 instead of 400).
            (Role::Admin, "SELECT :a", vec![], ErrorCode::InvalidParams),
            (
                Role::Admin,
                "INSERT INTO app.t VALUES (:a, ?)",
                vec![Value::from(1)],
                ErrorCode::InvalidParams,
            ),
            (
                Role::Admin,
                "SELECT 1",
                vec![Value::from(1)],
                ErrorCode::InvalidParams,
            ),
            (
                Role::Admin,
                "SELECT ?",
                vec![serde_json::json!([1])],
                ErrorCode::InvalidParams,
            ),
            (
                Role::Admin,
                "SELECT ?,?,?,?",
                vec![Value::Null; 4],
                ErrorCode::InvalidParams,
            ),
        ];
        for (role, sql, params, want) in cases {
            let e = ok(*role, sql, params.clone()).unwrap_err();
            assert_eq!(e.code(), *want, "{role:?} {sql}: {e}");
        }
    }

    #[test]
    fn duplicate_and_unknown_keys_are_refused() {
        // The gatekeeper forwards the bytes it validated: the proxy, parsing them with the same
        // function, must never see a field the gatekeeper did not (see docs/decisions.md).
        for body in [
            r#"{"sql":"SELECT 1","sql":"DROP TABLE app.t"}"#,
            r#"{"sql":"SELECT ?","params":[1],"params":[2]}"#,
            r#"{"sql":"SELECT 1","mode":"direct","mode":"random"}"#,
            r#"{"sql":"SELECT 1","request_id":"a","request_id":"b"}"#,
            r#"{"sql":"SELECT 1","after_gtid":"0-1-1","after_gtid":"0-1-2"}"#,
            r#"{"sql":"SELECT 1"} {"sql":"DROP TABLE app.t"}"#,
            r#"{"sql":"SELECT 1","SQL":"DROP TABLE app.t"}"#,
            r#"{"sql":"SELECT 1","sql":"DROP TABLE app.t"}"#,
        ] {
            assert!(
                parse_json::<QueryRequest>(body.as_bytes()).is_err(),
                "{body}"
            );
        }
        for body in [
            r#"{"statements":[{"sql":"SELECT 1"}],"statements":[{"sql":"DROP TABLE app.t"}]}"#,
            r#"{"statements":[{"sql":"SELECT 1","sql":"DROP TABLE app.t"}]}"#,
        ] {
            assert!(
                parse_json::<TransactionRequest>(body.as_bytes()).is_err(),
                "{body}"
            );
        }
    }

    #[test]
    fn named_params_cannot_multiply_a_body() {
        let c = Classifier::new(1 << 20, 16);
        let many = format!("SELECT 1{}", ",:a".repeat(1001));
        let one: Params = serde_json::from_str(r#"{"a": "x"}"#).unwrap();
        let e = prepare_for(&c, Role::Read, &many, &one, 1000).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidParams, "{e}");
        let sql = format!("SELECT 1{}", ",:a".repeat(1000));
        let long: Params =
            serde_json::from_value(serde_json::json!({"a": "x".repeat(MAX_BOUND_BYTES / 999)}))
                .unwrap();
        let e = prepare_for(&c, Role::Read, &sql, &long, 1000).unwrap_err();
        assert!(e.detail.message.contains("add up"), "{e}");
        assert!(prepare_for(&c, Role::Read, &sql, &one, 1000).is_ok());
    }

    #[test]
    fn a_batch_is_classified_once_and_shares_its_statement() {
        // Past the classifier cache's text size: classifying per set would parse it 1000 times.
        let c = Classifier::new(1 << 20, 16);
        let sql = format!("INSERT INTO app.t (a) VALUES (?){}", ",(1)".repeat(2000));
        let req = BatchRequest {
            sql,
            param_sets: (0..1000)
                .map(|i| Params::Positional(vec![Value::from(i)]))
                .collect(),
            request_id: None,
            database: None,
        };
        let limits = Limits {
            max_params: 10,
            max_tx_statements: 10,
            max_batch_sets: 1000,
        };
        let p = prepare_batch(&c, Role::Write, &req, &limits).unwrap();
        assert_eq!(p.len(), 1000);
        assert!(std::sync::Arc::ptr_eq(&p[0].statement, &p[999].statement));
        assert_eq!(p[999].params(), &[Param::Int(999)]);
        let mut mixed = req.clone();
        mixed.param_sets[5] = serde_json::from_str(r#"{"a": 1}"#).unwrap();
        let e = prepare_batch(&c, Role::Write, &mixed, &limits).unwrap_err();
        assert_eq!(
            (e.code(), e.detail.statement_index),
            (ErrorCode::InvalidParams, Some(5))
        );
        let e = prepare_batch(&c, Role::Read, &req, &limits).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Forbidden);
    }

    #[test]
    fn serializable_takes_locks_so_a_read_key_may_not() {
        let c = Classifier::new(1024, 16);
        let limits = Limits {
            max_params: 10,
            max_tx_statements: 10,
            max_batch_sets: 10,
        };
        let tx = |extra: &str| -> TransactionRequest {
            parse_json(format!(r#"{{"statements": [{{"sql": "SELECT 1"}}]{extra}}}"#).as_bytes())
                .unwrap()
        };
        let serial = tx(r#", "isolation": "serializable""#);
        let e = prepare_transaction(&c, Role::Read, &serial, &limits).unwrap_err();
        assert_eq!(e.code(), ErrorCode::Forbidden);
        assert!(prepare_transaction(&c, Role::Write, &serial, &limits).is_ok());
        let ro = tx(r#", "isolation": "serializable", "read_only": true"#);
        let e = prepare_transaction(&c, Role::Admin, &ro, &limits).unwrap_err();
        assert_eq!(e.code(), ErrorCode::BadRequest);
        let rc = tx(r#", "isolation": "read_committed", "read_only": true"#);
        assert!(prepare_transaction(&c, Role::Read, &rc, &limits).is_ok());
    }

    #[test]
    fn modes_round_trip() {
        for m in Mode::ALL {
            assert_eq!(Mode::parse(m.as_str()), Some(m));
            assert_eq!(serde_json::to_value(m).unwrap(), Value::from(m.as_str()));
        }
    }
}
