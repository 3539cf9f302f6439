//! The database side of one statement: running it on a connection (prepared, bounded by a
//! deadline), reading what the server reported with it (rows, counts, the write's GTID, whether
//! a transaction is open), and turning its values into the API's JSON.

use crate::config::Limits;
use crate::pool::{Flavor, Killer, PooledConn};
use base64::Engine;
use mysql_async::consts::{ColumnType as T, StatusFlags};
use mysql_async::prelude::{Protocol, Queryable};
use mysql_async::{Conn, Params, QueryResult, SessionStateChange};
use serde_json::Value as Json;
use sqlgate::params::Param;
use sqlgate::wire::{int_value, Column, Database, StatementResult};
use std::future::Future;
use std::time::Duration;

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
    /// The proxy's deadline passed: the statement was killed (`within`).
    #[error("no answer within the proxy's deadline")]
    Deadline,
    /// A `/transaction` passed its deadline: its connection was killed, so nothing of it was
    /// committed.
    #[error("the transaction exceeded its time limit")]
    TransactionDeadline,
    /// COMMIT was sent but gave no answer within the statement deadline; the connection was
    /// then killed. The server may have committed: the outcome is unknown.
    #[error("COMMIT got no answer in time; whether it committed is unknown")]
    CommitUnknown,
    /// The result exceeded a row or byte limit.
    #[error("{0}")]
    TooLarge(String),
    /// The connection failed (I/O, protocol): the connection must be discarded.
    #[error("connection failed: {0}")]
    Connection(String),
    /// The client went away while rows were streamed to it: the rest of the result is unread,
    /// so the statement must be killed and the connection discarded.
    #[error("the client went away mid-result")]
    Abandoned,
}

/// Server error numbers for a statement stopped by its time limit (MariaDB, MySQL).
const TIMEOUT_CODES: [u16; 2] = [1969, 3024];

impl From<mysql_async::Error> for ExecError {
    fn from(e: mysql_async::Error) -> Self {
        match e {
            mysql_async::Error::Server(m) if TIMEOUT_CODES.contains(&m.code) => {
                ExecError::Timeout(m.message)
            }
            mysql_async::Error::Server(m) => ExecError::Sql {
                code: m.code,
                state: m.state,
                message: m.message,
            },
            other => ExecError::Connection(other.to_string()),
        }
    }
}

/// ER_UNSUPPORTED_PS: the server parsed the text as one statement of a kind it cannot prepare.
const UNSUPPORTED_PS: u16 = 1295;

/// ER_READ_ONLY_MODE (MySQL's `super_read_only`).
const READ_ONLY_MODE: u16 = 1836;
/// ER_OPTION_PREVENTS_STATEMENT: `--read-only` among others, told apart by its message.
const OPTION_PREVENTS_STATEMENT: u16 = 1290;

impl ExecError {
    /// Whether the server refused the statement because it is read-only: nothing ran (a fenced
    /// primary during a switchover or failover).
    pub fn refused_read_only(&self) -> bool {
        match self {
            ExecError::Sql { code, message, .. } => {
                *code == READ_ONLY_MODE
                    || (*code == OPTION_PREVENTS_STATEMENT
                        && (message.contains("read-only") || message.contains("read_only")))
            }
            _ => false,
        }
    }

    /// Whether the connection must not go back to the pool.
    pub fn breaks_connection(&self) -> bool {
        matches!(
            self,
            ExecError::Connection(_)
                | ExecError::Abandoned
                | ExecError::Deadline
                | ExecError::TransactionDeadline
                | ExecError::CommitUnknown
        )
    }
}

