//! The proxy's security layers, each on its own against a real server, as if the classifier
//! had been fooled: a second statement never runs (the protocol), no session state outlives a
//! use of a connection (the reset), and a transaction that a statement ended is noticed.

use deadpool::managed::Manager as _;
use mysql_async::prelude::Queryable;
use proxy::config::{Limits, NodeAddr};
use proxy::db as execute;
use proxy::pool::{self, Manager, PooledConn};
use sqlgate::config::Secret;
use sqlgate::Role;
use sqlgate_testkit::Cluster;
use std::time::Duration;

const LIMITS: Limits = Limits {
    max_body_bytes: 1 << 20,
    max_sql_bytes: 1 << 16,
    max_params: 100,
    max_rows: 1000,
    max_result_bytes: 1 << 20,
    max_tx_statements: 10,
    max_batch_sets: 10,
};

/// A connection as the proxy's pool makes it, as `role`'s account.
async fn conn(c: &Cluster, role: Role) -> PooledConn {
    let (user, secret) = match role {
        Role::Read => ("sqlgate_read", "READ_PASSWORD"),
        Role::Write => ("sqlgate_write", "WRITE_PASSWORD"),
        Role::Admin => ("sqlgate_admin", "ADMIN_PASSWORD"),
    };
    let addr = NodeAddr {
        name: "manager".into(),
        host: "127.0.0.1".into(),
        port: c.manager_port,
    };
    let password = Secret::new(c.secret(secret));
    let opts = pool::opts(
        &addr,
        user,
        &password,
        &pool::DbTls::Verify(c.tls("ca.pem")),
    );
    Manager::new(
        opts,
        Duration::from_secs(10),
        1000,
        1 << 20,
        Default::default(),
    )
    .create()
    .await
    .expect("connect as the pool does")
}

fn scalar(c: &Cluster, sql: &str) -> String {
    c.scalar("manager", sql).unwrap().unwrap_or_default()
}

