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
use sqlgate::wire::{Mode, QueryRequest};
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

/// What each request of a point workload does, on sysbench's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// `SELECT c FROM sbtest.sbtestN WHERE id = ?`, as sysbench's `oltp_point_select`.
    PointSelect,
    /// `INSERT INTO sbtest.sbtestN (k, c, pad) VALUES (?, ?, ?)`: a new row whose id comes
    /// from AUTO_INCREMENT, so above the loaded range (as sysbench's `oltp_insert`).
    PointInsert,
    /// `UPDATE sbtest.sbtestN SET k = k + 1 WHERE id = ?`, as sysbench's `oltp_update_index`.
    PointUpdate,
    /// `write_percent` of every 100 requests are point updates, spread evenly, the others
    /// point selects.
    Mix { write_percent: u32 },
}

impl Workload {
    /// The name in reports and on the command line: `point_select`, `insert`, `update`,
    /// `mix_90_10`.
    pub fn label(self) -> String {
        match self {
            Workload::PointSelect => "point_select".into(),
            Workload::PointInsert => "insert".into(),
            Workload::PointUpdate => "update".into(),
            Workload::Mix { write_percent } => {
                format!("mix_{}_{write_percent}", 100 - write_percent)
            }
        }
    }

    /// Whether any of its requests writes (and so needs a write key).
    pub fn writes(self) -> bool {
        !matches!(self, Workload::PointSelect)
    }
}

/// Whether request `i` (from 0) of a mix is a write: exactly `write_percent` of every 100
/// consecutive requests, evenly spread (the 10th, 20th, … for 10%). The same rule as
/// `loadtest/sysbench/oltp_point_mix.lua`, so both sides run the same sequence.
pub fn mix_is_write(i: u64, write_percent: u32) -> bool {
    let w = u64::from(write_percent.min(100));
    (i + 1) * w / 100 > i * w / 100
}

/// `groups` groups of 11 random digits joined by `-`, as sysbench fills `c` (10 groups, 119
/// characters) and `pad` (5 groups, 59 characters).
pub fn sysbench_chars(groups: usize, rng: &mut impl Rng) -> String {
    let mut s = String::with_capacity(groups * 12);
    for g in 0..groups {
        if g > 0 {
            s.push('-');
        }
        for _ in 0..11 {
            s.push(char::from(b'0' + rng.random_range(0..10u8)));
        }
    }
    s
}

/// The statements of a workload, built once per run.
#[derive(Debug, Clone)]
pub struct Statements {
    workload: Workload,
    table_size: u64,
    /// The seed design's API: values inlined in the SQL (it had no parameters) and a
    /// `request_id` in every body.
    inline: bool,
    select: Vec<String>,
    insert: Vec<String>,
    update: Vec<String>,
}

impl Statements {
    pub fn new(workload: Workload, tables: u32, table_size: u64, inline: bool) -> Statements {
        let each = |f: &dyn Fn(u32) -> String| (1..=tables.max(1)).map(f).collect();
        let (sel, ins, upd) = if inline {
            (
                "SELECT c FROM sbtest.sbtest{t} WHERE id = ",
                "INSERT INTO sbtest.sbtest{t} (k, c, pad) VALUES (",
                "UPDATE sbtest.sbtest{t} SET k = k + 1 WHERE id = ",
            )
        } else {
            (
                "SELECT c FROM sbtest.sbtest{t} WHERE id = ?",
                "INSERT INTO sbtest.sbtest{t} (k, c, pad) VALUES (?, ?, ?)",
                "UPDATE sbtest.sbtest{t} SET k = k + 1 WHERE id = ?",
            )
        };
        Statements {
            workload,
            table_size: table_size.max(1),
            inline,
            select: each(&|t| sel.replace("{t}", &t.to_string())),
            insert: each(&|t| ins.replace("{t}", &t.to_string())),
            update: each(&|t| upd.replace("{t}", &t.to_string())),
        }
    }

