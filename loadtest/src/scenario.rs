//! The scenarios: `seed` (per mode, N writes then N reads, as the seed report measured) and
//! `select` (point selects on the sysbench tables, to compare with sysbench itself).

use crate::client::{request, Gateway};
use crate::error::Error;
use crate::report::{PhaseRow, SeedReport};
use crate::runner::{self, PhaseResult, Stop};
use crate::schedule::Load;
use crate::verify::{self, Expectation};
use indicatif::ProgressBar;
use rand::Rng;
use serde_json::Value;
use sqlgate::wire::Mode;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// MySQL's "table doesn't exist".
const ER_NO_SUCH_TABLE: u16 = 1146;

/// The gatekeeper to load and the keys to use on it.
#[derive(Clone)]
pub struct Target {
    pub gateway: Gateway,
    /// Sends every request: a write (or admin) key for `seed`, any key for `select`.
    pub key: String,
    /// Creates the loadtest table when it is missing; not needed once it exists.
    pub admin_key: Option<String>,
}

/// What `seed` does.
#[derive(Debug, Clone)]
pub struct SeedOptions {
    /// Writes, then reads, per mode.
    pub requests: u64,
    pub load: Load,
    pub modes: Vec<Mode>,
    /// `schema.table` the run writes to (created if missing).
    pub table: String,
    /// How long replicas may take to show every row before the count says they differ.
    pub verify_within: Duration,
}

/// Checks that `name` is `schema.table` of plain identifiers (it is spliced into SQL).
pub fn check_table_name(name: &str) -> Result<(), Error> {
    let ident =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    match name.split_once('.') {
        Some((schema, table)) if ident(schema) && ident(table) => Ok(()),
        _ => Err(Error::Usage(format!(
            "table {name:?} must be schema.table, letters, digits and _ only"
        ))),
    }
}

/// Readiness and the key, before any load: one clear line when either is wrong.
pub async fn preflight(target: &Target) -> Result<(), Error> {
    target.gateway.check_ready().await?;
    match target
        .gateway
        .query(&target.key, &request("SELECT 1", vec![], Mode::Direct))
        .await
    {
        Ok(_) => Ok(()),
        Err(r) if r.status == Some(401) => Err(Error::Refused(format!(
            "the gatekeeper at {} refused the API key ({r}): check API_KEY or the key file",
            target.gateway.url()
        ))),
        Err(r) => Err(Error::Unreachable(format!(
            "the gatekeeper at {} cannot serve a query: {r}",
            target.gateway.url()
        ))),
    }
}

/// Creates the loadtest table (admin key) unless it exists; never touches other tables.
pub async fn ensure_table(target: &Target, table: &str) -> Result<(), Error> {
    check_table_name(table)?;
    let probe = request(
        format!("SELECT 1 FROM {table} LIMIT 1"),
        vec![],
        Mode::Direct,
    );
    match target.gateway.query(&target.key, &probe).await {
        Ok(_) => return Ok(()),
        Err(r) if r.mysql_code == Some(ER_NO_SUCH_TABLE) => {}
        Err(r) => return Err(Error::Refused(format!("cannot read {table}: {r}"))),
    }
    let Some(admin) = &target.admin_key else {
        return Err(Error::Usage(format!(
            "{table} does not exist and no admin key was given to create it: set ADMIN_API_KEY \
             (locally .local/keys/admin)"
        )));
    };
    let ddl = format!(
        "CREATE TABLE IF NOT EXISTS {table} (\
         id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, \
         run_id VARCHAR(40) NOT NULL, \
         mode VARCHAR(16) NOT NULL, \
         seq INT UNSIGNED NOT NULL, \
         payload VARCHAR(64) NOT NULL, \
         created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
         UNIQUE KEY run_mode_seq (run_id, mode, seq)) ENGINE=InnoDB"
    );
    target
        .gateway
        .query(admin, &request(ddl, vec![], Mode::Direct))
        .await
        .map_err(|r| Error::Refused(format!("cannot create {table} with the admin key: {r}")))?;
    Ok(())
}

/// A fresh run id: the UTC time and 8 random hex digits.
pub fn new_run_id(stamp: &str) -> String {
    format!("{stamp}-{:08x}", rand::random::<u32>())
}