/// Runs `work` (which uses the connection `killer` names) for at most `limit`. When the limit
/// passes, the connection is killed on the server first — the statement stops, an open
/// transaction rolls back — and then `work`'s own outcome is awaited (briefly): if it had
/// completed before the kill (a COMMIT that made it), that is the truth and is returned;
/// otherwise `expired`. The second value says whether the connection was killed.
pub async fn within<T, E>(
    killer: &Killer,
    limit: Duration,
    kill_limit: Duration,
    expired: E,
    work: impl Future<Output = Result<T, E>>,
) -> (Result<T, E>, bool) {
    let work = std::pin::pin!(work);
    let mut work = work;
    tokio::select! {
        biased;
        done = &mut work => (done, false),
        () = tokio::time::sleep(limit) => {
            killer.kill(kill_limit).await;
            match tokio::time::timeout(kill_limit, &mut work).await {
                Ok(Ok(done)) => (Ok(done), true),
                Ok(Err(_)) | Err(_) => (Err(expired), true),
            }
        }
    }
}

/// Converts checked params to MySQL values, each with the type the server is told.
pub fn bind(params: &[Param]) -> Params {
    if params.is_empty() {
        return Params::Empty;
    }
    Params::Positional(params.iter().map(value).collect())
}

fn value(p: &Param) -> mysql_async::Value {
    use mysql_async::Value as V;
    match p {
        Param::Null => V::NULL,
        Param::Int(i) => V::Int(*i),
        Param::UInt(u) => V::UInt(*u),
        Param::Double(d) => V::Double(*d),
        Param::Text(s) => V::Bytes(s.clone().into_bytes()),
        Param::Bytes(b) => V::Bytes(b.clone()),
        Param::DateTime {
            year,
            month,
            day,
            hour,
            minute,
            second,
            micro,
        } => V::Date(*year, *month, *day, *hour, *minute, *second, *micro),
        Param::Time {
            negative,
            hours,
            minute,
            second,
            micro,
        } => V::Time(
            *negative,
            hours / 24,
            (hours % 24) as u8,
            *minute,
            *second,
            *micro,
        ),
    }
}

/// The write's own GTID, from the session state the server sent in the OK packet that
/// acknowledged it (`session_track_system_variables = 'last_gtid'` on MariaDB,
/// `session_track_gtids = OWN_GTID` on MySQL: see `Flavor::session_sql`). `None` when the
/// statement wrote nothing the binary log records.
pub fn gtid_from_ok(conn: &Conn) -> Option<String> {
    gtid_in(conn.last_ok_packet()?)
}

/// The GTID an OK packet's session state reports: MariaDB's `last_gtid` variable, or MySQL's
/// GTID set (`OWN_GTID`).
pub fn gtid_in(ok: &mysql_async::OkPacket<'_>) -> Option<String> {
    let infos = ok.session_state_info().ok()?;
    let mut found = None;
    for info in &infos {
        match info.decode() {
            Ok(SessionStateChange::SystemVariables(vars)) => {
                for v in vars {
                    if v.name_str().eq_ignore_ascii_case("last_gtid") {
                        found = Some(v.value_str().trim().to_string());
                    }
                }
            }
            Ok(SessionStateChange::Gtids(g)) => found = own_gtids(g.as_bytes()),
            _ => {}
        }
    }
    found.filter(|g| !g.is_empty())
}

/// The GTID text of a `SESSION_TRACK_GTIDS` entry. `mysql_common` hands over the entry's raw
/// payload, which is an encoding specification byte (0: the GTID set as text, the only one
/// defined) and then the text as a length-encoded string (MySQL's `Session_gtids_tracker`).
fn own_gtids(payload: &[u8]) -> Option<String> {
    let (&encoding, rest) = payload.split_first()?;
    if encoding != 0 {
        return None;
    }
    let text = mysql_common::io::ParseBuf(rest).checked_eat_lenenc_str()?;
    Some(String::from_utf8_lossy(text).trim().to_string())
}

/// Makes `database` the session's default schema for this request: `USE` with the checked name
/// backquoted (`Database` admits no backquote). The flag is set before anything is sent, so
/// the connection is cleaned with COM_CHANGE_USER whatever happens (`PooledConn::clean`).
pub async fn use_database(
    conn: &mut PooledConn,
    database: Option<&Database>,
) -> Result<(), ExecError> {
    let Some(db) = database else {
        return Ok(());
    };
    conn.schema_selected = true;
    conn.conn.query_drop(format!("USE `{db}`")).await?;
    Ok(())
}