    /// Request `i`: the `POST /query` body and whether it writes. Tables and ids are uniform
    /// at random, as sysbench's `--rand-type=uniform`.
    pub fn request(&self, i: u64, mode: Mode, rng: &mut impl Rng) -> (QueryRequest, bool) {
        let kind = match self.workload {
            Workload::PointSelect => Kind::Select,
            Workload::PointInsert => Kind::Insert,
            Workload::PointUpdate => Kind::Update,
            Workload::Mix { write_percent } if mix_is_write(i, write_percent) => Kind::Update,
            Workload::Mix { .. } => Kind::Select,
        };
        let t = rng.random_range(0..self.select.len());
        let id = rng.random_range(1..=self.table_size);
        let (sql, params) = match kind {
            Kind::Select if self.inline => (format!("{}{id}", self.select[t]), vec![]),
            Kind::Select => (self.select[t].clone(), vec![Value::from(id)]),
            Kind::Update if self.inline => (format!("{}{id}", self.update[t]), vec![]),
            Kind::Update => (self.update[t].clone(), vec![Value::from(id)]),
            Kind::Insert => {
                let k = rng.random_range(1..=self.table_size);
                let (c, pad) = (sysbench_chars(10, rng), sysbench_chars(5, rng));
                if self.inline {
                    // Digits and dashes only: nothing to escape.
                    (format!("{}{k}, '{c}', '{pad}')", self.insert[t]), vec![])
                } else {
                    (
                        self.insert[t].clone(),
                        vec![Value::from(k), Value::from(c), Value::from(pad)],
                    )
                }
            }
        };
        let mut req = request(sql, params, mode);
        if self.inline {
            req.request_id = Some(format!("loadtest-{i}"));
        }
        (req, kind != Kind::Select)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Select,
    Insert,
    Update,
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
    /// What each request does (point selects unless told otherwise).
    pub workload: Workload,
    /// The seed design's API (`loadtest/seed-peer/`): values inlined in the SQL, no `/ready`.
    pub seed_api: bool,
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

/// The seed design's peer has no `/ready` and answers in its own shape: one point select
/// through it, which must come back 200 with a node, before any load.
pub async fn seed_preflight(target: &Target, tables: u32, table_size: u64) -> Result<(), Error> {
    let statements = Statements::new(Workload::PointSelect, tables, table_size, true);
    let (req, _) = statements.request(0, Mode::Random, &mut rand::rng());
    let body = serde_json::to_vec(&req).expect("serializes");
    let outcome = target.gateway.send(&target.key, body, false).await;
    match outcome.error {
        None => Ok(()),
        Some(f) if f.code.starts_with("http_401") => Err(Error::Refused(format!(
            "the seed design's gatekeeper at {} refused the key ({}): check SEED_API_KEY",
            target.gateway.url(),
            f.code
        ))),
        Some(f) => Err(Error::Unreachable(format!(
            "the seed design's gatekeeper at {} cannot serve a point select: {} (is it running? \
             loadtest/seed-peer/seed-peer.sh start)",
            target.gateway.url(),
            f.code
        ))),
    }
}

/// Point requests on the sysbench tables through a gatekeeper (point selects, inserts,
/// updates or a mix, per `opts.workload`).
pub async fn select(
    target: &Target,
    opts: &SelectOptions,
    progress: &ProgressBar,
) -> Result<PhaseResult, Error> {
    let statements = Arc::new(Statements::new(
        opts.workload,
        opts.tables,
        opts.table_size,
        opts.seed_api,
    ));
    let (g, key, mode, seed_api) = (
        target.gateway.clone(),
        Arc::new(target.key.clone()),
        opts.mode,
        opts.seed_api,
    );
    let op = move |i: u64| {
        let (req, write) = statements.request(i, mode, &mut rand::rng());
        let body = serde_json::to_vec(&req).expect("serializes");
        let (g, key) = (g.clone(), key.clone());
        // A write must report its one row (the seed's answers carry no row count).
        let expect_one_row = write && !seed_api;
        async move { g.send(&key, body, expect_one_row).await }
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
    let kind = if opts.workload.writes() {
        "write"
    } else {
        "read"
    };
    refuse_if_forbidden(&r, opts.mode, kind)?;
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

    #[test]
    fn a_mix_writes_exactly_its_share_evenly() {
        let writes = |w: u32, n: u64| (0..n).filter(|&i| mix_is_write(i, w)).count();
        assert_eq!(writes(10, 100), 10, "10% of 100");
        assert_eq!(writes(10, 1000), 100, "10% of 1000");
        assert_eq!(writes(25, 100), 25, "25% of 100");
        assert_eq!(writes(0, 100), 0, "none");
        assert_eq!(writes(100, 100), 100, "all");
        let at: Vec<u64> = (0..30).filter(|&i| mix_is_write(i, 10)).collect();
        assert_eq!(at, [9, 19, 29], "every 10th request, never two in a row");
        for start in [0u64, 7, 123_456] {
            assert_eq!(
                (start..start + 10).filter(|&i| mix_is_write(i, 10)).count(),
                1,
                "any 10 consecutive requests hold one write (from {start})"
            );
        }
    }

    #[test]
    fn sysbench_strings_have_its_shape() {
        let mut rng = rand::rng();
        let c = sysbench_chars(10, &mut rng);
        let pad = sysbench_chars(5, &mut rng);
        assert_eq!(
            (c.len(), pad.len()),
            (119, 59),
            "CHAR(120) and CHAR(60) fit"
        );
        assert!(
            c.split('-')
                .all(|g| g.len() == 11 && g.bytes().all(|b| b.is_ascii_digit())),
            "groups of 11 digits: {c}"
        );
    }

    #[test]
    fn statements_of_each_workload() {
        let mut rng = rand::rng();
        let sel = Statements::new(Workload::PointSelect, 2, 100, false);
        let (r, write) = sel.request(0, Mode::Random, &mut rng);
        assert!(!write, "a select reads");
        assert!(
            r.sql.starts_with("SELECT c FROM sbtest.sbtest") && r.sql.ends_with("WHERE id = ?"),
            "{}",
            r.sql
        );
        let id = r.params.positional()[0].as_u64().unwrap();
        assert!((1..=100).contains(&id), "id in the loaded range: {id}");
        assert_eq!(
            (r.mode, r.request_id),
            (Some(Mode::Random), None),
            "mode kept"
        );

        let ins = Statements::new(Workload::PointInsert, 2, 100, false);
        let (r, write) = ins.request(5, Mode::Random, &mut rng);
        assert!(write, "an insert writes");
        assert!(
            r.sql.ends_with("(k, c, pad) VALUES (?, ?, ?)") && r.params.len() == 3,
            "no id: AUTO_INCREMENT puts it above the loaded range: {r:?}"
        );

        let upd = Statements::new(Workload::PointUpdate, 1, 100, false);
        let (r, write) = upd.request(5, Mode::Direct, &mut rng);
        assert!(write, "an update writes");
        assert_eq!(r.sql, "UPDATE sbtest.sbtest1 SET k = k + 1 WHERE id = ?");

        let mix = Statements::new(Workload::Mix { write_percent: 10 }, 2, 100, false);
        let kinds: Vec<bool> = (0..20)
            .map(|i| mix.request(i, Mode::Random, &mut rng).1)
            .collect();
        assert_eq!(
            kinds.iter().filter(|w| **w).count(),
            2,
            "2 writes in 20: {kinds:?}"
        );
        assert!(kinds[9] && kinds[19], "the 10th and 20th: {kinds:?}");
        assert!(
            mix.request(9, Mode::Random, &mut rng)
                .0
                .sql
                .starts_with("UPDATE"),
            "a mix's writes are point updates"
        );

        let seed = Statements::new(Workload::PointSelect, 1, 7, true);
        let (r, _) = seed.request(3, Mode::Random, &mut rng);
        assert!(r.params.is_empty(), "the seed had no parameters");
        let id: u64 = r
            .sql
            .strip_prefix("SELECT c FROM sbtest.sbtest1 WHERE id = ")
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=7).contains(&id), "id inlined: {}", r.sql);
        assert_eq!(
            r.request_id.as_deref(),
            Some("loadtest-3"),
            "the seed's request_id"
        );
        let body = serde_json::to_value(&r).unwrap();
        let mut keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["mode", "request_id", "sql"],
            "the seed's body: {body}"
        );
        let (r, _) =
            Statements::new(Workload::PointInsert, 1, 7, true).request(0, Mode::Random, &mut rng);
        assert!(
            r.sql
                .starts_with("INSERT INTO sbtest.sbtest1 (k, c, pad) VALUES (")
                && r.sql.ends_with("')"),
            "{}",
            r.sql
        );
    }

    #[test]
    fn workload_labels() {
        let labels: Vec<String> = [
            Workload::PointSelect,
            Workload::PointInsert,
            Workload::PointUpdate,
            Workload::Mix { write_percent: 10 },
        ]
        .iter()
        .map(|w| w.label())
        .collect();
        assert_eq!(labels, ["point_select", "insert", "update", "mix_90_10"]);
        assert!(!Workload::PointSelect.writes() && Workload::Mix { write_percent: 10 }.writes());
    }
}
