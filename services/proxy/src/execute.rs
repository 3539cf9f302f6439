//! Carries out a request on the cluster: plans it (`route::plan`), leases a connection on the
//! planned node as the statement's account, runs it within its deadline, and follows the plan
//! when that fails (one retry elsewhere for a read that reached no server, the manager for a
//! read whose worker lags). `/transaction` runs here too, all or nothing.

use crate::db::{self, ExecError};
use crate::error::ProxyError;
use crate::node::{Cluster, Node};
use crate::pool::{Lease, PooledConn};
use crate::route::{self, Ask, Plan};
use crate::startup::State;
use sqlgate::wire::{Database, Isolation, Prepared, StatementResult};
use sqlgate::{ApiError, ErrorCode, Role};
use std::sync::Arc;

/// What a `/query` gave.
pub struct Answer {
    pub result: StatementResult,
    /// After a write: the GTID the server reported for it.
    pub gtid: Option<String>,
    pub node: Arc<Node>,
    pub fallback: Option<String>,
}

/// What running a statement on one node gave.
pub enum Ran<T> {
    Done(T),
    /// The worker had not applied the read's `after_gtid` in time; nothing was executed.
    NotCaughtUp,
}

impl<T> Ran<T> {
    /// The output of a completed run, changed by `f`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Ran<U> {
        match self {
            Ran::Done(t) => Ran::Done(f(t)),
            Ran::NotCaughtUp => Ran::NotCaughtUp,
        }
    }
}

/// One attempt at a `/query`'s statement on the node a plan chose: collected for the JSON
/// answer (`Collected`), or streamed (`crate::stream`). `follow` makes the attempts.
pub(crate) trait Attempt {
    /// What a successful attempt gives.
    type Output;
    /// Runs the statement on `node` as `plan` says. A failure to get a connection must come
    /// back as `ProxyError::NodeUnavailable` (nothing reached a server, so a read may go
    /// elsewhere); a worker behind the plan's GTID as `Ran::NotCaughtUp`.
    async fn run(
        &mut self,
        state: &State,
        node: &Arc<Node>,
        plan: &Plan,
    ) -> Result<Ran<Self::Output>, ProxyError>;
}

/// What the attempt that completed gave, where it ran and under which plan.
pub(crate) struct Followed<T> {
    pub output: T,
    pub node: Arc<Node>,
    pub plan: Plan,
}

/// Follows the routing plan for `ask`: the planned node, then (a read that reached no server)
/// once another, then (a worker that had not caught up) the manager. `node_seen` is told each
/// node tried, for the log line.
pub(crate) async fn follow<A: Attempt, N: FnMut(&str) + ?Sized>(
    state: &State,
    ask: &Ask<'_>,
    node_seen: &mut N,
    attempt: &mut A,
) -> Result<Followed<A::Output>, ProxyError> {
    let cluster: &Cluster = &state.cluster;
    let writes = ask.route == sqlgate::Route::Write;
    if writes && !hold_for_primary(state, None).await {
        return Err(ProxyError::NodeUnavailable {
            node: cluster.manager().name().to_string(),
            detail: "no single writable primary confirmed".into(),
        });
    }
    let view = cluster.view();
    let mut plan = route::plan(ask, &view, None);
    let mut node = cluster.get(&view, plan.node).clone();
    node_seen(node.name());
    let mut ran = attempt.run(state, &node, &plan).await;
    if plan.retry_elsewhere && ran.as_ref().is_err_and(ProxyError::retryable_read) {
        log::warn!(
            "Read could not get a connection, retrying on another node node={} error={}",
            node.name(),
            ran.as_ref()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        );
        let view = cluster.view();
        let exclude = view.nodes.iter().position(|n| n.id == node.index());
        plan = route::plan(ask, &view, exclude);
        node = cluster.get(&view, plan.node).clone();
        node_seen(node.name());
        ran = attempt.run(state, &node, &plan).await;
    }
    if writes && ran.as_ref().is_err_and(ProxyError::refused_read_only) {
        // The node was fenced after the plan was made (a switchover): nothing ran. Once the
        // monitors confirm a new primary, the write goes there, once.
        log::warn!(
            "Write refused by a read-only primary, holding it node={}",
            node.name()
        );
        if hold_for_primary(state, Some(node.index())).await {
            let view = cluster.view();
            plan = route::plan(ask, &view, None);
            node = cluster.get(&view, plan.node).clone();
            node_seen(node.name());
            ran = attempt.run(state, &node, &plan).await;
        }
    }
    if matches!(ran, Ok(Ran::NotCaughtUp)) {
        let view = cluster.view();
        let lagging = view
            .nodes
            .iter()
            .position(|n| n.id == node.index())
            .unwrap_or(0);
        plan = route::after_lag(&view, lagging, state.config.gtid_wait);
        node = cluster.get(&view, plan.node).clone();
        node_seen(node.name());
        ran = attempt.run(state, &node, &plan).await;
    }
    match ran? {
        Ran::Done(output) => Ok(Followed { output, node, plan }),
        Ran::NotCaughtUp => Err(ProxyError::Unexpected("the manager cannot lag".into())),
    }
}