/// Waits until the replica behind `conn` has applied `gtid`, at most `timeout`. Returns false on
/// timeout.
pub async fn wait_for_gtid(
    conn: &mut PooledConn,
    gtid: &str,
    timeout: Duration,
) -> Result<bool, ExecError> {
    let sql = match conn.flavor {
        Flavor::MariaDb => "SELECT MASTER_GTID_WAIT(?, ?)",
        Flavor::MySql => "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?)",
    };
    let r: Option<i64> = conn
        .conn
        .exec_first(sql, (gtid, timeout.as_secs_f64()))
        .await?;
    // MariaDB: 0 reached, -1 timed out; MySQL: 0 reached, 1 timed out.
    Ok(r == Some(0))
}

/// Whether the session has a transaction open, from the status flags of the server's last OK
/// packet (with `CLIENT_DEPRECATE_EOF`, a result set ends with one too). The server's own
/// account: a statement that ended the transaction (an implicit commit, a hidden COMMIT)
/// clears the flag whatever the classifier thought the statement was.
pub fn in_transaction(conn: &Conn) -> bool {
    conn.last_ok_packet().is_some_and(|ok| {
        ok.status_flags()
            .contains(StatusFlags::SERVER_STATUS_IN_TRANS)
    })
}

/// A statement's result, and roughly how many bytes the server sent for it (packet headers,
/// column definitions, values), which the pool's recycling budget counts.
pub struct Executed {
    pub result: StatementResult,
    pub received: usize,
    /// After a write: the GTID the server reported for it.
    pub gtid: Option<String>,
}

/// What the server reported with a statement besides its rows.
pub struct Summary {
    pub rows_affected: u64,
    pub last_insert_id: Option<u64>,
    /// After a write: the GTID the server reported for it.
    pub gtid: Option<String>,
    /// Roughly the bytes the server sent (see `Executed::received`).
    pub received: usize,
}

/// Where a statement's columns and rows go as they arrive: collected within the limits
/// (`Collect`, the JSON answer) or streamed to the client (`stream`).
pub(crate) trait Sink {
    /// The result's columns (none for a statement without rows), before any row.
    async fn columns(&mut self, columns: Vec<Column>) -> Result<(), ExecError>;
    /// One row, its values converted (`to_json`); `size` is about what the server sent for it.
    /// An error stops the statement: one that breaks the connection leaves the rest of the
    /// result unread, any other has it read and dropped.
    async fn row(&mut self, values: Vec<Json>, size: usize) -> Result<(), ExecError>;
}

/// Runs `sql` and collects its result within the row and byte limits.
pub async fn run(
    conn: &mut Conn,
    sql: &str,
    params: &[Param],
    limits: &Limits,
) -> Result<Executed, ExecError> {
    let mut sink = Collect {
        limits,
        result: StatementResult::default(),
        bytes: 0,
    };
    let summary = run_into(conn, sql, params, &mut sink).await?;
    let mut result = sink.result;
    result.rows_affected = summary.rows_affected;
    result.last_insert_id = summary.last_insert_id;
    Ok(Executed {
        result,
        received: summary.received,
        gtid: summary.gtid,
    })
}

/// Collects a result in memory, refusing one past the row or byte limit.
struct Collect<'a> {
    limits: &'a Limits,
    result: StatementResult,
    bytes: usize,
}

impl Sink for Collect<'_> {
    async fn columns(&mut self, columns: Vec<Column>) -> Result<(), ExecError> {
        self.result.columns = columns;
        Ok(())
    }

    async fn row(&mut self, values: Vec<Json>, size: usize) -> Result<(), ExecError> {
        if self.result.rows.len() >= self.limits.max_rows {
            return Err(ExecError::TooLarge(format!(
                "result has more than {} rows; add a LIMIT",
                self.limits.max_rows
            )));
        }
        self.bytes += size;
        if self.bytes > self.limits.max_result_bytes {
            return Err(ExecError::TooLarge(format!(
                "result exceeds {} bytes",
                self.limits.max_result_bytes
            )));
        }
        self.result.rows.push(values);
        Ok(())
    }
}