/// The seed benchmark: for each mode, `requests` inserts then `requests` point reads of the
/// rows just written; then the rows are counted on every node.
pub async fn seed(
    target: &Target,
    opts: &SeedOptions,
    started_at: &str,
    progress: &ProgressBar,
) -> Result<SeedReport, Error> {
    preflight(target).await?;
    ensure_table(target, &opts.table).await?;
    let run_id = new_run_id(started_at);
    let insert = Arc::new(format!(
        "INSERT INTO {} (run_id, mode, seq, payload) VALUES (?, ?, ?, ?)",
        opts.table
    ));
    let select = Arc::new(format!(
        "SELECT id, payload FROM {} WHERE run_id = ? AND mode = ? AND seq = ?",
        opts.table
    ));
    progress.set_length(opts.requests * 2 * opts.modes.len() as u64);
    let mut rows = Vec::new();
    let mut warnings = Vec::new();
    let (mut acknowledged, mut maybe_executed) = (0, 0);
    let mut workers_seen = BTreeSet::new();
    for &mode in &opts.modes {
        for kind in ["write", "read"] {
            progress.set_message(format!("{} {kind}s", mode.as_str()));
            let (g, key, run_id) = (
                target.gateway.clone(),
                Arc::new(target.key.clone()),
                run_id.clone(),
            );
            let n = opts.requests;
            let r = if kind == "write" {
                let sql = insert.clone();
                runner::run(opts.load, Stop::Count(n), progress, move |i| {
                    let params = vec![
                        Value::from(run_id.as_str()),
                        Value::from(mode.as_str()),
                        Value::from(i),
                        Value::from(format!("{run_id}/{}/{i:08}", mode.as_str())),
                    ];
                    let body = serde_json::to_vec(&request(sql.as_str(), params, mode))
                        .expect("serializes");
                    let (g, key) = (g.clone(), key.clone());
                    async move { g.send(&key, body, true).await }
                })
                .await
            } else {
                let sql = select.clone();
                runner::run(opts.load, Stop::Count(n), progress, move |i| {
                    let params = vec![
                        Value::from(run_id.as_str()),
                        Value::from(mode.as_str()),
                        Value::from(i),
                    ];
                    let body = serde_json::to_vec(&request(sql.as_str(), params, mode))
                        .expect("serializes");
                    let (g, key) = (g.clone(), key.clone());
                    async move { g.send(&key, body, false).await }
                })
                .await
            };
            refuse_if_forbidden(&r, mode, kind)?;
            if kind == "write" {
                acknowledged += r.ok();
                maybe_executed += r.maybe_executed;
            } else {
                workers_seen.extend(r.nodes.keys().cloned());
            }
            rows.push(PhaseRow::new(mode.as_str(), kind, &r));
        }
    }
    progress.finish_and_clear();
    let limited: u64 = rows.iter().map(|r| r.rate_limited()).sum();
    if limited > 0 {
        warnings.push(format!(
            "{limited} requests were rate-limited (429) by the gatekeeper: its per-key limit \
             (GATEKEEPER_RATE_LIMIT_RPS) is below the offered load; start it with \
             GATEKEEPER_RATE_LIMIT_RPS=0 or offer less (--rate)"
        ));
    }
    let want = Expectation {
        table: &opts.table,
        run_id: &run_id,
        acknowledged,
        maybe_executed,
        workers_seen,
    };
    let verification =
        verify::count_rows(&target.gateway, &target.key, &want, opts.verify_within).await?;
    Ok(SeedReport {
        scenario: "seed".into(),
        started_at: started_at.to_string(),
        gatekeeper: target.gateway.url().to_string(),
        run_id,
        table: opts.table.clone(),
        requests_per_phase: opts.requests,
        load: opts.load,
        rows,
        verification,
        warnings,
    })
}

/// A phase whose every request the gatekeeper refused for the key's sake stops the run.
fn refuse_if_forbidden(r: &PhaseResult, mode: Mode, kind: &str) -> Result<(), Error> {
    let forbidden: u64 = r
        .errors
        .iter()
        .filter(|(code, _)| code.starts_with("http_401") || code.starts_with("http_403"))
        .map(|(_, n)| n)
        .sum();
    if r.sent > 0 && forbidden == r.sent {
        let codes: Vec<&String> = r.errors.keys().collect();
        return Err(Error::Refused(format!(
            "the gatekeeper refused every {} {kind} ({codes:?}): seed needs a write or admin key",
            mode.as_str()
        )));
    }
    Ok(())
}

