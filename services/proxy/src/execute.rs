//! Runs one statement on a connection and turns its result into the API's JSON values.

use crate::config::Limits;
use base64::Engine;
use mysql::consts::ColumnType as T;
use mysql::prelude::{Protocol, Queryable};
use mysql::{Params, QueryResult};
use serde_json::Value as Json;
use sqlgate::wire::{int_value, Column, StatementResult};

/// The character set number MySQL uses for binary strings.
const BINARY_CHARSET: u16 = 63;

/// Why a statement did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The server refused or failed the statement; the connection is still usable.
    #[error("{message}")]
    Sql {
        code: u16,
        state: String,
        message: String,
    },
    /// The statement ran past the server's statement time limit.
    #[error("statement exceeded the time limit: {0}")]
    Timeout(String),
    /// The proxy's deadline passed while waiting for the server: the statement may still be
    /// running there, so the connection must be killed (`PooledConn::kill`).
    #[error("no answer within the proxy's deadline: {0}")]
    Deadline(String),
    /// A `/transaction` passed its deadline: its connection was killed, so nothing of it was
    /// committed.
    #[error("the transaction exceeded its time limit")]
    TransactionDeadline,
    /// The result exceeded a row or byte limit.
    #[error("{0}")]
    TooLarge(String),
    /// The connection failed (I/O, protocol): the connection must be discarded.
    #[error("connection failed: {0}")]
    Connection(String),
}

/// Server error numbers for a statement stopped by its time limit (MariaDB, MySQL).
const TIMEOUT_CODES: [u16; 2] = [1969, 3024];

impl From<mysql::Error> for ExecError {
    fn from(e: mysql::Error) -> Self {
        match e {
            mysql::Error::MySqlError(m) if TIMEOUT_CODES.contains(&m.code) => {
                ExecError::Timeout(m.message)
            }
            mysql::Error::MySqlError(m) => ExecError::Sql {
                code: m.code,
                state: m.state,
                message: m.message,
            },
            mysql::Error::IoError(io) if is_deadline(&io) => ExecError::Deadline(io.to_string()),
            // The driver wraps some socket errors in its codec error, which it does not
            // export: find the I/O error underneath.
            mysql::Error::CodecError(c)
                if std::error::Error::source(&c)
                    .and_then(|s| s.downcast_ref::<std::io::Error>())
                    .is_some_and(is_deadline) =>
            {
                ExecError::Deadline(c.to_string())
            }
            other => ExecError::Connection(other.to_string()),
        }
    }
}