/// Holds a write while no primary is confirmed and the last one still answers (it was fenced:
/// a switchover or failover is under way), or, with `refused_by`, until a primary other than
/// that node is confirmed: at most `PROXY_WRITE_WAIT_MS`. A primary that does not answer is not
/// waited for (its writes get 503 at once). Returns whether a primary is confirmed (and is not
/// `refused_by`).
async fn hold_for_primary(state: &State, refused_by: Option<usize>) -> bool {
    let cluster = &state.cluster;
    let topology = cluster.topology();
    let settled = || topology.confirmed() && refused_by.is_none_or(|old| topology.primary() != old);
    let deadline = tokio::time::Instant::now() + state.config.write_wait;
    while !settled() && tokio::time::Instant::now() < deadline {
        if refused_by.is_none() && !cluster.manager().health().reachable {
            break;
        }
        tokio::time::sleep(HOLD_POLL).await;
    }
    settled()
}

/// How often a held write looks at the topology again.
const HOLD_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Runs one statement as the plan says, with `database` as its default schema, its result
/// collected in memory (the JSON answer).
pub async fn query(
    state: &State,
    work: &Prepared,
    ask: &Ask<'_>,
    database: Option<&Database>,
    node_seen: &mut dyn FnMut(&str),
) -> Result<Answer, ProxyError> {
    let done = follow(state, ask, node_seen, &mut Collected { work, database }).await?;
    Ok(Answer {
        result: done.output.result,
        gtid: if work.route() == sqlgate::Route::Write {
            done.output.gtid
        } else {
            None
        },
        node: done.node,
        fallback: done.plan.fallback,
    })
}

/// The JSON answer's attempt: the whole result in memory, within the limits.
struct Collected<'a> {
    work: &'a Prepared,
    database: Option<&'a Database>,
}

impl Attempt for Collected<'_> {
    type Output = db::Executed;

    async fn run(
        &mut self,
        state: &State,
        node: &Arc<Node>,
        plan: &Plan,
    ) -> Result<Ran<db::Executed>, ProxyError> {
        run_once(state, node, self.work, plan, self.database).await
    }
}

/// Leases a connection of `node` as the work's account (a failure here reached no server).
pub async fn lease(state: &State, node: &Node, account: Role) -> Result<Lease, ProxyError> {
    node.lease(account, state.config.connect_timeout)
        .await
        .map_err(|detail| ProxyError::NodeUnavailable {
            node: node.name().to_string(),
            detail,
        })
}

/// Runs `work` on `node` once: waits for the plan's GTID, then the statement, within the
/// statement deadline (past it the statement is killed: `db::within`).
async fn run_once(
    state: &State,
    node: &Arc<Node>,
    work: &Prepared,
    plan: &Plan,
    database: Option<&Database>,
) -> Result<Ran<db::Executed>, ProxyError> {
    let _busy = node.begin();
    let mut lease = lease(state, node, work.account()).await?;
    let killer = lease.conn().killer();
    let cfg = &state.config;
    lease.set_busy(true);
    let (ran, killed) = db::within(
        &killer,
        cfg.statement_timeout,
        lease.kill_limit(),
        ExecError::Deadline,
        async {
            let c = lease.conn();
            db::use_database(c, database).await?;
            if let Some(g) = &plan.wait_for {
                if !db::wait_for_gtid(c, g, cfg.gtid_wait).await? {
                    return Ok(Ran::NotCaughtUp);
                }
            }
            // The text the client sent, as the policy checked it: the server parses what was
            // checked, never a re-rendering of it.
            let done = db::run(&mut c.conn, work.sql(), work.params(), &cfg.limits).await;
            c.touch(done.as_ref().map_or(256, |d| d.received));
            Ok(Ran::Done(done?))
        },
    )
    .await;
    lease.set_busy(false);
    mark(lease.conn(), killed, &ran);
    Ok(ran?)
}

/// A killed connection, or one whose state is unknown, never goes back to the pool.
pub fn mark<T>(conn: &mut PooledConn, killed: bool, outcome: &Result<T, ExecError>) {
    if killed || outcome.as_ref().is_err_and(ExecError::breaks_connection) {
        conn.broken = true;
    }
}

