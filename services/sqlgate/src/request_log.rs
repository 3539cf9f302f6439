//! One log line per request, the same in both services: method, path, status, duration, and
//! what the handler learned (request id, key id, role, kind, mode, node); a failed request also
//! gets its error code and source (`ErrorSource`). Never a key, a token or a body.
//!
//! ```text
//! App::new().wrap(RequestLog::new().quiet("/health").observe(|done| metrics.record(done)))
//! ```
//!
//! A streamed answer (a body of unknown size: `/query` as ndjson) is logged once, when its body
//! ends, complete or not, so its line and duration cover the whole stream.
//!
//! A handler tells the log what it learned with `annotate(&req, |f| …)`. An error the handler
//! returns as `Err(ApiError)`, or answers with `ApiError::into_response`, names its own code and
//! request id.

use crate::error::{ApiError, ErrorCode, ErrorSource};
use crate::statement::{Role, Route};
use crate::wire::{Mode, RequestId};
use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::{Method, StatusCode};
use actix_web::web::Bytes;
use actix_web::{HttpMessage, HttpRequest};
use futures_util::future::LocalBoxFuture;
use std::fmt;
use std::future::{ready, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// What a handler learned about its request, for the log line (and an observer's metrics).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields {
    pub request_id: Option<RequestId>,
    /// The API key's id (letters and digits), never the key.
    pub key_id: Option<String>,
    /// The key's role.
    pub role: Option<Role>,
    /// Where the statement was sent: `read` or `write`.
    pub kind: Option<Route>,
    pub mode: Option<Mode>,
    /// The node that executed the statement.
    pub node: Option<String>,
    /// The rows a streamed answer sent, when it says (set while the stream runs).
    pub rows: Option<u64>,
    /// The error a failed request was answered with. Filled in from the `ApiError` of the
    /// response; a handler that relays another service's error body sets it itself.
    pub code: Option<ErrorCode>,
}

/// Records what the handler learned about `req`, for the log line the middleware writes when
/// the response is ready. Without the middleware the fields are kept and never written.
pub fn annotate(req: &HttpRequest, f: impl FnOnce(&mut Fields)) {
    let mut ext = req.extensions_mut();
    match ext.get_mut::<Fields>() {
        Some(fields) => f(fields),
        None => {
            let mut fields = Fields::default();
            f(&mut fields);
            ext.insert(fields);
        }
    }
}

/// A finished request, as an observer sees it (after the line is logged).
pub struct Finished<'a> {
    pub method: &'a Method,
    /// The route's pattern (`/query`), or for a request no route matched, `None`.
    pub route: Option<&'a str>,
    pub status: StatusCode,
    pub duration: Duration,
    pub fields: &'a Fields,
}

impl Finished<'_> {
    /// Where the failure came from, when the request failed with a known code.
    pub fn source(&self) -> Option<ErrorSource> {
        self.fields.code.map(ErrorCode::source)
    }
}