/// Runs `sql` with `params` as a prepared statement, its columns and rows going to `sink`. The
/// driver always offers the multi-statement capability, but COM_STMT_PREPARE takes exactly one
/// statement whatever the connection allows: the server itself refuses a hidden second one
/// (docs/security.md, layer 2). A statement the server parsed as one but cannot prepare
/// (ER_UNSUPPORTED_PS, some admin statements on MySQL) runs as text when it has no params.
pub(crate) async fn run_into(
    conn: &mut Conn,
    sql: &str,
    params: &[Param],
    sink: &mut impl Sink,
) -> Result<Summary, ExecError> {
    let mut out = match conn.prep(sql).await {
        Ok(stmt) => {
            let result = conn.exec_iter(&stmt, bind(params)).await?;
            feed(result, sink).await?
        }
        Err(mysql_async::Error::Server(e)) if e.code == UNSUPPORTED_PS && params.is_empty() => {
            let result = conn.query_iter(sql).await?;
            feed(result, sink).await?
        }
        Err(e) => return Err(e.into()),
    };
    out.gtid = gtid_from_ok(conn);
    Ok(out)
}

/// Reads a result into `sink`, row by row: the next row is read only once `sink` took this one.
async fn feed<P: Protocol>(
    mut result: QueryResult<'_, 'static, P>,
    sink: &mut impl Sink,
) -> Result<Summary, ExecError> {
    let mut rows = 0usize;
    let mut bytes = 0usize;
    // An OK-only result (INSERT, UPDATE…) carries its counts before any row is read.
    let mut rows_affected = result.affected_rows();
    let mut last_insert_id = result.last_insert_id();
    let cols = result.columns().filter(|c| !c.is_empty());
    let meta: Vec<(T, u16, u8)> = cols
        .iter()
        .flat_map(|c| c.iter())
        .map(|c| (c.column_type(), c.character_set(), c.decimals()))
        .collect();
    let columns: Vec<Column> = cols
        .iter()
        .flat_map(|c| c.iter())
        .map(|c| Column {
            name: c.name_str().into_owned(),
            type_name: type_name(c.column_type(), c.character_set()),
        })
        .collect();
    let width = columns.len();
    sink.columns(columns).await?;
    if cols.is_some() {
        while let Some(row) = result.next().await? {
            let mut size = 0;
            let mut json_row = Vec::with_capacity(width);
            for (v, (ty, cs, decimals)) in row.unwrap().into_iter().zip(meta.iter()) {
                size += value_size(&v);
                json_row.push(to_json(v, *ty, *cs, *decimals));
            }
            if let Err(e) = sink.row(json_row, size).await {
                if !e.breaks_connection() {
                    result.drop_result().await?;
                }
                return Err(e);
            }
            rows += 1;
            bytes += size;
        }
        rows_affected = result.affected_rows();
        last_insert_id = result.last_insert_id();
    }
    // Further result sets (a CALL's status, say) are read and dropped.
    result.drop_result().await?;
    Ok(Summary {
        rows_affected,
        last_insert_id: last_insert_id.filter(|id| *id != 0),
        gtid: None,
        received: 128 + width * 64 + rows * 8 + bytes,
    })
}