/// How a transaction runs, besides its statements.
#[derive(Debug, Clone, Copy, Default)]
pub struct TxOptions<'a> {
    /// The default schema of its statements.
    pub database: Option<&'a Database>,
    /// `START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT`, as the read account, on the
    /// node the plan (a read's) chooses: the server refuses any write in it, whatever the
    /// classifier thought of the statements.
    pub read_only: bool,
    /// `SET TRANSACTION ISOLATION LEVEL …` before it starts (for this transaction only).
    pub isolation: Option<Isolation>,
}

/// Where a transaction ran: the node, and why not on a worker when a read-only one's mode asked
/// for one.
pub struct Placed {
    pub node: Arc<Node>,
    pub fallback: Option<String>,
}

/// What a transaction gave.
pub struct TxAnswer {
    pub results: Vec<StatementResult>,
    /// After one that wrote: the GTID the server reported with its COMMIT.
    pub gtid: Option<String>,
    pub placed: Placed,
}

/// Runs `statements` in one transaction: all committed, or none. A read-write one runs on the
/// manager as the greatest of its statements' accounts; a read-only one where `ask` (a read)
/// plans it, as the read account. Everything before COMMIT shares the transaction's deadline
/// (`PROXY_TRANSACTION_TIMEOUT_MS`): past it the connection is killed, which rolls the
/// transaction back. COMMIT, once sent, is never killed on that account: the server may be
/// committing, and a kill would not undo it. It gets the statement deadline; a COMMIT that does
/// not answer within it is killed and reported as of unknown outcome.
pub async fn transaction(
    state: &State,
    statements: &[Prepared],
    options: &TxOptions<'_>,
    ask: &Ask<'_>,
    request_id: &str,
    node_seen: &mut dyn FnMut(&str),
) -> Result<TxAnswer, ProxyError> {
    let account = if options.read_only {
        Role::Read
    } else {
        statements
            .iter()
            .map(Prepared::account)
            .max()
            .unwrap_or(Role::Read)
    };
    let mut attempt = TxAttempt {
        statements,
        options,
        account,
        request_id,
    };
    let done = follow(state, ask, node_seen, &mut attempt).await?;
    let (results, gtid) = done.output;
    Ok(TxAnswer {
        results,
        gtid: if options.read_only { None } else { gtid },
        placed: Placed {
            node: done.node,
            fallback: done.plan.fallback,
        },
    })
}

/// `transaction`'s attempt on one node.
struct TxAttempt<'a> {
    statements: &'a [Prepared],
    options: &'a TxOptions<'a>,
    account: Role,
    request_id: &'a str,
}

impl Attempt for TxAttempt<'_> {
    type Output = (Vec<StatementResult>, Option<String>);

    async fn run(
        &mut self,
        state: &State,
        node: &Arc<Node>,
        plan: &Plan,
    ) -> Result<Ran<Self::Output>, ProxyError> {
        transaction_on(
            state,
            node,
            plan,
            self.statements,
            self.options,
            self.account,
            self.request_id,
        )
        .await
    }
}

/// One attempt of `transaction`, on `node` as `plan` says.
async fn transaction_on(
    state: &State,
    node: &Arc<Node>,
    plan: &Plan,
    statements: &[Prepared],
    options: &TxOptions<'_>,
    account: Role,
    request_id: &str,
) -> Result<Ran<(Vec<StatementResult>, Option<String>)>, ProxyError> {
    let _busy = node.begin();
    let mut lease = lease(state, node, account).await?;
    let killer = lease.conn().killer();
    let kill_limit = lease.kill_limit();
    let deadline = tokio::time::Instant::now() + state.config.transaction_timeout;
    lease.set_busy(true);
    let conn = lease.conn();
    let mut received = 0;
    let steps = Steps {
        killer: &killer,
        kill_limit,
        deadline,
    };
    let work = Transaction {
        statements,
        options,
        wait_for: plan.wait_for.as_deref(),
        request_id,
    };
    let outcome = run_transaction(state, conn, &steps, &work, &mut received).await;
    conn.touch(received.max(256));
    if outcome.as_ref().is_err_and(ProxyError::breaks_connection) {
        conn.broken = true;
    }
    lease.set_busy(false);
    outcome
}

/// What `run_transaction` runs.
struct Transaction<'a> {
    statements: &'a [Prepared],
    options: &'a TxOptions<'a>,
    /// A worker must have applied this before the transaction starts.
    wait_for: Option<&'a str>,
    request_id: &'a str,
}

/// How each step of a transaction is bounded.
struct Steps<'a> {
    killer: &'a crate::pool::Killer,
    kill_limit: std::time::Duration,
    /// The transaction's deadline, for everything before COMMIT.
    deadline: tokio::time::Instant,
}