type Observer = Arc<dyn Fn(&Finished<'_>) + Send + Sync>;

/// The middleware: `App::new().wrap(RequestLog::new())`.
#[derive(Clone, Default)]
pub struct RequestLog {
    quiet: Vec<&'static str>,
    observer: Option<Observer>,
}

impl RequestLog {
    pub fn new() -> RequestLog {
        RequestLog::default()
    }

    /// Successful requests to the route `pattern` are logged at `debug` only (health checks
    /// that a load balancer sends every few seconds).
    pub fn quiet(mut self, pattern: &'static str) -> RequestLog {
        self.quiet.push(pattern);
        self
    }

    /// Calls `f` for every finished request, after its line is logged (metrics).
    pub fn observe(mut self, f: impl Fn(&Finished<'_>) + Send + Sync + 'static) -> RequestLog {
        self.observer = Some(Arc::new(f));
        self
    }

    /// Logs the line and calls the observer. `req` is `None` when the application failed
    /// without a response (then only the method and path are known).
    fn finish(
        &self,
        method: &Method,
        uri: &actix_web::http::Uri,
        req: Option<&HttpRequest>,
        status: StatusCode,
        error: Option<&actix_web::Error>,
        started: Instant,
    ) {
        let duration = started.elapsed();
        let mut fields = req
            .and_then(|r| r.extensions_mut().remove::<Fields>())
            .unwrap_or_default();
        if let Some(api) = error.and_then(|e| e.as_error::<ApiError>()) {
            fields.code.get_or_insert(api.code());
            if fields.request_id.is_none() {
                fields.request_id = api
                    .request_id
                    .as_deref()
                    .and_then(|id| RequestId::parse(id).ok());
            }
        }
        let route = req.and_then(HttpRequest::match_pattern);
        let quiet =
            status.is_success() && route.as_deref().is_some_and(|r| self.quiet.contains(&r));
        let level = if quiet {
            log::Level::Debug
        } else if status.is_server_error() {
            log::Level::Warn
        } else {
            log::Level::Info
        };
        if log::log_enabled!(level) {
            let path = route.as_deref().unwrap_or_else(|| shown_path(uri.path()));
            let line = Line {
                method,
                path,
                status,
                took: duration,
                fields: &fields,
            };
            log::log!(level, "{line}");
        }
        if let Some(observe) = &self.observer {
            observe(&Finished {
                method,
                route: route.as_deref(),
                status,
                duration,
                fields: &fields,
            });
        }
    }
}

/// A client's path as the log shows it: as it is when short and printable.
fn shown_path(path: &str) -> &str {
    if path.len() <= 128 && path.bytes().all(|b| b.is_ascii_graphic()) {
        path
    } else {
        "(unprintable)"
    }
}

/// A value the log shows only when it is short letters and digits (a key id from a header).
fn shown_id(id: &str) -> &str {
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        id
    } else {
        "(invalid)"
    }
}

/// The log line, written straight into the logger's buffer.
struct Line<'a> {
    method: &'a Method,
    path: &'a str,
    status: StatusCode,
    took: Duration,
    fields: &'a Fields,
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let f = self.fields;
        write!(
            out,
            "Request done method={} path={} status={} duration_ms={:.3} request_id={} key_id={}",
            self.method,
            self.path,
            self.status.as_u16(),
            self.took.as_secs_f64() * 1e3,
            f.request_id.as_ref().map_or("-", RequestId::as_str),
            f.key_id.as_deref().map_or("-", shown_id),
        )?;
        let optional = [
            ("role", f.role.map(Role::as_str)),
            ("kind", f.kind.map(Route::as_str)),
            ("mode", f.mode.map(Mode::as_str)),
            ("node", f.node.as_deref().map(shown_name)),
        ];
        let rows = f.rows.map(|n| n.to_string());
        for (name, value) in optional {
            if let Some(v) = value {
                write!(out, " {name}={v}")?;
            }
        }
        if let Some(rows) = rows {
            write!(out, " rows={rows}")?;
        }
        match f.code {
            Some(code) => write!(out, " code={} source={}", code.as_str(), code.source()),
            None if self.status.is_client_error() || self.status.is_server_error() => {
                out.write_str(" code=- source=-")
            }
            None => Ok(()),
        }
    }
}

/// Node names are the operator's (`worker-1`): letters, digits, `-`, `_`, `.`.
fn shown_name(node: &str) -> &str {
    let ok = !node.is_empty()
        && node.len() <= 64
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if ok {
        node
    } else {
        "(invalid)"
    }
}

impl<S, B> Transform<S, ServiceRequest> for RequestLog
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + Unpin + 'static,
{
    type Response = ServiceResponse<Logged<B>>;
    type Error = actix_web::Error;
    type Transform = RequestLogService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestLogService {
            service,
            log: Rc::new(self.clone()),
        }))
    }
}

