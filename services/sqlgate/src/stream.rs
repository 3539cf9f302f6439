//! The streamed form of a `/query` answer (`Accept: application/x-ndjson`): when a client asks
//! for it, and the lines it is made of. One JSON object per line: the header, one line per row,
//! then the done line, or an error line when the stream fails after its header was sent. Only a
//! done line says the stream is complete (docs/api.md, Streaming).

use crate::error::ErrorBody;
use crate::statement::Route;
use crate::wire::{Column, Mode, NodeRole};
use actix_web::http::header::{Accept, Header as _, Quality};
use actix_web::web::Bytes;
use actix_web::HttpRequest;
use serde::{Deserialize, Serialize};

/// The media type of a streamed answer.
pub const CONTENT_TYPE: &str = "application/x-ndjson";

/// Whether the client asked for the streamed form: its `Accept` names `application/x-ndjson`
/// (with a non-zero quality). An absent or unreadable `Accept` gets the JSON form.
pub fn wanted(req: &HttpRequest) -> bool {
    Accept::parse(req).is_ok_and(|accept| {
        accept
            .iter()
            .any(|q| q.item.essence_str() == CONTENT_TYPE && q.quality > Quality::ZERO)
    })
}

/// The first line: who runs the statement and, unless left out, its columns. The fields mean
/// what they mean in the JSON answer (`wire::QueryResponse`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub request_id: String,
    pub kind: Route,
    pub mode: Mode,
    pub node: String,
    pub role: NodeRole,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<Column>>,
}

/// The last line of a complete stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Done {
    /// Always `true`: what a client looks for to know it has every row.
    pub done: bool,
    /// The rows sent.
    pub row_count: u64,
    pub rows_affected: u64,
    pub last_insert_id: Option<u64>,
    /// After a write: the manager's GTID position including it, for `after_gtid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
    pub duration_ms: f64,
}

/// `value` as one line of the stream: its JSON and a newline.
pub fn line<T: Serialize>(value: &T) -> Bytes {
    // Serializing the wire types (strings, numbers, JSON values) cannot fail.
    let mut out = serde_json::to_vec(value).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

/// The last line of a stream that failed after its header: the error body of a JSON error.
pub fn error_line(body: &ErrorBody) -> Bytes {
    line(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn only_an_accept_naming_ndjson_selects_the_stream() {
        let cases = [
            (None, false, "no Accept"),
            (Some("application/json"), false, "JSON"),
            (Some("*/*"), false, "anything: the JSON form"),
            (Some("application/x-ndjson"), true, "ndjson"),
            (Some("Application/X-NDJSON"), true, "any case"),
            (
                Some("application/json;q=0.5, application/x-ndjson"),
                true,
                "among others",
            ),
            (Some("application/x-ndjson;q=0"), false, "refused with q=0"),
            (Some("not a media type"), false, "unreadable"),
        ];
        for (accept, want, what) in cases {
            let mut req = TestRequest::default();
            if let Some(a) = accept {
                req = req.insert_header(("Accept", a));
            }
            assert_eq!(wanted(&req.to_http_request()), want, "{what}");
        }
    }

    #[test]
    fn lines_are_one_json_object_each() {
        let done = Done {
            done: true,
            row_count: 2,
            rows_affected: 0,
            last_insert_id: None,
            gtid: None,
            duration_ms: 1.5,
        };
        let text = line(&done);
        assert_eq!(
            &text[..],
            &b"{\"done\":true,\"row_count\":2,\"rows_affected\":0,\"last_insert_id\":null,\"duration_ms\":1.5}\n"[..]
        );
    }
}
