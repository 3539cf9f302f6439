//! Statement parameters as requests send them, and the typed values they bind.
//!
//! `params` is an array for `?` placeholders (`[7, "x"]`) or an object for `:name` ones
//! (`{"id": 7}`). Each value is a JSON scalar, or a typed value for what JSON cannot say
//! (`{"type": "decimal", "value": "1.10"}`, as the RDS Data API's type hints): `decimal`,
//! `integer`, `binary` (base64), `date`, `datetime`, `time` and `json`. Both services turn them
//! into `Param`s the same way (`Param::from_json`), so the gatekeeper refuses what the proxy
//! would.

use base64::Engine;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;

/// The `params` of a statement, as the request gave them.
#[derive(Debug, Clone, PartialEq)]
pub enum Params {
    /// For `?` placeholders, in order.
    Positional(Vec<Value>),
    /// For `:name` placeholders, by name, in the order the request wrote them (no name twice).
    Named(Vec<(String, Value)>),
}

impl Default for Params {
    fn default() -> Params {
        Params::Positional(Vec::new())
    }
}

impl From<Vec<Value>> for Params {
    fn from(v: Vec<Value>) -> Params {
        Params::Positional(v)
    }
}

impl Params {
    /// How many values were given.
    pub fn len(&self) -> usize {
        match self {
            Params::Positional(v) => v.len(),
            Params::Named(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The positional values; empty for named ones.
    pub fn positional(&self) -> &[Value] {
        match self {
            Params::Positional(v) => v,
            Params::Named(_) => &[],
        }
    }
}

impl Serialize for Params {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Params::Positional(v) => v.serialize(s),
            Params::Named(v) => {
                let mut map = s.serialize_map(Some(v.len()))?;
                for (k, val) in v {
                    map.serialize_entry(k, val)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Params {
    /// An array or an object of values, each read with `checked_value`; an object's keys must
    /// be distinct (serde_json would otherwise keep the last silently).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Params, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        let text = raw.get().trim_start();
        if text.starts_with('[') {
            let items: Vec<Box<RawValue>> =
                serde_json::from_str(raw.get()).map_err(de::Error::custom)?;
            let values = items
                .iter()
                .enumerate()
                .map(|(i, r)| checked_value(r, &format!("params[{i}]")))
                .collect::<Result<_, _>>()
                .map_err(de::Error::custom)?;
            Ok(Params::Positional(values))
        } else if text.starts_with('{') {
            let NamedRaw(items) = serde_json::from_str(raw.get()).map_err(de::Error::custom)?;
            let values = items
                .into_iter()
                .map(|(k, r)| {
                    let v = checked_value(&r, &format!("params.{k}"))?;
                    Ok((k, v))
                })
                .collect::<Result<_, String>>()
                .map_err(de::Error::custom)?;
            Ok(Params::Named(values))
        } else {
            Err(de::Error::custom(
                "params must be an array (for ? placeholders) or an object (for :name placeholders)",
            ))
        }
    }
}

/// An object's entries in order, refusing a repeated key.
struct NamedRaw(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for NamedRaw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NamedRaw, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NamedRaw;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of named params")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<NamedRaw, A::Error> {
                let mut out: Vec<(String, Box<RawValue>)> = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Box<RawValue>>()? {
                    if out.iter().any(|(seen, _)| *seen == k) {
                        return Err(de::Error::custom(format!("params names `{k}` twice")));
                    }
                    out.push((k, v));
                }
                Ok(NamedRaw(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Reads one value, refusing integer literals outside the 64-bit range: `serde_json` would
/// otherwise read them as doubles and bind a rounded value.
pub fn checked_value(raw: &RawValue, what: &str) -> Result<Value, String> {
    let text = raw.get();
    let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
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
        return Err(format!(
            "{what} = {text} is outside the range of 64-bit integers \
             (send it as {{\"type\": \"integer\", \"value\": \"{text}\"}}, or \"decimal\")"
        ));
    }
    Ok(v)
}

/// A value to bind, of a type the server is told.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Null,
    Int(i64),
    UInt(u64),
    Double(f64),
    /// A string, sent as text: strings, and `decimal` (exact, converted by the server) and
    /// `json` values (their JSON text).
    Text(String),
    /// Raw bytes (`binary`).
    Bytes(Vec<u8>),
    /// `date` (the time part zero) and `datetime`.
    DateTime {
        year: u16,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
        micro: u32,
    },
    /// `time`: a duration, as MySQL's TIME (up to ±838:59:59).
    Time {
        negative: bool,
        hours: u32,
        minute: u8,
        second: u8,
        micro: u32,
    },
}

/// The type names a typed value may give.
pub const TYPES: [&str; 7] = [
    "decimal", "integer", "binary", "date", "datetime", "time", "json",
];

/// Longest accepted `decimal` text (MySQL's DECIMAL has at most 65 digits).
const MAX_DECIMAL_LEN: usize = 80;

impl Param {
    /// Roughly the bytes it takes to send.
    pub fn size(&self) -> usize {
        match self {
            Param::Text(t) => t.len(),
            Param::Bytes(b) => b.len(),
            _ => 8,
        }
    }

    /// The value to bind for `v`: JSON scalars as they are (booleans as 1 and 0), typed values
    /// checked and converted. The error says what is wrong, without the value's name.
    pub fn from_json(v: &Value) -> Result<Param, String> {
        Ok(match v {
            Value::Null => Param::Null,
            Value::Bool(b) => Param::Int(i64::from(*b)),
            Value::Number(n) => n
                .as_i64()
                .map(Param::Int)
                .or_else(|| n.as_u64().map(Param::UInt))
                .unwrap_or_else(|| Param::Double(n.as_f64().unwrap_or(0.0))),
            Value::String(s) => Param::Text(s.clone()),
            Value::Array(_) => {
                return Err(
                    "must be null, a boolean, a number, a string or a typed value \
                     ({\"type\": …, \"value\": …})"
                        .into(),
                )
            }
            Value::Object(o) => typed(o)?,
        })
    }
}

/// A typed value: exactly `type` and `value`.
fn typed(o: &serde_json::Map<String, Value>) -> Result<Param, String> {
    let kind = o.get("type").and_then(Value::as_str);
    let value = o.get("value");
    let (Some(kind), Some(value), 2) = (kind, value, o.len()) else {
        return Err(format!(
            "a typed value is {{\"type\": one of {}, \"value\": …}} and nothing else",
            TYPES.join(", ")
        ));
    };
    if kind == "json" {
        return Ok(Param::Text(value.to_string()));
    }
    if value.is_null() {
        return Ok(Param::Null);
    }
    let Some(text) = value.as_str() else {
        return Err(format!("a {kind} value is a string (or null)"));
    };
    match kind {
        "decimal" => decimal(text),
        "integer" => integer(text),
        "binary" => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Param::Bytes)
            .map_err(|e| format!("a binary value is standard base64: {e}")),
        "date" => date_time(text, false),
        "datetime" => date_time(text, true),
        "time" => time(text),
        other => Err(format!(
            "unknown type `{other}`: one of {}",
            TYPES.join(", ")
        )),
    }
}

fn decimal(text: &str) -> Result<Param, String> {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let ok = text.len() <= MAX_DECIMAL_LEN
        && !(int.is_empty() && frac.is_empty())
        && all_digits(int)
        && all_digits(frac);
    if ok {
        Ok(Param::Text(text.to_string()))
    } else {
        Err(format!(
            "a decimal value is digits with an optional sign and point (\"-12.50\"), \
             at most {MAX_DECIMAL_LEN} characters"
        ))
    }
}

fn integer(text: &str) -> Result<Param, String> {
    text.parse::<i64>()
        .map(Param::Int)
        .or_else(|_| text.parse::<u64>().map(Param::UInt))
        .map_err(|_| "an integer value is a string of a 64-bit integer".to_string())
}

/// Parses fixed-width decimal digits.
fn digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    s.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| s.parse().ok())
        .flatten()
}

/// `.ffffff` (1 to 6 digits) as microseconds; empty gives 0.
fn micros(frac: Option<&str>) -> Option<u32> {
    match frac {
        None => Some(0),
        Some(f) if (1..=6).contains(&f.len()) => {
            digits::<u32>(f).map(|n| n * 10u32.pow(6 - f.len() as u32))
        }
        Some(_) => None,
    }
}

/// `YYYY-MM-DD`, and with `with_time` optionally `THH:MM:SS[.ffffff]` (or a space for `T`).
fn date_time(text: &str, with_time: bool) -> Result<Param, String> {
    let err = || {
        if with_time {
            "a datetime value is YYYY-MM-DDTHH:MM:SS[.ffffff] (or a space for T), a real date"
        } else {
            "a date value is YYYY-MM-DD, a real date"
        }
        .to_string()
    };
    let (date, clock) = match text.split_once(['T', ' ']) {
        Some((d, t)) if with_time => (d, Some(t)),
        None => (text, None),
        Some(_) => return Err(err()),
    };
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(err());
    };
    if (y.len(), m.len(), d.len()) != (4, 2, 2) {
        return Err(err());
    }
    let (year, month, day) = (
        digits::<u16>(y).ok_or_else(err)?,
        digits::<u8>(m).ok_or_else(err)?,
        digits::<u8>(d).ok_or_else(err)?,
    );
    let month_t = time::Month::try_from(month).map_err(|_| err())?;
    time::Date::from_calendar_date(i32::from(year), month_t, day).map_err(|_| err())?;
    let (hour, minute, second, micro) = match clock {
        None => (0, 0, 0, 0),
        Some(c) => {
            let (hms, frac) = match c.split_once('.') {
                Some((a, f)) => (a, Some(f)),
                None => (c, None),
            };
            let mut p = hms.split(':');
            let (Some(h), Some(mi), Some(s), None) = (p.next(), p.next(), p.next(), p.next())
            else {
                return Err(err());
            };
            if (h.len(), mi.len(), s.len()) != (2, 2, 2) {
                return Err(err());
            }
            let (h, mi, s) = (
                digits::<u8>(h).ok_or_else(err)?,
                digits::<u8>(mi).ok_or_else(err)?,
                digits::<u8>(s).ok_or_else(err)?,
            );
            if h > 23 || mi > 59 || s > 59 {
                return Err(err());
            }
            (h, mi, s, micros(frac).ok_or_else(err)?)
        }
    };
    Ok(Param::DateTime {
        year,
        month,
        day,
        hour,
        minute,
        second,
        micro,
    })
}

/// `[-]H…H:MM:SS[.ffffff]`, within MySQL's TIME range (±838:59:59).
fn time(text: &str) -> Result<Param, String> {
    let err = || "a time value is [-]HH:MM:SS[.ffffff], at most 838:59:59".to_string();
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (hms, frac) = match rest.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (rest, None),
    };
    let mut p = hms.split(':');
    let (Some(h), Some(mi), Some(s), None) = (p.next(), p.next(), p.next(), p.next()) else {
        return Err(err());
    };
    if !(1..=3).contains(&h.len()) || (mi.len(), s.len()) != (2, 2) {
        return Err(err());
    }
    let (hours, minute, second) = (
        digits::<u32>(h).ok_or_else(err)?,
        digits::<u8>(mi).ok_or_else(err)?,
        digits::<u8>(s).ok_or_else(err)?,
    );
    let micro = micros(frac).ok_or_else(err)?;
    if minute > 59
        || second > 59
        || hours > 838
        || (hours == 838 && (minute, second, micro) > (59, 59, 0))
    {
        return Err(err());
    }
    Ok(Param::Time {
        negative,
        hours,
        minute,
        second,
        micro,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn param(v: Value) -> Result<Param, String> {
        Param::from_json(&v)
    }

    #[test]
    fn scalars_bind_as_they_are() {
        assert_eq!(param(json!(null)), Ok(Param::Null));
        assert_eq!(param(json!(true)), Ok(Param::Int(1)));
        assert_eq!(param(json!(-7)), Ok(Param::Int(-7)));
        assert_eq!(param(json!(u64::MAX)), Ok(Param::UInt(u64::MAX)));
        assert_eq!(param(json!(1.5)), Ok(Param::Double(1.5)));
        assert_eq!(param(json!("x")), Ok(Param::Text("x".into())));
        assert!(param(json!([1])).is_err());
    }

    #[test]
    fn typed_values() {
        let t = |ty: &str, v: Value| param(json!({"type": ty, "value": v}));
        assert_eq!(
            t("decimal", json!("-12.50")),
            Ok(Param::Text("-12.50".into()))
        );
        assert_eq!(t("decimal", json!(".5")), Ok(Param::Text(".5".into())));
        for bad in ["1e5", "", ".", "1.2.3", "12a", "--1", "1 "] {
            assert!(t("decimal", json!(bad)).is_err(), "{bad}");
        }
        assert!(t("decimal", json!(1.1)).is_err(), "a decimal is a string");
        assert_eq!(
            t("integer", json!("18446744073709551615")),
            Ok(Param::UInt(u64::MAX))
        );
        assert_eq!(
            t("integer", json!("-9223372036854775808")),
            Ok(Param::Int(i64::MIN))
        );
        assert!(t("integer", json!("18446744073709551616")).is_err());
        assert_eq!(t("binary", json!("AP8=")), Ok(Param::Bytes(vec![0, 255])));
        assert!(t("binary", json!("not base64!")).is_err());
        assert_eq!(
            t("datetime", json!("2024-02-29T23:59:58.5")),
            Ok(Param::DateTime {
                year: 2024,
                month: 2,
                day: 29,
                hour: 23,
                minute: 59,
                second: 58,
                micro: 500_000
            })
        );
        assert!(
            t("datetime", json!("2024-02-29 00:00:00")).is_ok(),
            "a space for T"
        );
        assert!(
            t("datetime", json!("2023-02-29T00:00:00")).is_err(),
            "not a leap year"
        );
        assert!(t("datetime", json!("2024-01-01T24:00:00")).is_err());
        assert!(t("datetime", json!("2024-01-01T00:00:00.1234567")).is_err());
        assert!(
            t("date", json!("2024-01-01T00:00:00")).is_err(),
            "a date has no time"
        );
        assert!(t("date", json!("2024-1-01")).is_err());
        assert_eq!(
            t("time", json!("-838:59:59")),
            Ok(Param::Time {
                negative: true,
                hours: 838,
                minute: 59,
                second: 59,
                micro: 0
            })
        );
        assert!(t("time", json!("839:00:00")).is_err());
        assert!(t("time", json!("838:59:59.1")).is_err());
        assert!(t("time", json!("1:60:00")).is_err());
        assert_eq!(
            t("json", json!({"a": [1, "x"]})),
            Ok(Param::Text(r#"{"a":[1,"x"]}"#.into()))
        );
        assert_eq!(t("date", json!(null)), Ok(Param::Null));
        assert!(t("money", json!("1")).is_err(), "unknown type");
        assert!(param(json!({"type": "decimal"})).is_err(), "no value");
        assert!(
            param(json!({"type": "decimal", "value": "1", "x": 1})).is_err(),
            "an extra field"
        );
        assert!(param(json!({"value": "1"})).is_err(), "no type");
    }

    #[test]
    fn params_read_as_arrays_or_objects() {
        let p: Params = serde_json::from_str(r#"[1, "a"]"#).unwrap();
        assert_eq!(p, Params::Positional(vec![json!(1), json!("a")]));
        let p: Params = serde_json::from_str(r#"{"b": 1, "a": 2}"#).unwrap();
        assert_eq!(
            p,
            Params::Named(vec![("b".into(), json!(1)), ("a".into(), json!(2))]),
            "in the order written"
        );
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"b":1,"a":2}"#);
        for bad in [
            r#"{"a": 1, "a": 2}"#,
            r#""x""#,
            "7",
            r#"{"a": 18446744073709551616}"#,
            "[18446744073709551616]",
        ] {
            assert!(serde_json::from_str::<Params>(bad).is_err(), "{bad}");
        }
        let p: Params = serde_json::from_str("[-0]").unwrap();
        assert_eq!(p.positional(), &[json!(0)]);
    }
}