/// The service `RequestLog` wraps around the application.
pub struct RequestLogService<S> {
    service: S,
    log: Rc<RequestLog>,
}

impl<S, B> Service<ServiceRequest> for RequestLogService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + Unpin + 'static,
{
    type Response = ServiceResponse<Logged<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<ServiceResponse<Logged<B>>, actix_web::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        req.extensions_mut().insert(Fields::default());
        // Cheap copies (the request itself must stay unshared until it is routed).
        let method = req.method().clone();
        let uri = req.uri().clone();
        let log = self.log.clone();
        let fut = self.service.call(req);
        Box::pin(async move {
            let out = fut.await;
            if let Ok(res) = &out {
                if res.response().body().size() == BodySize::Stream {
                    let req = res.request().clone();
                    let status = res.status();
                    let res = out.expect("checked");
                    let end: Box<dyn FnOnce()> = Box::new(move || {
                        log.finish(&method, &uri, Some(&req), status, None, started)
                    });
                    return Ok(res.map_body(|_, body| Logged {
                        body,
                        end: Some(end),
                    }));
                }
            }
            match &out {
                Ok(res) => log.finish(
                    &method,
                    &uri,
                    Some(res.request()),
                    res.status(),
                    res.response().error(),
                    started,
                ),
                Err(e) => {
                    let status = e.as_response_error().status_code();
                    log.finish(&method, &uri, None, status, Some(e), started)
                }
            }
            out.map(|res| res.map_body(|_, body| Logged { body, end: None }))
        })
    }
}

/// A response body as the request log passes it on: a streamed one logs its request when it is
/// dropped, whether it ended or its client went away.
pub struct Logged<B> {
    body: B,
    /// Logs the request; `None` for a body whose request is already logged.
    end: Option<Box<dyn FnOnce()>>,
}

impl<B: MessageBody + Unpin> MessageBody for Logged<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}