fn value_size(v: &mysql_async::Value) -> usize {
    match v {
        mysql_async::Value::Bytes(b) => b.len(),
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
pub fn to_json(v: mysql_async::Value, t: T, charset: u16, decimals: u8) -> Json {
    use mysql_async::Value as V;
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
    use mysql_async::Value as V;

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

    /// An OK packet as the server sends it to a client with `CLIENT_SESSION_TRACK`, carrying
    /// `entries` (type byte, payload) as its session state.
    fn ok_packet(entries: &[(u8, Vec<u8>)]) -> Vec<u8> {
        fn lenenc(b: &[u8]) -> Vec<u8> {
            let mut out = vec![u8::try_from(b.len()).expect("short")];
            out.extend_from_slice(b);
            out
        }
        let mut state = Vec::new();
        for (kind, payload) in entries {
            state.push(*kind);
            state.extend(lenenc(payload));
        }
        // header, affected rows 1, insert id 0, status AUTOCOMMIT | SESSION_STATE_CHANGED,
        // no warnings, empty info, then the session state.
        let mut p = vec![0x00, 1, 0, 0x02, 0x40, 0, 0, 0];
        p.extend(lenenc(&state));
        p
    }

    fn parse_ok(bytes: &[u8]) -> mysql_common::packets::OkPacket<'_> {
        use mysql_common::constants::CapabilityFlags as C;
        use mysql_common::packets::{CommonOkPacket, OkPacketDeserializer};
        let caps = C::CLIENT_PROTOCOL_41 | C::CLIENT_SESSION_TRACK;
        mysql_common::io::ParseBuf(bytes)
            .parse::<OkPacketDeserializer<'_, CommonOkPacket>>(caps)
            .expect("a well-formed OK packet")
            .into_inner()
    }

    #[test]
    fn a_writes_gtid_is_read_from_its_ok_packet_in_either_flavour() {
        // MariaDB: SESSION_TRACK_SYSTEM_VARIABLES (0): name, value.
        let mut var = vec![9];
        var.extend_from_slice(b"last_gtid");
        var.push(6);
        var.extend_from_slice(b"0-1-42");
        assert_eq!(
            gtid_in(&parse_ok(&ok_packet(&[(0, var)]))).as_deref(),
            Some("0-1-42")
        );
        // MySQL 8.0, session_track_gtids = OWN_GTID: SESSION_TRACK_GTIDS (3): encoding 0, the set.
        let own = b"3e11fa47-71ca-11e1-9e33-c80aa9429562:23";
        let mut gtids = vec![0, u8::try_from(own.len()).unwrap()];
        gtids.extend_from_slice(own);
        assert_eq!(
            gtid_in(&parse_ok(&ok_packet(&[(3, gtids)]))).as_deref(),
            Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:23")
        );
        // Another variable changed, or nothing tracked: no GTID.
        let mut other = vec![10];
        other.extend_from_slice(b"autocommit");
        other.push(2);
        other.extend_from_slice(b"ON");
        assert_eq!(gtid_in(&parse_ok(&ok_packet(&[(0, other)]))), None);
        let plain = [0x00, 1, 0, 0x02, 0x00, 0, 0];
        assert_eq!(gtid_in(&parse_ok(&plain)), None, "no session state at all");
        // A long GTID set (length in 2 bytes), and malformed payloads.
        let long = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-23,".repeat(8);
        let mut payload = vec![0, 0xfc];
        payload.extend_from_slice(&u16::try_from(long.len()).unwrap().to_le_bytes());
        payload.extend_from_slice(long.as_bytes());
        assert_eq!(own_gtids(&payload).as_deref(), Some(long.trim()));
        assert_eq!(own_gtids(&[]), None);
        assert_eq!(own_gtids(&[1, 1, b'x']), None, "an unknown encoding");
        assert_eq!(own_gtids(&[0, 5, b'x']), None, "shorter than it says");
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
        let typed = |t: &str, v: &str| serde_json::json!({"type": t, "value": v});
        let given = [
            Json::Null,
            Json::from(true),
            Json::from(-3),
            Json::from(u64::MAX),
            Json::from(1.5),
            Json::from("x'; DROP"),
            typed("decimal", "1.10"),
            typed("binary", "AP8="),
            typed("datetime", "2024-02-29T01:02:03.000004"),
            typed("date", "2024-02-29"),
            typed("time", "-49:02:03.5"),
        ];
        let params = sqlgate::wire::check_params(&given, 20).unwrap();
        let Params::Positional(v) = bind(&params) else {
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
                V::Bytes(b"x'; DROP".to_vec()),
                V::Bytes(b"1.10".to_vec()),
                V::Bytes(vec![0, 255]),
                V::Date(2024, 2, 29, 1, 2, 3, 4),
                V::Date(2024, 2, 29, 0, 0, 0, 0),
                V::Time(true, 2, 1, 2, 3, 500_000),
            ]
        );
    }
}