impl Steps<'_> {
    /// Runs one step before COMMIT within both the statement deadline and what is left of the
    /// transaction's. A killed step is an error whatever it returned: the kill rolled the
    /// transaction back.
    async fn run<T>(
        &self,
        statement_timeout: std::time::Duration,
        work: impl std::future::Future<Output = Result<T, ExecError>>,
    ) -> Result<T, ExecError> {
        let left = self
            .deadline
            .saturating_duration_since(tokio::time::Instant::now());
        let transaction_bound = left <= statement_timeout;
        let expired = || {
            if transaction_bound {
                ExecError::TransactionDeadline
            } else {
                ExecError::Deadline
            }
        };
        let (done, killed) = db::within(
            self.killer,
            left.min(statement_timeout),
            self.kill_limit,
            expired(),
            work,
        )
        .await;
        if killed {
            return Err(expired());
        }
        done
    }
}

/// The statements between START TRANSACTION and COMMIT. After each statement the server's
/// status flags must still show the transaction open, so a statement that ended it (an implicit
/// commit the classifier missed) is reported, not mistaken for success.
async fn run_transaction(
    state: &State,
    conn: &mut PooledConn,
    steps: &Steps<'_>,
    work: &Transaction<'_>,
    received: &mut usize,
) -> Result<Ran<(Vec<StatementResult>, Option<String>)>, ProxyError> {
    use mysql_async::prelude::Queryable;
    let cfg = &state.config;
    let request_id = work.request_id;
    // A failure names its statement; one of the transaction itself (START, COMMIT) does not.
    // A lost connection or a passed deadline stays as it is, so the connection is discarded.
    let fail = |index: Option<usize>, e: ExecError| -> ProxyError {
        if e.breaks_connection() || e.refused_read_only() {
            return ProxyError::Exec(e);
        }
        let api = ProxyError::Exec(e).into_api(request_id);
        ProxyError::Client(match index {
            Some(i) => api.with_statement_index(i),
            None => api,
        })
    };
    let caught_up = steps
        .run(cfg.statement_timeout, async {
            db::use_database(conn, work.options.database).await?;
            if let Some(g) = work.wait_for {
                if !db::wait_for_gtid(conn, g, cfg.gtid_wait).await? {
                    return Ok(false);
                }
            }
            if let Some(level) = work.options.isolation {
                let set = format!("SET TRANSACTION ISOLATION LEVEL {}", level.sql());
                conn.conn.query_drop(set).await?;
            }
            conn.conn.query_drop(start_sql(work.options)).await?;
            Ok(true)
        })
        .await
        .map_err(|e| fail(None, e))?;
    if !caught_up {
        return Ok(Ran::NotCaughtUp);
    }
    let mut results = Vec::with_capacity(work.statements.len());
    for (i, s) in work.statements.iter().enumerate() {
        let done = steps
            .run(
                cfg.statement_timeout,
                db::run(&mut conn.conn, s.sql(), s.params(), &cfg.limits),
            )
            .await
            .map_err(|e| fail(Some(i), e))?;
        *received += done.received;
        results.push(done.result);
        if !db::in_transaction(&conn.conn) {
            log::error!(
                "A statement ended its transaction request_id={request_id} statement_index={i}"
            );
            let broken = ApiError::new(
                ErrorCode::TransactionBroken,
                "this statement ended the transaction on the server; what ran before it \
                 may have been committed, nothing after it ran",
            );
            return Err(ProxyError::Client(broken.with_statement_index(i)));
        }
    }
    if tokio::time::Instant::now() >= steps.deadline {
        // Not sent: the reset after this request rolls the transaction back.
        return Err(ProxyError::Exec(ExecError::TransactionDeadline));
    }
    let (committed, killed) = db::within(
        steps.killer,
        cfg.statement_timeout,
        steps.kill_limit,
        ExecError::CommitUnknown,
        async { Ok(conn.conn.query_drop("COMMIT").await?) },
    )
    .await;
    match (committed, killed) {
        (Ok(()), _) => Ok(Ran::Done((results, db::gtid_from_ok(&conn.conn)))),
        (Err(_), true) => Err(ProxyError::Exec(ExecError::CommitUnknown)),
        (Err(e), false) => Err(fail(None, e)),
    }
}

/// The statement that opens the transaction. A read-only one also takes its snapshot at once,
/// so every statement sees the same point in time (under REPEATABLE READ; the other levels
/// ignore it).
fn start_sql(options: &TxOptions<'_>) -> &'static str {
    if options.read_only {
        "START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT"
    } else {
        "START TRANSACTION"
    }
}
