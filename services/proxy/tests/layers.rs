//! The proxy's security layers, each on its own against a real server, as if the classifier
//! had been fooled: a second statement never runs (the protocol), no session state outlives a
//! use of a connection (the reset), and a transaction that a statement ended is noticed.

use mysql::prelude::Queryable;
use proxy::config::{Limits, NodeAddr};
use proxy::execute;
use proxy::pool::{self, Manager, PooledConn};
use r2d2::ManageConnection;
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
};

/// A connection as the proxy's pool makes it, as `role`'s account.
fn conn(c: &Cluster, role: Role) -> PooledConn {
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
        Duration::from_secs(2),
        Duration::from_secs(10),
    );
    Manager::new(
        opts,
        Duration::from_secs(10),
        1000,
        1 << 20,
        Default::default(),
    )
    .connect()
    .expect("connect as the pool does")
}

fn scalar(c: &Cluster, sql: &str) -> String {
    c.scalar("manager", sql).unwrap().unwrap_or_default()
}

#[test]
fn layers_hold_on_their_own() {
    let c = Cluster::start(0).expect("cluster");
    let mut admin = conn(&c, Role::Admin);
    for sql in [
        "CREATE TABLE app.layer (id INT PRIMARY KEY)",
        "INSERT INTO app.layer VALUES (1), (2)",
    ] {
        execute::run(&mut admin.conn, sql, &[], &LIMITS).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    // Layer 2: whatever text reaches the driver, only one statement is executed.
    let mut w = conn(&c, Role::Write);
    for sql in [
        "SELECT 1; DELETE FROM app.layer WHERE id = 1",
        "SELECT 1 --\u{a0} x; DELETE FROM app.layer WHERE id = 1",
        "DO 1; DELETE FROM app.layer WHERE id = 1",
    ] {
        let r = execute::run(&mut w.conn, sql, &[], &LIMITS);
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
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    assert_eq!(
        scalar(&c, "SELECT COALESCE(IS_USED_LOCK('layer_lock'), 0) > 0"),
        "1"
    );
    w.clean();
    let row: mysql::Row = w
        .conn
        .query_first("SELECT @@autocommit, @leak, @@sql_mode, @@sql_select_limit, @@in_transaction")
        .unwrap()
        .unwrap();
    let (autocommit, leak, mode, limit, tx): (i64, Option<i64>, String, u64, i64) =
        mysql::from_row(row);
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

    // Transactions: the probe sees a transaction end under it (an implicit commit).
    let mut tx = admin
        .conn
        .start_transaction(mysql::TxOpts::default())
        .unwrap();
    assert!(
        execute::in_transaction(&mut tx).unwrap(),
        "open after START TRANSACTION"
    );
    execute::run(&mut tx, "INSERT INTO app.layer VALUES (3)", &[], &LIMITS).unwrap();
    assert!(
        execute::in_transaction(&mut tx).unwrap(),
        "still open after an INSERT"
    );
    execute::run(
        &mut tx,
        "CREATE TABLE app.layer_split (a INT)",
        &[],
        &LIMITS,
    )
    .unwrap();
    assert!(
        !execute::in_transaction(&mut tx).unwrap(),
        "DDL ended it: the probe must say so"
    );
}
