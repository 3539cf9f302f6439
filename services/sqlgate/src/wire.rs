//! The JSON request and response bodies of `POST /query` and `POST /transaction`.

use crate::error::{ApiError, ErrorCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "integer_checked"
    )]
    pub params: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Read-your-writes: a read runs on a worker only once it has applied this GTID position
    /// (the `gtid` of an earlier write's response); otherwise on the manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_gtid: Option<String>,
}

/// One statement of a `POST /transaction`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TxStatement {
    pub sql: String,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "integer_checked"
    )]
    pub params: Vec<Value>,
}

/// `POST /transaction`: statements run in order on the manager, committed together or not at all.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TransactionRequest {
    pub statements: Vec<TxStatement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// Header carrying the role (`read`, `write`, `admin`) of the key the gatekeeper authenticated;
/// the internal token vouches for it. The proxy runs each statement as the lesser of this role
/// and what the statement needs.
pub const ROLE_HEADER: &str = "X-Sqlgate-Role";

/// Deserializes `params`, refusing integer literals outside the 64-bit range: `serde_json`
/// would otherwise read them as doubles and bind a rounded value.
fn integer_checked<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Value>, D::Error> {
    use serde::de::Error;
    let raw: Vec<Box<serde_json::value::RawValue>> = Deserialize::deserialize(d)?;
    raw.iter()
        .enumerate()
        .map(|(i, r)| {
            let text = r.get();
            let v: Value = serde_json::from_str(text).map_err(D::Error::custom)?;
            let integer_literal = text
                .strip_prefix('-')
                .unwrap_or(text)
                .bytes()
                .all(|b| b.is_ascii_digit());
            if matches!(&v, Value::Number(n) if n.is_f64()) && integer_literal {
                // `-0` is an integer literal that serde_json reads as a double.
                if let Ok(n) = text.parse::<i64>() {
                    return Ok(Value::from(n));
                }
                return Err(D::Error::custom(format!(
                    "params[{i}] = {text} is outside the range of 64-bit integers \
                     (send it as a string to compare with DECIMAL columns)"
                )));
            }
            Ok(v)
        })
        .collect()
}

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

/// 200 answer of `POST /query`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueryResponse {
    pub request_id: String,
    /// `read` or `write`: where the classifier sent it.
    pub kind: String,
    pub mode: Mode,
    pub node: String,
    pub role: String,
    /// Why a read ran on the manager although the mode picks workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    #[serde(flatten)]
    pub result: StatementResult,
    /// After a write: the manager's GTID position including it, for `after_gtid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
    pub duration_ms: f64,
}

/// 200 answer of `POST /transaction`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TransactionResponse {
    pub request_id: String,
    pub node: String,
    pub role: String,
    pub results: Vec<StatementResult>,
    pub duration_ms: f64,
}

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

/// Checks `params`: at most `max` scalar values (null, boolean, number, string).
pub fn check_params(params: &[Value], max: usize) -> Result<(), ApiError> {
    if params.len() > max {
        return Err(ApiError::new(
            ErrorCode::InvalidParams,
            format!("{} params given, at most {max} allowed", params.len()),
        ));
    }
    if let Some(i) = params
        .iter()
        .position(|v| matches!(v, Value::Array(_) | Value::Object(_)))
    {
        return Err(ApiError::new(
            ErrorCode::InvalidParams,
            format!("params[{i}] must be null, a boolean, a number or a string"),
        ));
    }
    Ok(())
}

/// Classifies `sql` and checks its `params` against the placeholders: what both services do
/// with every statement before anything else.
pub fn prepare(
    classifier: &crate::Classifier,
    sql: &str,
    params: &[Value],
    max_params: usize,
) -> Result<crate::Statement, ApiError> {
    check_params(params, max_params)?;
    let stmt = classifier.parse(sql)?;
    if stmt.placeholders() != params.len() {
        return Err(ApiError::new(
            ErrorCode::InvalidParams,
            format!(
                "the statement has {} placeholders but {} params were given",
                stmt.placeholders(),
                params.len()
            ),
        ));
    }
    Ok(stmt)
}

/// A fresh request id: 16 random hex characters.
pub fn new_request_id() -> String {
    let n: u64 = rand::random();
    format!("{n:016x}")
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
        assert_eq!(new_request_id().len(), 16);
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
    fn modes_round_trip() {
        for m in Mode::ALL {
            assert_eq!(Mode::parse(m.as_str()), Some(m));
            assert_eq!(serde_json::to_value(m).unwrap(), Value::from(m.as_str()));
        }
    }
}