impl<B> Drop for Logged<B> {
    fn drop(&mut self) {
        if let Some(end) = self.end.take() {
            end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use actix_web::{test as web_test, web, App, HttpResponse};
    use std::sync::Mutex;

    type Seen = Arc<Mutex<Vec<(Option<String>, u16, Fields)>>>;

    fn app_log(seen: &Seen) -> RequestLog {
        let seen = seen.clone();
        RequestLog::new().quiet("/health").observe(move |d| {
            seen.lock().unwrap().push((
                d.route.map(str::to_string),
                d.status.as_u16(),
                d.fields.clone(),
            ))
        })
    }

    async fn ok(req: HttpRequest) -> HttpResponse {
        annotate(&req, |f| {
            f.request_id = Some(RequestId::parse("r-1").unwrap());
            f.key_id = Some("k1".into());
            f.role = Some(Role::Read);
            f.kind = Some(Route::Read);
            f.mode = Some(Mode::Random);
            f.node = Some("worker-1".into());
        });
        HttpResponse::Ok().finish()
    }

    async fn fails(req: HttpRequest) -> Result<HttpResponse, ApiError> {
        annotate(&req, |f| f.key_id = Some("k2".into()));
        Err(
            ApiError::new(ErrorCode::Unavailable, "the proxy is unreachable")
                .with_request_id("r-2"),
        )
    }

    /// A streamed answer whose last chunk tells the log its row count, as the proxy's does.
    async fn streams(req: HttpRequest) -> HttpResponse {
        let chunks = futures_util::stream::unfold(0u64, move |n| {
            let req = req.clone();
            async move {
                if n == 3 {
                    annotate(&req, |f| f.rows = Some(n));
                    return None;
                }
                Some((Ok::<_, std::convert::Infallible>(Bytes::from("x\n")), n + 1))
            }
        });
        HttpResponse::Ok().streaming(chunks)
    }

    #[actix_web::test]
    async fn a_streamed_answer_is_logged_once_when_its_body_ends() {
        let seen: Seen = Arc::default();
        let app = web_test::init_service(
            App::new()
                .wrap(app_log(&seen))
                .route("/query", web::post().to(streams)),
        )
        .await;
        let res = web_test::call_service(
            &app,
            web_test::TestRequest::post().uri("/query").to_request(),
        )
        .await;
        assert!(seen.lock().unwrap().is_empty(), "not before the body ends");
        let body = web_test::read_body(res).await;
        assert_eq!(&body[..], b"x\nx\nx\n");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "logged once");
        assert_eq!(seen[0].2.rows, Some(3), "with the rows the stream reported");
    }

    #[actix_web::test]
    async fn fields_codes_and_request_ids_reach_the_observer() {
        let seen: Seen = Arc::default();
        let app = web_test::init_service(
            App::new()
                .wrap(app_log(&seen))
                .route("/ok", web::get().to(ok))
                .route("/fails", web::get().to(fails))
                .route(
                    "/health",
                    web::get().to(|| async { HttpResponse::Ok().finish() }),
                )
                .default_service(web::to(crate::error::not_found)),
        )
        .await;
        for (path, status) in [
            ("/ok", 200),
            ("/fails", 503),
            ("/health", 200),
            ("/nope", 404),
        ] {
            let resp =
                web_test::call_service(&app, web_test::TestRequest::get().uri(path).to_request())
                    .await;
            assert_eq!(resp.status().as_u16(), status, "{path}");
        }
        let seen = seen.lock().unwrap();
        let (route, status, f) = &seen[0];
        assert_eq!((route.as_deref(), *status), (Some("/ok"), 200));
        assert_eq!(f.request_id.as_ref().map(RequestId::as_str), Some("r-1"));
        assert_eq!(
            (f.role, f.kind, f.code),
            (Some(Role::Read), Some(Route::Read), None)
        );
        let (_, _, f) = &seen[1];
        assert_eq!(
            f.code,
            Some(ErrorCode::Unavailable),
            "taken from the ApiError"
        );
        assert_eq!(f.request_id.as_ref().map(RequestId::as_str), Some("r-2"));
        assert_eq!(f.key_id.as_deref(), Some("k2"));
        let (route, _, f) = &seen[3];
        assert_eq!(*route, None, "no route matched");
        assert_eq!(f.code, Some(ErrorCode::NotFound));
        assert!(f.request_id.is_some(), "the 404's own id is logged");
    }

    #[test]
    fn the_line_names_the_source_and_never_shows_unsafe_values() {
        let f = Fields {
            request_id: Some(RequestId::parse("abc").unwrap()),
            key_id: Some("bad key\nInjected".into()),
            node: Some("worker-1".into()),
            code: Some(ErrorCode::SqlError),
            ..Fields::default()
        };
        let l = Line {
            method: &Method::POST,
            path: "/query",
            status: StatusCode::UNPROCESSABLE_ENTITY,
            took: Duration::from_micros(1500),
            fields: &f,
        }
        .to_string();
        assert_eq!(
            l,
            "Request done method=POST path=/query status=422 duration_ms=1.500 request_id=abc \
             key_id=(invalid) node=worker-1 code=sql_error source=upstream"
        );
        let l = Line {
            method: &Method::GET,
            path: shown_path("/a b"),
            status: StatusCode::BAD_REQUEST,
            took: Duration::ZERO,
            fields: &Fields::default(),
        }
        .to_string();
        assert!(l.ends_with("request_id=- key_id=- code=- source=-"), "{l}");
        assert!(l.contains("path=(unprintable)"), "{l}");
        // Even a whole API key put where the key id belongs is not written.
        assert_eq!(shown_id("sk_abc1_0123456789abcdef"), "(invalid)");
        assert_eq!(shown_id("abc1"), "abc1");
        assert_eq!(shown_name("worker-1"), "worker-1");
        assert_eq!(shown_name("w 1"), "(invalid)");
    }
}
