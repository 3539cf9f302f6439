//! Streams a `/query` answer as ndjson (`sqlgate::stream`). A task of its own follows the same
//! routing plan as the JSON form (`execute::follow`), sends the header once the statement has
//! executed and its columns are known, then each row as it is read, through a small bounded
//! channel: a slow client makes the proxy stop reading from MySQL instead of buffering. The row
//! and byte limits do not apply; `PROXY_STREAM_TIMEOUT_MS` bounds the whole stream.

use crate::db::{self, ExecError, Sink};
use crate::error::ProxyError;
use crate::execute::{self, Attempt, Ran};
use crate::node::Node;
use crate::pool::SERVER_TIMEOUT_GRACE;
use crate::route::{Ask, Plan};
use crate::startup::State;
use actix_web::web::{self, Bytes};
use serde_json::Value as Json;
use sqlgate::stream::{self as ndjson, Done, Header};
use sqlgate::wire::{Column, Database, Prepared, RequestId, RowShape};
use sqlgate::Mode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Lines held between the database and the client: enough to keep both busy, few enough that a
/// slow client stops the reading within a few rows.
const BUFFER_LINES: usize = 16;

/// How long a client may read nothing while the stream has a line for it: then it counts as
/// gone, and the statement stops. Long enough for any reader that is reading; short enough that
/// stalled readers cannot hold the pools for the stream timeout.
const CLIENT_STALL_LIMIT: Duration = Duration::from_secs(10);

/// The least time the last line (done or error) is given to reach a slow client, even when
/// the stream's deadline has passed.
const LAST_LINE_WAIT: Duration = Duration::from_secs(1);

/// A streamed `/query`, as the handler checked it.
pub struct Request {
    pub request_id: RequestId,
    pub work: Prepared,
    /// The default schema for the statement.
    pub database: Option<Database>,
    pub mode: Mode,
    pub after_gtid: Option<String>,
    pub shape: RowShape,
    /// When the request arrived (for `duration_ms`).
    pub started: std::time::Instant,
}

/// One line for the response body.
pub enum Line {
    /// The header or a row.
    Part(Bytes),
    /// The done or error line, with what the request log records of the stream's end.
    Last {
        line: Bytes,
        /// The rows sent (a complete stream).
        rows: Option<u64>,
        /// The error the stream ended with.
        code: Option<sqlgate::ErrorCode>,
    },
}

impl Line {
    /// The bytes to send.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Line::Part(b) | Line::Last { line: b, .. } => b,
        }
    }
}

/// How a stream began: its header sent, or a failure before that (answered as a JSON error,
/// exactly as the JSON form would).
pub struct Opened {
    /// The last node tried, for the log line and the node header.
    pub node: Option<String>,
    pub result: Result<(), ProxyError>,
}

/// Starts streaming `request` in a task of its own. The first receiver resolves once the
/// statement has executed (its header is then the first of the lines) or failed before that;
/// dropping the lines' receiver (the client went away) stops the statement.
pub fn start(
    state: web::Data<State>,
    request: Request,
) -> (oneshot::Receiver<Opened>, mpsc::Receiver<Line>) {
    let (opened, opened_rx) = oneshot::channel();
    let (lines, lines_rx) = mpsc::channel(BUFFER_LINES);
    let outlet = Outlet {
        opened: Some(opened),
        lines,
    };
    tokio::spawn(run(state, request, outlet));
    (opened_rx, lines_rx)
}

/// Where the streaming task's news goes: how it began (once), then the lines.
struct Outlet {
    /// `None` once the header was sent.
    opened: Option<oneshot::Sender<Opened>>,
    lines: mpsc::Sender<Line>,
}

/// The streaming task: follows the plan, then ends the stream with its done or error line.
async fn run(state: web::Data<State>, request: Request, outlet: Outlet) {
    let ask = Ask {
        route: request.work.route(),
        mode: request.mode,
        after_gtid: request.after_gtid.as_deref(),
        ping_tolerance: state.config.ping_tolerance,
    };
    let deadline = Instant::now() + state.config.stream_timeout;
    let mut attempt = Streamed {
        request: &request,
        outlet,
        deadline,
    };
    let mut last_node = None;
    let followed = execute::follow(
        &state,
        &ask,
        &mut |n| last_node = Some(n.to_string()),
        &mut attempt,
    )
    .await;
    let Streamed { mut outlet, .. } = attempt;
    let last = match (followed, outlet.opened.take()) {
        (Err(e), Some(opened)) => {
            // Nothing sent yet: the handler answers with the JSON error.
            let _ = opened.send(Opened {
                node: last_node,
                result: Err(e),
            });
            return;
        }
        (Err(e), None) => {
            let id = request.request_id.as_str();
            let error = e.into_api(id).with_request_id(id);
            Line::Last {
                line: ndjson::error_line(&error.body()),
                rows: None,
                code: Some(error.code()),
            }
        }
        (Ok(done), None) => {
            let done = done_line(&request, done.output);
            Line::Last {
                line: ndjson::line(&done),
                rows: Some(done.row_count),
                code: None,
            }
        }
        (Ok(_), Some(opened)) => {
            let _ = opened.send(Opened {
                node: last_node,
                result: Err(ProxyError::Unexpected(
                    "a stream completed without its header".into(),
                )),
            });
            return;
        }
    };
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .max(LAST_LINE_WAIT);
    // A client that went away, or reads nothing more, misses the last line; nothing waits on it.
    let _ = tokio::time::timeout(wait, outlet.lines.send(last)).await;
}