/// A socket read timeout: `WouldBlock` (EAGAIN) or `TimedOut`, depending on the platform.
fn is_deadline(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// ER_UNSUPPORTED_PS: the server parsed the text as one statement of a kind it cannot prepare.
const UNSUPPORTED_PS: u16 = 1295;

impl ExecError {
    /// Whether the connection must not go back to the pool.
    pub fn breaks_connection(&self) -> bool {
        matches!(self, ExecError::Connection(_) | ExecError::Deadline(_))
    }
}

/// Converts JSON params to MySQL values (shape already checked: scalars only).
pub fn bind(params: &[Json]) -> Params {
    if params.is_empty() {
        return Params::Empty;
    }
    Params::Positional(
        params
            .iter()
            .map(|p| match p {
                Json::Null => mysql::Value::NULL,
                Json::Bool(b) => mysql::Value::Int(i64::from(*b)),
                Json::Number(n) => n
                    .as_i64()
                    .map(mysql::Value::Int)
                    .or_else(|| n.as_u64().map(mysql::Value::UInt))
                    .unwrap_or_else(|| mysql::Value::Double(n.as_f64().unwrap_or(0.0))),
                Json::String(s) => mysql::Value::Bytes(s.clone().into_bytes()),
                Json::Array(_) | Json::Object(_) => mysql::Value::NULL,
            })
            .collect(),
    )
}

/// The manager's GTID position after a write on `conn`, for read-your-writes.
pub fn gtid_after_write(conn: &mut crate::pool::PooledConn) -> Result<Option<String>, ExecError> {
    let sql = match conn.flavor {
        // The session's own last GTID.
        crate::pool::Flavor::MariaDb => "SELECT @@last_gtid",
        // Everything executed so far: a superset of this session's write, so waiting for it is
        // safe (if sometimes a little longer than needed).
        crate::pool::Flavor::MySql => "SELECT @@global.gtid_executed",
    };
    let gtid: Option<String> = conn.conn.query_first(sql)?;
    Ok(gtid.filter(|g| !g.trim().is_empty()))
}

/// Waits until the replica behind `conn` has applied `gtid`, at most `timeout`. Returns false on
/// timeout.
pub fn wait_for_gtid(
    conn: &mut crate::pool::PooledConn,
    gtid: &str,
    timeout: std::time::Duration,
) -> Result<bool, ExecError> {
    let sql = match conn.flavor {
        crate::pool::Flavor::MariaDb => "SELECT MASTER_GTID_WAIT(?, ?)",
        crate::pool::Flavor::MySql => "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?)",
    };
    let r: Option<i64> = conn.conn.exec_first(sql, (gtid, timeout.as_secs_f64()))?;
    // MariaDB: 0 reached, -1 timed out; MySQL: 0 reached, 1 timed out.
    Ok(r == Some(0))
}

/// ER_CANT_CHANGE_TX_CHARACTERISTICS: `SET TRANSACTION` while a transaction is in progress.
const TX_IN_PROGRESS: u16 = 1568;

/// Whether the session still has a transaction open. Both flavours refuse `SET TRANSACTION`
/// inside an open transaction and accept it outside one (where it only shapes the next
/// transaction, and the connection is reset after the request anyway); neither offers a
/// portable variable for it (`@@in_transaction` is MariaDB's alone) and the driver keeps the
/// server's status flags private.
pub fn in_transaction<Q: Queryable>(q: &mut Q) -> Result<bool, ExecError> {
    match q.query_drop("SET TRANSACTION READ WRITE") {
        Ok(()) => Ok(false),
        Err(mysql::Error::MySqlError(e)) if e.code == TX_IN_PROGRESS => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// A statement's result, and roughly how many bytes the server sent for it (packet headers,
/// column definitions, values), which the pool's recycling budget counts.
pub struct Executed {
    pub result: StatementResult,
    pub received: usize,
}

/// Runs `sql` with `params` as a prepared statement. The driver always offers the
/// multi-statement capability, but COM_STMT_PREPARE takes exactly one statement whatever the
/// connection allows: the server itself refuses a hidden second one (docs/security.md,
/// layer 2). A statement the server parsed as one but cannot prepare (ER_UNSUPPORTED_PS, some
/// admin statements on MySQL) runs as text when it has no params.
pub fn run<Q: Queryable>(
    q: &mut Q,
    sql: &str,
    params: &[Json],
    limits: &Limits,
) -> Result<Executed, ExecError> {
    match q.prep(sql) {
        Ok(stmt) => collect(q.exec_iter(&stmt, bind(params))?, limits),
        Err(mysql::Error::MySqlError(e)) if e.code == UNSUPPORTED_PS && params.is_empty() => {
            collect(q.query_iter(sql)?, limits)
        }
        Err(e) => Err(e.into()),
    }
}

fn collect<P: Protocol>(
    mut result: QueryResult<'_, '_, '_, P>,
    limits: &Limits,
) -> Result<Executed, ExecError> {
    let mut out = StatementResult::default();
    let mut bytes = 0usize;
    // An OK-only result (INSERT, UPDATE…) carries its counts before iteration moves past it.
    out.rows_affected = result.affected_rows();
    out.last_insert_id = result.last_insert_id().filter(|id| *id != 0);
    if let Some(mut set) = result.iter() {
        let cols = set.columns();
        let meta: Vec<(T, u16, u8)> = cols
            .as_ref()
            .iter()
            .map(|c| (c.column_type(), c.character_set(), c.decimals()))
            .collect();
        out.columns = cols
            .as_ref()
            .iter()
            .map(|c| Column {
                name: c.name_str().into_owned(),
                type_name: type_name(c.column_type(), c.character_set()),
            })
            .collect();
        for row in set.by_ref() {
            let row = row?;
            if out.rows.len() >= limits.max_rows {
                return Err(ExecError::TooLarge(format!(
                    "result has more than {} rows; add a LIMIT",
                    limits.max_rows
                )));
            }
            let values = row.unwrap();
            let mut json_row = Vec::with_capacity(values.len());
            for (v, (ty, cs, decimals)) in values.into_iter().zip(meta.iter()) {
                bytes += value_size(&v);
                json_row.push(to_json(v, *ty, *cs, *decimals));
            }
            if bytes > limits.max_result_bytes {
                return Err(ExecError::TooLarge(format!(
                    "result exceeds {} bytes",
                    limits.max_result_bytes
                )));
            }
            out.rows.push(json_row);
        }
        if !out.columns.is_empty() {
            out.rows_affected = set.affected_rows();
            out.last_insert_id = set.last_insert_id().filter(|id| *id != 0);
        }
    }
    // Further result sets (a CALL's status, say) are drained when `result` drops.
    let received = 128 + out.columns.len() * 64 + out.rows.len() * 8 + bytes;
    Ok(Executed {
        result: out,
        received,
    })
}

fn value_size(v: &mysql::Value) -> usize {
    match v {
        mysql::Value::Bytes(b) => b.len(),
        _ => 8,
    }
}

fn is_string_type(t: T) -> bool {
    matches!(
        t,
        T::MYSQL_TYPE_VARCHAR
            | T::MYSQL_TYPE_VAR_STRING
            | T::MYSQL_TYPE_STRING
            | T::MYSQL_TYPE_TINY_BLOB
            | T::MYSQL_TYPE_MEDIUM_BLOB
            | T::MYSQL_TYPE_LONG_BLOB
            | T::MYSQL_TYPE_BLOB
    )
}

/// The type name clients see: the protocol type, with binary strings told apart from text.
pub fn type_name(t: T, charset: u16) -> String {
    if is_string_type(t) {
        let binary = charset == BINARY_CHARSET;
        let name = match (t, binary) {
            (T::MYSQL_TYPE_VAR_STRING | T::MYSQL_TYPE_VARCHAR, true) => "VARBINARY",
            (T::MYSQL_TYPE_STRING, true) => "BINARY",
            (_, true) => "BLOB",
            (T::MYSQL_TYPE_VAR_STRING | T::MYSQL_TYPE_VARCHAR, false) => "VAR_STRING",
            (T::MYSQL_TYPE_STRING, false) => "STRING",
            (_, false) => "TEXT",
        };
        return name.to_string();
    }
    let debug = format!("{t:?}");
    debug.trim_start_matches("MYSQL_TYPE_").to_string()
}

/// Fractional seconds shown with the column's precision (`decimals`), as the text protocol does.
fn frac(us: u32, decimals: u8) -> String {
    let digits = usize::from(decimals.min(6));
    if digits == 0 {
        String::new()
    } else {
        format!(".{us:06}")[..=digits].to_string()
    }
}

/// Converts one value as the API promises: integers as numbers (strings past ±2^53), DECIMAL
/// as strings, dates and times as ISO 8601, binary as base64, NULL as null.
pub fn to_json(v: mysql::Value, t: T, charset: u16, decimals: u8) -> Json {
    use mysql::Value as V;
    match v {
        V::NULL => Json::Null,
        V::Int(i) => int_value(i128::from(i)),
        V::UInt(u) => int_value(i128::from(u)),
        V::Float(f) => float(f64::from(f)),
        V::Double(d) => float(d),
        V::Date(y, mo, d, h, mi, s, us) => {
            if t == T::MYSQL_TYPE_DATE {
                Json::String(format!("{y:04}-{mo:02}-{d:02}"))
            } else {
                Json::String(format!(
                    "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{}",
                    frac(us, decimals)
                ))
            }
        }
        V::Time(neg, days, h, mi, s, us) => Json::String(format!(
            "{}{:02}:{mi:02}:{s:02}{}",
            if neg { "-" } else { "" },
            u32::from(h) + days * 24,
            frac(us, decimals)
        )),
        V::Bytes(b) => from_text(b, t, charset),
    }
}

fn float(f: f64) -> Json {
    serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)
}

/// Converts a value sent as text (the text protocol, and DECIMAL/strings in the binary one).
fn from_text(b: Vec<u8>, t: T, charset: u16) -> Json {
    let text = || String::from_utf8_lossy(&b).into_owned();
    match t {
        T::MYSQL_TYPE_TINY
        | T::MYSQL_TYPE_SHORT
        | T::MYSQL_TYPE_INT24
        | T::MYSQL_TYPE_LONG
        | T::MYSQL_TYPE_LONGLONG
        | T::MYSQL_TYPE_YEAR => text()
            .parse::<i128>()
            .map_or_else(|_| Json::String(text()), int_value),
        T::MYSQL_TYPE_FLOAT | T::MYSQL_TYPE_DOUBLE => text()
            .parse::<f64>()
            .map_or_else(|_| Json::String(text()), float),
        T::MYSQL_TYPE_DECIMAL | T::MYSQL_TYPE_NEWDECIMAL => Json::String(text()),
        T::MYSQL_TYPE_DATETIME
        | T::MYSQL_TYPE_DATETIME2
        | T::MYSQL_TYPE_TIMESTAMP
        | T::MYSQL_TYPE_TIMESTAMP2 => Json::String(text().replacen(' ', "T", 1)),
        T::MYSQL_TYPE_BIT => {
            let n = b.iter().fold(0u128, |acc, x| (acc << 8) | u128::from(*x));
            int_value(n as i128)
        }
        T::MYSQL_TYPE_GEOMETRY => {
            Json::String(base64::engine::general_purpose::STANDARD.encode(&b))
        }
        _ if is_string_type(t) && charset == BINARY_CHARSET => {
            Json::String(base64::engine::general_purpose::STANDARD.encode(&b))
        }
        _ => Json::String(text()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql::Value as V;

    #[test]
    fn values_convert_as_documented() {
        let utf8 = 33;
        let cases: Vec<(V, T, u16, u8, Json, &str)> = vec![
            (
                V::Date(2006, 2, 15, 1, 2, 3, 250_000),
                T::MYSQL_TYPE_DATETIME,
                63,
                3,
                Json::from("2006-02-15T01:02:03.250"),
                "DATETIME(3) keeps 3 digits",
            ),
            (V::NULL, T::MYSQL_TYPE_LONG, utf8, 0, Json::Null, "null"),
            (
                V::Bytes(b"42".to_vec()),
                T::MYSQL_TYPE_LONG,
                63,
                0,
                Json::from(42),
                "text int",
            ),
            (
                V::Bytes(b"-7".to_vec()),
                T::MYSQL_TYPE_TINY,
                63,
                0,
                Json::from(-7),
                "text negative",
            ),
            (
                V::Bytes(b"18446744073709551615".to_vec()),
                T::MYSQL_TYPE_LONGLONG,
                63,
                0,
                Json::from("18446744073709551615"),
                "u64 max as string",
            ),
            (
                V::Int(9007199254740993),
                T::MYSQL_TYPE_LONGLONG,
                63,
                0,
                Json::from("9007199254740993"),
                "binary int past 2^53",
            ),
            (
                V::UInt(5),
                T::MYSQL_TYPE_LONGLONG,
                63,
                0,
                Json::from(5),
                "binary uint",
            ),
            (
                V::Bytes(b"12.50".to_vec()),
                T::MYSQL_TYPE_NEWDECIMAL,
                63,
                0,
                Json::from("12.50"),
                "decimal as string",
            ),
            (
                V::Bytes(b"1.5".to_vec()),
                T::MYSQL_TYPE_DOUBLE,
                63,
                0,
                Json::from(1.5),
                "text double",
            ),
            (
                V::Double(2.25),
                T::MYSQL_TYPE_DOUBLE,
                63,
                0,
                Json::from(2.25),
                "binary double",
            ),
            (
                V::Bytes(b"2006-02-15 04:34:33".to_vec()),
                T::MYSQL_TYPE_TIMESTAMP,
                63,
                0,
                Json::from("2006-02-15T04:34:33"),
                "text timestamp",
            ),
            (
                V::Bytes(b"2006-02-15".to_vec()),
                T::MYSQL_TYPE_DATE,
                63,
                0,
                Json::from("2006-02-15"),
                "text date",
            ),
            (
                V::Date(2006, 2, 15, 4, 34, 33, 0),
                T::MYSQL_TYPE_DATETIME,
                63,
                0,
                Json::from("2006-02-15T04:34:33"),
                "binary datetime",
            ),
            (
                V::Date(2006, 2, 15, 0, 0, 0, 0),
                T::MYSQL_TYPE_DATE,
                63,
                0,
                Json::from("2006-02-15"),
                "binary date",
            ),
            (
                V::Date(2006, 2, 15, 1, 2, 3, 500),
                T::MYSQL_TYPE_DATETIME,
                63,
                6,
                Json::from("2006-02-15T01:02:03.000500"),
                "fractional seconds",
            ),
            (
                V::Time(true, 1, 2, 3, 4, 0),
                T::MYSQL_TYPE_TIME,
                63,
                0,
                Json::from("-26:03:04"),
                "negative time",
            ),
            (
                V::Bytes(b"ALICE".to_vec()),
                T::MYSQL_TYPE_VAR_STRING,
                utf8,
                0,
                Json::from("ALICE"),
                "text string",
            ),
            (
                V::Bytes(vec![0, 255, 1]),
                T::MYSQL_TYPE_BLOB,
                63,
                0,
                Json::from("AP8B"),
                "binary as base64",
            ),
            (
                V::Bytes(vec![1]),
                T::MYSQL_TYPE_BIT,
                63,
                0,
                Json::from(1),
                "bit",
            ),
        ];
        for (v, t, cs, decimals, want, what) in cases {
            assert_eq!(to_json(v, t, cs, decimals), want, "{what}");
        }
    }

    #[test]
    fn type_names() {
        assert_eq!(type_name(T::MYSQL_TYPE_VAR_STRING, 33), "VAR_STRING");
        assert_eq!(type_name(T::MYSQL_TYPE_VAR_STRING, 63), "VARBINARY");
        assert_eq!(type_name(T::MYSQL_TYPE_BLOB, 33), "TEXT");
        assert_eq!(type_name(T::MYSQL_TYPE_BLOB, 63), "BLOB");
        assert_eq!(type_name(T::MYSQL_TYPE_LONG, 63), "LONG");
        assert_eq!(type_name(T::MYSQL_TYPE_NEWDECIMAL, 63), "NEWDECIMAL");
    }

    #[test]
    fn params_bind_as_typed_values() {
        let p = bind(&[
            Json::Null,
            Json::from(true),
            Json::from(-3),
            Json::from(u64::MAX),
            Json::from(1.5),
            Json::from("x'; DROP"),
        ]);
        let Params::Positional(v) = p else {
            panic!("positional")
        };
        assert_eq!(
            v,
            vec![
                V::NULL,
                V::Int(1),
                V::Int(-3),
                V::UInt(u64::MAX),
                V::Double(1.5),
                V::Bytes(b"x'; DROP".to_vec())
            ]
        );
    }
}