#[tokio::test]
async fn layers_hold_on_their_own() {
    let c = Cluster::start(0).expect("cluster");
    let mut admin = conn(&c, Role::Admin).await;
    for sql in [
        "CREATE TABLE app.layer (id INT PRIMARY KEY)",
        "INSERT INTO app.layer VALUES (1), (2)",
    ] {
        execute::run(&mut admin.conn, sql, &[], &LIMITS)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    // Layer 2: whatever text reaches the driver, only one statement is executed.
    let mut w = conn(&c, Role::Write).await;
    for sql in [
        "SELECT 1; DELETE FROM app.layer WHERE id = 1",
        "SELECT 1 --\u{a0} x; DELETE FROM app.layer WHERE id = 1",
        "DO 1; DELETE FROM app.layer WHERE id = 1",
    ] {
        let r = execute::run(&mut w.conn, sql, &[], &LIMITS).await;
        assert!(r.is_err(), "{sql:?} ran");
    }
    assert_eq!(
        scalar(&c, "SELECT COUNT(*) FROM app.layer"),
        "2",
        "a second statement ran"
    );

    // Layer 3: state left by one use is gone for the next.
    for sql in [
        "SET autocommit = 0",
        "SET @leak = 1",
        "SET sql_mode = 'NO_BACKSLASH_ESCAPES'",
        "SET SESSION max_statement_time = 0",
        "SET SESSION sql_select_limit = 18446744073709551615",
        "DO GET_LOCK('layer_lock', 0)",
        "DELETE FROM app.layer WHERE id = 2",
    ] {
        w.conn
            .query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    assert_eq!(
        scalar(&c, "SELECT COALESCE(IS_USED_LOCK('layer_lock'), 0) > 0"),
        "1"
    );
    w.clean(Duration::from_secs(2)).await;
    assert!(!w.broken, "the reset worked");
    let row: mysql_async::Row = w
        .conn
        .query_first("SELECT @@autocommit, @leak, @@sql_mode, @@sql_select_limit, @@in_transaction")
        .await
        .unwrap()
        .unwrap();
    let (autocommit, leak, mode, limit, tx): (i64, Option<i64>, String, u64, i64) =
        mysql_async::from_row(row);
    assert_eq!(autocommit, 1, "autocommit restored");
    assert_eq!(leak, None, "user variable dropped");
    assert!(
        !mode.contains("NO_BACKSLASH_ESCAPES"),
        "sql_mode restored: {mode}"
    );
    assert_eq!(limit, 1001, "row limit restored");
    assert_eq!(tx, 0, "no transaction open");
    assert_eq!(
        scalar(&c, "SELECT COALESCE(IS_USED_LOCK('layer_lock'), 0)"),
        "0",
        "lock released"
    );
    assert_eq!(
        scalar(&c, "SELECT COUNT(*) FROM app.layer"),
        "2",
        "uncommitted delete rolled back"
    );

    // Transactions: the server's status flags show a transaction end under the proxy (an
    // implicit commit).
    admin.conn.query_drop("START TRANSACTION").await.unwrap();
    assert!(
        execute::in_transaction(&admin.conn),
        "open after START TRANSACTION"
    );
    execute::run(
        &mut admin.conn,
        "INSERT INTO app.layer VALUES (3)",
        &[],
        &LIMITS,
    )
    .await
    .unwrap();
    assert!(
        execute::in_transaction(&admin.conn),
        "still open after an INSERT"
    );
    execute::run(&mut admin.conn, "SELECT * FROM app.layer", &[], &LIMITS)
        .await
        .unwrap();
    assert!(
        execute::in_transaction(&admin.conn),
        "still open after a SELECT (its result ends with an OK packet)"
    );
    execute::run(
        &mut admin.conn,
        "CREATE TABLE app.layer_split (a INT)",
        &[],
        &LIMITS,
    )
    .await
    .unwrap();
    assert!(
        !execute::in_transaction(&admin.conn),
        "DDL ended it: the status flags must say so"
    );

    // A write's GTID arrives in its OK packet, and it is the write's own: the manager's binlog
    // position right after it, as a fresh connection sees it.
    let mut w = conn(&c, Role::Write).await;
    let done = execute::run(
        &mut w.conn,
        "INSERT INTO app.layer VALUES (10)",
        &[],
        &LIMITS,
    )
    .await
    .unwrap();
    let gtid = done.gtid.expect("the OK packet carries the write's GTID");
    assert_eq!(
        gtid,
        scalar(&c, "SELECT @@global.gtid_binlog_pos"),
        "its own GTID"
    );
    let read = execute::run(
        &mut w.conn,
        "SELECT id FROM app.layer WHERE id = 10",
        &[],
        &LIMITS,
    )
    .await
    .unwrap();
    assert_eq!(read.gtid, None, "a read reports no GTID");
    let done2 = execute::run(
        &mut w.conn,
        "UPDATE app.layer SET id = 11 WHERE id = 10",
        &[],
        &LIMITS,
    )
    .await
    .unwrap();
    let gtid2 = done2.gtid.expect("each write its own GTID");
    assert_ne!(gtid2, gtid, "a later write, a later GTID");
    assert_eq!(gtid2, scalar(&c, "SELECT @@global.gtid_binlog_pos"));

    // The deadline: a statement past it is killed on the server, not only abandoned.
    let mut slow = conn(&c, Role::Read).await;
    let killer = slow.killer();
    let id = slow.conn.id();
    let (outcome, killed) = execute::within(
        &killer,
        Duration::from_millis(300),
        Duration::from_secs(2),
        execute::ExecError::Deadline,
        execute::run(&mut slow.conn, "SELECT SLEEP(30)", &[], &LIMITS),
    )
    .await;
    assert!(killed, "the deadline fired");
    assert!(
        matches!(outcome, Err(execute::ExecError::Deadline)),
        "a killed statement is a deadline error"
    );
    assert_eq!(
        scalar(
            &c,
            &format!("SELECT COUNT(*) FROM information_schema.processlist WHERE id = {id}")
        ),
        "0",
        "the server no longer runs it"
    );
}