/// The done line of a complete stream.
fn done_line(request: &Request, done: Finished) -> Done {
    Done {
        done: true,
        row_count: done.rows,
        rows_affected: done.summary.rows_affected,
        last_insert_id: done.summary.last_insert_id,
        gtid: if request.work.route() == sqlgate::Route::Write {
            done.summary.gtid
        } else {
            None
        },
        duration_ms: request.started.elapsed().as_secs_f64() * 1e3,
    }
}

/// What a complete stream reports in its done line.
struct Finished {
    summary: db::Summary,
    rows: u64,
}

/// The streamed attempt at a statement on one node.
struct Streamed<'a> {
    request: &'a Request,
    outlet: Outlet,
    /// The end of the whole stream (`PROXY_STREAM_TIMEOUT_MS` after it started).
    deadline: Instant,
}

impl Attempt for Streamed<'_> {
    type Output = Finished;

    async fn run(
        &mut self,
        state: &State,
        node: &Arc<Node>,
        plan: &Plan,
    ) -> Result<Ran<Finished>, ProxyError> {
        let work = &self.request.work;
        let _busy = node.begin();
        let mut lease = execute::lease(state, node, work.account()).await?;
        let killer = lease.conn().killer();
        let left = self.deadline.saturating_duration_since(Instant::now());
        // Closed when the response is dropped: the client went away, even mid-computation
        // (before a line was due) or before the header.
        let gone = self.outlet.lines.clone();
        let mut lines = Lines {
            outlet: &mut self.outlet,
            request: self.request,
            node,
            plan,
            keys: Vec::new(),
            rows: 0,
        };
        lease.set_busy(true);
        let work_done = db::within(
            &killer,
            left,
            lease.kill_limit(),
            ExecError::Deadline,
            async {
                let c = lease.conn();
                db::use_database(c, self.request.database.as_ref()).await?;
                if let Some(g) = &plan.wait_for {
                    if !db::wait_for_gtid(c, g, state.config.gtid_wait).await? {
                        return Ok(Ran::NotCaughtUp);
                    }
                }
                let settings = c.flavor.stream_sql(left + SERVER_TIMEOUT_GRACE);
                mysql_async::prelude::Queryable::query_drop(&mut c.conn, settings).await?;
                let done = db::run_into(&mut c.conn, work.sql(), work.params(), &mut lines).await;
                c.touch(done.as_ref().map_or(256, |d| d.received));
                Ok(Ran::Done(done?))
            },
        );
        let (ran, killed) = tokio::select! {
            biased;
            done = work_done => done,
            () = gone.closed() => (Err(ExecError::Abandoned), false),
        };
        let rows = lines.rows;
        let started = self.outlet.opened.is_none();
        settle(lease.conn(), killed, started, &ran);
        // A stream that failed after its header with part of its result unread: the lease's
        // drop kills the statement and discards the connection.
        // A client gone at any point leaves a statement that may still run: killed too.
        let abandoned = matches!(&ran, Err(ExecError::Abandoned));
        if abandoned {
            lease.conn().broken = true;
        }
        let unread = abandoned
            || (!killed
                && started
                && matches!(&ran, Err(e) if !matches!(e, ExecError::Sql { .. })));
        lease.set_busy(unread);
        Ok(ran?.map(|summary| Finished { summary, rows }))
    }
}

/// A connection that was killed, failed, or ended a stream with an error after its header
/// never goes back to the pool.
fn settle<T>(
    conn: &mut crate::pool::PooledConn,
    killed: bool,
    started: bool,
    outcome: &Result<T, ExecError>,
) {
    execute::mark(conn, killed, outcome);
    if started && outcome.is_err() {
        conn.broken = true;
    }
}

/// Turns a result into the stream's lines as it is read.
struct Lines<'a> {
    outlet: &'a mut Outlet,
    request: &'a Request,
    node: &'a Node,
    plan: &'a Plan,
    /// Object keys (`RowShape::keys`), for rows as objects.
    keys: Vec<String>,
    rows: u64,
}

impl Lines<'_> {
    /// Sends one line; a client that went away, or that reads nothing for
    /// `CLIENT_STALL_LIMIT`, stops the statement (a stalled reader would otherwise hold a
    /// database connection for the whole stream timeout).
    async fn send(&mut self, line: Bytes) -> Result<(), ExecError> {
        match tokio::time::timeout(CLIENT_STALL_LIMIT, self.outlet.lines.send(Line::Part(line)))
            .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(ExecError::Abandoned),
        }
    }
}

impl Sink for Lines<'_> {
    async fn columns(&mut self, columns: Vec<Column>) -> Result<(), ExecError> {
        let shape = self.request.shape;
        self.keys = shape.keys(&columns);
        let header = Header {
            request_id: self.request.request_id.to_string(),
            kind: self.request.work.route(),
            mode: self.request.mode,
            node: self.node.name().to_string(),
            role: self.node.role(),
            fallback: self.plan.fallback.clone(),
            columns: shape.include_metadata.then_some(columns),
        };
        self.send(ndjson::line(&header)).await?;
        let opened = self.outlet.opened.take().ok_or(ExecError::Abandoned)?;
        opened
            .send(Opened {
                node: Some(self.node.name().to_string()),
                result: Ok(()),
            })
            .map_err(|_| ExecError::Abandoned)
    }

    async fn row(&mut self, values: Vec<Json>, _size: usize) -> Result<(), ExecError> {
        let row = self.request.shape.row(&self.keys, values);
        self.send(ndjson::line(&row)).await?;
        self.rows += 1;
        Ok(())
    }
}