/// What `select` does.
#[derive(Debug, Clone)]
pub struct SelectOptions {
    pub mode: Mode,
    pub load: Load,
    pub stop: Stop,
    /// Unmeasured load first, so pools and caches are warm.
    pub warmup: Duration,
    /// sysbench's layout: `sbtest.sbtest1` … `sbtest.sbtest<tables>`, ids 1 to `table_size`.
    pub tables: u32,
    pub table_size: u64,
}

/// Checks that the sysbench tables hold what `select` will ask for.
pub async fn check_sbtest(target: &Target, tables: u32, table_size: u64) -> Result<(), Error> {
    let sql = format!("SELECT id FROM sbtest.sbtest{tables} WHERE id = ?");
    match target
        .gateway
        .query(
            &target.key,
            &request(sql, vec![Value::from(table_size)], Mode::Direct),
        )
        .await
    {
        Ok(r) if r.result.rows.len() == 1 => Ok(()),
        Ok(_) | Err(_) => Err(Error::Usage(format!(
            "sbtest.sbtest{tables} has no row {table_size}: prepare the sysbench tables first \
             (make sysbench, or loadtest sysbench --prepare-only)"
        ))),
    }
}

/// Point selects `SELECT c FROM sbtest.sbtestN WHERE id = ?`, ids uniform as sysbench's
/// `--rand-type=uniform`, through the gateway.
pub async fn select(
    target: &Target,
    opts: &SelectOptions,
    progress: &ProgressBar,
) -> Result<PhaseResult, Error> {
    let sql: Arc<Vec<String>> = Arc::new(
        (1..=opts.tables)
            .map(|t| format!("SELECT c FROM sbtest.sbtest{t} WHERE id = ?"))
            .collect(),
    );
    let (g, key, mode, size) = (
        target.gateway.clone(),
        Arc::new(target.key.clone()),
        opts.mode,
        opts.table_size,
    );
    let op = move |_i: u64| {
        let mut rng = rand::rng();
        let t = rng.random_range(0..sql.len());
        let id = rng.random_range(1..=size);
        let body = serde_json::to_vec(&request(sql[t].as_str(), vec![Value::from(id)], mode))
            .expect("serializes");
        let (g, key) = (g.clone(), key.clone());
        async move { g.send(&key, body, false).await }
    };
    let op = Arc::new(op);
    if !opts.warmup.is_zero() {
        let warm = op.clone();
        runner::run(
            opts.load,
            Stop::After(opts.warmup),
            &ProgressBar::hidden(),
            move |i| warm(i),
        )
        .await;
    }
    let r = runner::run(opts.load, opts.stop, progress, move |i| op(i)).await;
    refuse_if_forbidden(&r, opts.mode, "read")?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_checked_before_reaching_sql() {
        let cases = [
            ("app.loadtest", true, "schema.table"),
            ("app.load_test2", true, "underscores and digits"),
            ("loadtest", false, "no schema"),
            ("app.loadtest; DROP TABLE x", false, "injection"),
            ("sqlgate.", false, "empty table"),
            ("a.b.c", false, "three parts"),
        ];
        for (name, ok, what) in cases {
            assert_eq!(check_table_name(name).is_ok(), ok, "{what}: {name}");
        }
    }

    #[test]
    fn a_phase_refused_for_the_key_stops_the_run() {
        let mut r = PhaseResult {
            sent: 3,
            ..PhaseResult::default()
        };
        r.errors.insert("http_403_forbidden".into(), 3);
        assert!(
            refuse_if_forbidden(&r, Mode::Random, "write").is_err(),
            "all 403"
        );
        r.errors.insert("http_403_forbidden".into(), 2);
        r.errors.insert("http_429_rate_limited".into(), 1);
        assert!(
            refuse_if_forbidden(&r, Mode::Random, "write").is_ok(),
            "mixed failures are reported, not fatal"
        );
    }

    #[test]
    fn run_ids_are_unique_and_fit_the_column() {
        let a = new_run_id("20260101T000000Z");
        let b = new_run_id("20260101T000000Z");
        assert_ne!(a, b, "two runs in the same second differ");
        assert!(a.len() <= 40, "fits VARCHAR(40): {a}");
    }
}
