//! A seeded differential fuzzer: whatever SQL text a key sends, in every mode and inside
//! `/transaction`, the servers' durable state must not move beyond what the key's role allows.
//!
//! The read key's batches must leave every node's snapshot byte-identical (GTID, checksums,
//! schema, users, grants). The write key may change rows (GTID and checksum lines) but never
//! the schema, users or grants. Every answer is one of the documented statuses, never 500 nor
//! a dropped connection, and every error names its code and request id.
//!
//! Replay a failure with the seed it prints:
//! `SQLGATE_FUZZ_SEED=<seed> SQLGATE_FUZZ_CASES=<n> cargo test -p gatekeeper --test fuzz -- --nocapture`

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sqlgate_testkit::{Cluster, Options, Stack};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Statements generated per key when `SQLGATE_FUZZ_CASES` is not set: each is sent six times
/// (four modes, two transactions), and the whole test stays near a minute on two cores.
const DEFAULT_CASES: usize = 1500;
/// Statements between two snapshot checks.
const BATCH: usize = 100;
const MODES: [&str; 4] = ["direct", "random", "ping", "least_busy"];
/// Every status the gatekeeper may answer a well-formed, authenticated request with.
const ALLOWED: [u16; 8] = [200, 400, 403, 413, 422, 429, 503, 504];
/// Server errors that mean "the account lacks the privilege": the classifier let the
/// statement through and only the database's own check stopped it.
const PRIVILEGE_ERRORS: [u64; 8] = [1044, 1045, 1142, 1143, 1227, 1370, 1290, 1836];

/// Statements that write, lock, change the schema, users, grants or session state, read files,
/// or leave the server; `{out}` is a directory that must stay empty.
const PAYLOADS: &[&str] = &[
    "DELETE FROM app.fuzz_probe WHERE id = 1",
    "DELETE FROM app.fuzz_probe",
    "DELETE FROM app.fuzz_probe WHERE id = ?",
    "UPDATE app.fuzz_probe SET v = 'x'",
    "UPDATE app.fuzz_probe SET v = ? WHERE id = ?",
    "INSERT INTO app.fuzz_probe VALUES (99, 'x')",
    "INSERT INTO app.fuzz_probe VALUES (?, ?)",
    "INSERT INTO app.fuzz_probe SELECT id + 100, v FROM app.fuzz_probe",
    "INSERT INTO app.fuzz_probe VALUES (98, 'x') ON DUPLICATE KEY UPDATE v = 'y'",
    "INSERT INTO app.fuzz_probe VALUES (97, 'x') RETURNING id",
    "DELETE FROM app.fuzz_probe WHERE id = 2 RETURNING v",
    "REPLACE INTO app.fuzz_probe VALUES (1, 'r')",
    "REPLACE app.fuzz_probe SET id = 3, v = 'r'",
    "DELETE app.fuzz_probe FROM app.fuzz_probe JOIN app.fuzz_probe2 USING (id)",
    "UPDATE app.fuzz_probe p JOIN app.fuzz_probe2 q USING (id) SET p.v = 'j'",
    "UPDATE sakila.actor SET first_name = 'X' WHERE actor_id = 1",
    "DROP TABLE app.fuzz_probe2",
    "DROP TABLE IF EXISTS app.fuzz_probe",
    "DROP DATABASE app",
    "DROP VIEW IF EXISTS app.fzv",
    "CREATE TABLE app.fz (a INT)",
    "CREATE TABLE app.fz2 AS SELECT 1",
    "CREATE OR REPLACE TABLE app.fuzz_probe2 (x INT)",
    "CREATE TEMPORARY TABLE app.fzt (a INT)",
    "CREATE VIEW app.fzv AS SELECT 1 AS a",
    "CREATE INDEX fzi ON app.fuzz_probe (v)",
    "CREATE DATABASE fzdb",
    "CREATE SEQUENCE app.fzseq",
    "CREATE PROCEDURE app.fzp() DELETE FROM app.fuzz_probe",
    "CREATE FUNCTION app.fzf() RETURNS INT RETURN 1",
    "CREATE TRIGGER app.fztr BEFORE INSERT ON app.fuzz_probe FOR EACH ROW SET NEW.v = 'z'",
    "CREATE EVENT app.fze ON SCHEDULE EVERY 1 SECOND DO DELETE FROM app.fuzz_probe",
    "ALTER TABLE app.fuzz_probe ADD COLUMN z INT",
    "ALTER TABLE app.fuzz_probe DROP COLUMN v",
    "ALTER TABLE app.fuzz_probe ENGINE = InnoDB",
    "ALTER DATABASE app CHARACTER SET latin1",
    "RENAME TABLE app.fuzz_probe2 TO app.fz3",
    "TRUNCATE app.fuzz_probe",
    "TRUNCATE TABLE app.fuzz_probe2",
    "OPTIMIZE TABLE app.fuzz_probe",
    "ANALYZE TABLE app.fuzz_probe",
    "REPAIR TABLE app.fuzz_probe",
    "ANALYZE DELETE FROM app.fuzz_probe",
    "ANALYZE UPDATE app.fuzz_probe SET v = 'a'",
    "GRANT ALL ON *.* TO sqlgate_read@'127.0.0.1'",
    "GRANT ALL ON app.* TO 'sqlgate_write'@'127.0.0.1' WITH GRANT OPTION",
    "REVOKE SELECT ON app.* FROM 'sqlgate_read'@'127.0.0.1'",
    "CREATE USER evil",
    "CREATE USER IF NOT EXISTS 'evil'@'%' IDENTIFIED BY 'x'",
    "DROP USER 'sqlgate_monitor'@'127.0.0.1'",
    "RENAME USER 'sqlgate_monitor'@'127.0.0.1' TO 'x'@'%'",
    "SET PASSWORD FOR 'sqlgate_read'@'127.0.0.1' = PASSWORD('x')",
    "CREATE ROLE fzrole",
    "INSERT INTO mysql.db (Host, Db, User, Select_priv) VALUES ('%', 'app', 'evil', 'Y')",
    "UPDATE mysql.global_priv SET Priv = '{}' WHERE User = 'sqlgate_read'",
    "DELETE FROM mysql.user WHERE User = 'sqlgate_monitor'",
    "SET GLOBAL read_only = 1",
    "SET autocommit = 0",
    "SET sql_log_bin = 0",
    "SET STATEMENT max_statement_time = 1 FOR DELETE FROM app.fuzz_probe",
    "SET @@session.sql_mode = 'ANSI_QUOTES'",
    "KILL QUERY 1",
    "KILL CONNECTION 1",
    "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE app.fuzz_probe",
    "LOAD DATA INFILE '/etc/hostname' INTO TABLE app.fuzz_probe",
    "LOAD XML LOCAL INFILE '/etc/passwd' INTO TABLE app.fuzz_probe",
    "SELECT 1 INTO OUTFILE '{out}/a'",
    "SELECT * FROM app.fuzz_probe INTO DUMPFILE '{out}/b'",
    "SELECT LOAD_FILE('/etc/passwd')",
    "UPDATE app.fuzz_probe SET v = LEFT(LOAD_FILE('/etc/hostname'), 20)",
    "HANDLER app.fuzz_probe OPEN",
    "HANDLER app.fuzz_probe READ FIRST",
    "PREPARE s FROM 'DELETE FROM app.fuzz_probe'",
    "EXECUTE s",
    "EXECUTE IMMEDIATE 'DELETE FROM app.fuzz_probe'",
    "DEALLOCATE PREPARE s",
    "BEGIN NOT ATOMIC DELETE FROM app.fuzz_probe; END",
    "BEGIN",
    "START TRANSACTION",
    "COMMIT",
    "ROLLBACK",
    "XA START 'fz'",
    "LOCK TABLES app.fuzz_probe WRITE",
    "UNLOCK TABLES",
    "FLUSH PRIVILEGES",
    "FLUSH TABLES WITH READ LOCK",
    "RESET MASTER",
    "PURGE BINARY LOGS BEFORE NOW()",
    "STOP SLAVE",
    "CHANGE MASTER TO MASTER_HOST = 'x'",
    "BINLOG 'AAAA'",
    "INSTALL SONAME 'ha_blackhole'",
    "UNINSTALL PLUGIN unix_socket",
    "SHUTDOWN",
    "DO GET_LOCK('x', 0)",
    "SELECT GET_LOCK('x', 0)",
    "SELECT RELEASE_ALL_LOCKS()",
    "DO SLEEP(0)",
    "SELECT SLEEP(0)",
    "SELECT BENCHMARK(1, MD5('a'))",
    "WITH x AS (SELECT 1) DELETE FROM app.fuzz_probe",
    "WITH x AS (SELECT 1) UPDATE app.fuzz_probe SET v = 'y'",
    "WITH x AS (SELECT 1) INSERT INTO app.fuzz_probe VALUES (96, 'w')",
    "INSERT INTO app.fuzz_probe WITH x AS (SELECT 95, 'w') SELECT * FROM x",
    "WITH RECURSIVE x(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM x WHERE n < 3) DELETE FROM app.fuzz_probe",
    "SELECT * FROM app.fuzz_probe FOR UPDATE",
    "SELECT * FROM app.fuzz_probe LOCK IN SHARE MODE",
    "SELECT * FROM app.fuzz_probe FOR UPDATE SKIP LOCKED",
    "SELECT @a := 1",
    "SELECT 1 INTO @a",
    "SELECT @@hostname",
    "SELECT * FROM information_schema.processlist",
    "SELECT * FROM mysql.user",
    "SHOW GRANTS",
    "SHOW PROCESSLIST",
    "SHOW BINLOG EVENTS",
    "CALL p()",
    "CALL mysql.rds_kill(1)",
    "SELECT NEXTVAL(app.fzseq)",
    "SELECT 1 PROCEDURE ANALYSE()",
    "HELP 'select'",
    "CHECKSUM TABLE app.fuzz_probe",
    "CACHE INDEX app.fuzz_probe IN hot",
    "EXPLAIN DELETE FROM app.fuzz_probe",
    "EXPLAIN ANALYZE DELETE FROM app.fuzz_probe",
    "DESCRIBE app.fuzz_probe",
    "TABLE app.fuzz_probe",
    "VALUES (1, 2)",
    "SELECT v FROM app.fuzz_probe WHERE id = 1",
    "SELECT NEXTVAL(app.fuzz_seq)",
    "SELECT NEXT VALUE FOR app.fuzz_seq",
    "SELECT SETVAL(app.fuzz_seq, 100)",
    "SELECT PREVIOUS VALUE FOR app.fuzz_seq",
    "DO NEXTVAL(app.fuzz_seq)",
    "ALTER SEQUENCE app.fuzz_seq RESTART 5",
    "DROP SEQUENCE app.fuzz_seq",
    "INSERT INTO app.fuzz_probe VALUES (NEXT VALUE FOR app.fuzz_seq + 200, 's')",
    "UPDATE app.fuzz_view SET v = 'w'",
    "DELETE FROM app.fuzz_view WHERE id = 4",
    "CREATE OR REPLACE VIEW app.fuzz_view AS SELECT 1 AS id",
    "(SELECT 1) INTO OUTFILE '{out}/c'",
    "SELECT 1 UNION SELECT 2 INTO OUTFILE '{out}/d'",
    "TABLE app.fuzz_probe INTO OUTFILE '{out}/e'",
    "SELECT * FROM app.fuzz_probe INTO OUTFILE '{out}/f' FIELDS TERMINATED BY ','",
    "WITH x AS (SELECT 1) SELECT * FROM x INTO OUTFILE '{out}/g'",
    "SELECT `LOAD_FILE`('/etc/passwd')",
    "SELECT LOAD_FILE /**/ ('/etc/passwd')",
    "SELECT * FROM app.fuzz_probe WHERE id = 1 FOR UPDATE NOWAIT",
    "SELECT * FROM app.fuzz_probe LIMIT 1 LOCK IN SHARE MODE",
    "SELECT * FROM app.fuzz_probe UNION ALL (SELECT 1, 'x' FOR UPDATE)",
    "SELECT 1 FROM DUAL WHERE @a := 1",
    "SELECT * FROM mysql.global_priv",
    "SHOW CREATE USER 'sqlgate_admin'@'127.0.0.1'",
    "SHOW GRANTS FOR 'sqlgate_admin'@'127.0.0.1'",
    "SELECT * FROM information_schema.user_privileges",
    "INSERT LOW_PRIORITY IGNORE INTO app.fuzz_probe VALUES (94, 'l')",
    "INSERT DELAYED INTO app.fuzz_probe VALUES (93, 'd')",
    "UPDATE LOW_PRIORITY IGNORE app.fuzz_probe SET v = 'l'",
    "DELETE QUICK IGNORE FROM app.fuzz_probe WHERE id = 5",
    "DELETE FROM app.fuzz_probe ORDER BY id LIMIT 1",
    "UPDATE app.fuzz_probe p, mysql.user u SET u.Host = 'x' WHERE p.id = 1",
    "INSERT INTO app.fuzz_probe2 SELECT 1000 + COUNT(*) FROM mysql.user",
    "CREATE TABLE app.fz LIKE app.fuzz_probe",
    "CREATE TABLE IF NOT EXISTS app.fuzz_probe (a INT)",
    "ALTER TABLE app.fuzz_probe RENAME TO app.fz4",
    "ALTER TABLE app.fuzz_probe COMMENT 'x'",
    "DROP TABLE app.fuzz_probe, app.fuzz_probe2",
    "DROP INDEX `PRIMARY` ON app.fuzz_probe",
    "GRANT SELECT ON app.fuzz_probe TO 'sqlgate_read'@'127.0.0.1'",
    "GRANT PROXY ON 'sqlgate_admin'@'127.0.0.1' TO 'sqlgate_read'@'127.0.0.1'",
    "CREATE OR REPLACE USER 'sqlgate_monitor'@'127.0.0.1'",
    "ALTER USER 'sqlgate_monitor'@'127.0.0.1' ACCOUNT LOCK",
    "SET ROLE ALL",
    "SET DEFAULT ROLE fzrole",
    "DELETE FROM app.fuzz_probe WHERE id = 6 -- ; DROP TABLE app.fuzz_probe2",
];

/// Ways to hide, smuggle or wrap a payload; `{p}` is the payload.
const CARRIERS: &[&str] = &[
    "{p}",
    // Prefixed literals sqlparser reads without escapes where the server reads an identifier and
    // an escaped string: the text after the first `"` hides from the classifier.
    "SELECT b\"\\\" ,1 \", ({p}) FROM (SELECT 1 AS b) t -- \"",
    "SELECT B\"\\\"\", 1 FROM (SELECT 1 AS B) t WHERE 1 = 1 OR ({p}) -- \"",
    "SELECT x\"\\\"\"; {p} -- \"",
    "SELECT n'\\'; {p} -- '",
    "/*M! {p} */",
    "/*M!100000 {p} */",
    "/*m!{p}*/",
    "/*!{p} */",
    "/*!50000 {p} */",
    "/*!99999 {p} */",
    "/*M!999999 {p} */ SELECT 1",
    "SELECT 1 /*! , (SELECT 1) */",
    "SELECT 1 /*!; {p} */",
    "{p} -- comment",
    "{p} # comment",
    "{p};",
    "{p} ;; ",
    "SELECT 1 --\u{00a0} ; {p}",
    "SELECT 1 --\t\n; {p}",
    "SELECT 1 --\r; {p}",
    "SELECT 1 --\u{0b}; {p}",
    "SELECT 1 #\n; {p}",
    "SELECT 1 #\r; {p}",
    "SELECT 1 --x\n; {p}",
    "SELECT 1; {p}",
    "SELECT 1;\n{p}",
    "SELECT '\\'';{p};--'",
    "SELECT '\\\\';{p};--'",
    "SELECT \"a\"\"b\"; {p}",
    "SELECT 'a''b'; {p}",
    "SELECT \"\\\"\"; {p} -- \"",
    "SELECT 1 /* /* */ ; {p} */",
    "SELECT 1 /* ' */ ; {p} -- '",
    "SELECT '/*', 1; {p} -- */",
    "SELECT '-- ', 1; {p}",
    "SELECT `a;b` FROM app.fuzz_probe; {p}",
    "SELECT `a``;` ; {p}",
    "SELECT 1 /*+ {p} */",
    "SELECT 1 /*+ */ ; {p}",
    "({p})",
    "(({p}))",
    "WITH c AS (SELECT 1) {p}",
    "WITH c AS ({p}) SELECT * FROM c",
    "EXPLAIN {p}",
    "EXPLAIN ANALYZE {p}",
    "EXPLAIN EXTENDED {p}",
    "EXPLAIN FORMAT=JSON {p}",
    "ANALYZE {p}",
    "DESCRIBE {p}",
    "SELECT 1 UNION {p}",
    "SELECT * FROM ({p}) AS t",
    "SELECT ({p})",
    "SELECT 1 FROM DUAL WHERE 1 = 0 OR ({p})",
    "SELECT EXISTS ({p})",
    "{p} \\",
    "SELECT 1 INTO @x; {p}",
    "UPDATE app.fuzz_probe SET v = 'c' WHERE id = 1; {p}",
    "{p} /* */",
    "/* */{p}",
    "/*!*/ {p}",
    "/**/{p}",
    "{p}\n",
    "SELECT 1 /*M!; {p} */",
    "SELECT 1 /*!50000 ; {p} */",
    "SELECT X'41'; {p}",
    "SELECT N'x'; {p}",
    "SELECT _utf8mb4'x'; {p}",
    "SELECT b'1'; {p}",
    "SELECT 0x41; {p}",
    "SELECT 1e1; {p}",
    "SELECT @`a`; {p}",
    "SELECT 'a\\' ; {p} -- '",
    "SELECT $$x$$; {p}",
    "SELECT 1 -- \\\n; {p}",
];

/// Known-good reads: must succeed for the read and the write key in every mode, with benign
/// noise (keyword case, ASCII whitespace, comments, a trailing `;`).
const GOOD_READS: &[&str] = &[
    "SELECT v FROM app.fuzz_probe WHERE id = ?",
    "SELECT id, v FROM app.fuzz_probe ORDER BY id",
    "SELECT COUNT(*) FROM app.fuzz_probe WHERE v <> ?",
    "SELECT COUNT(*) FROM sakila.actor WHERE actor_id < ?",
    "SELECT v FROM app.fuzz_probe WHERE v = ? OR id = ?",
    "SELECT 1",
    "SELECT id FROM app.fuzz_probe2 WHERE id IN (?, ?)",
    "SELECT id, v FROM app.fuzz_view WHERE id > ?",
    "SELECT * FROM app.fuzz_seq",
];

/// Whitespace the servers and the classifier may read differently, and bytes that do not
/// belong outside a literal.
const EXOTIC_SPACES: &[&str] = &[
    "\u{00a0}", "\u{2000}", "\u{2001}", "\u{2002}", "\u{2003}", "\u{2004}", "\u{2005}", "\u{2006}",
    "\u{2007}", "\u{2008}", "\u{2009}", "\u{200a}", "\u{2028}", "\u{3000}", "\u{feff}", "\u{0b}",
    "\u{0c}", "\u{00}", "\u{1a}", "\r",
];
const BENIGN_SPACES: &[&str] = &[" ", "\t", "\n", "\r\n", "  ", "/**/", " /* c */ "];
const JUNK: &[&str] = &[
    "\u{0}", "\u{1a}", "\u{0b}", "\u{0c}", "\\", "'", "\"", "`", ";", "\r", "\u{feff}", "/* ' */",
    "'/* x'", "-- x\n", "#\n", "/**/", "--", "\u{3000}", "/*", "*/", "/*!", "?",
];
const SUFFIXES: &[&str] = &[
    ";", ";;", " ;", " -- x", " #x", "\n", ";\n-- x", " /* */", "\r", "\\", ";\u{0}",
];
const PREFIXES: &[&str] = &[
    " ", "\n", "\u{feff}", ";", "/* x */ ", "-- x\n", "# x\n", "(", "\r\n",
];
const EVIL_STRINGS: &[&str] = &[
    "x'); DROP TABLE app.fuzz_probe; --",
    "/*M! DELETE FROM app.fuzz_probe */",
    "\u{0}\\'",
    "é\u{a0}\u{2028}",
    "a",
];

/// Hostile strings a known-good read binds: ASCII only, since the probe table takes the
/// schema's default character set (latin1 on a default server), and comparing it with a
/// non-latin1 string is the server's legitimate "illegal mix of collations" error.
const GOOD_STRINGS: &[&str] = &[
    "x'); DROP TABLE app.fuzz_probe; --",
    "/*M! DELETE FROM app.fuzz_probe */",
    "\u{0}\\'",
    "a",
];

/// One generated statement.
#[derive(Clone)]
struct Case {
    sql: String,
    params: Vec<Value>,
    /// A known-good read: every send must answer 200.
    good: bool,
}

struct Gen {
    rng: StdRng,
    out: String,
}

impl Gen {
    fn new(seed: u64, out: &Path) -> Gen {
        Gen {
            rng: StdRng::seed_from_u64(seed),
            out: out.display().to_string(),
        }
    }

    fn pick(&mut self, from: &[&'static str]) -> &'static str {
        from.choose(&mut self.rng).copied().unwrap_or("")
    }

    fn param(&mut self) -> Value {
        match self.rng.random_range(0..6) {
            0 => json!(self.rng.random_range(-2..8)),
            1 => json!(self.pick(EVIL_STRINGS)),
            2 => Value::Null,
            3 => json!(self.rng.random_bool(0.5)),
            4 => json!(self.rng.random_range(-1.0..1.0)),
            _ => json!(self.rng.random_range(0..6).to_string()),
        }
    }

    fn case(&mut self) -> Case {
        if self.rng.random_range(0..100) < 15 {
            return self.good_read();
        }
        let payload = self.pick(PAYLOADS).replace("{out}", &self.out);
        let mut sql = if self.rng.random_bool(0.35) {
            payload
        } else {
            self.pick(CARRIERS).replace("{p}", &payload)
        };
        if self.rng.random_bool(0.6) {
            for _ in 0..self.rng.random_range(1..=3) {
                sql = self.noise(sql);
            }
        }
        let placeholders = sql.matches('?').count();
        let n = if self.rng.random_bool(0.85) {
            placeholders
        } else {
            self.rng.random_range(0..3)
        };
        let params = (0..n).map(|_| self.param()).collect();
        Case {
            sql,
            params,
            good: false,
        }
    }

    fn good_read(&mut self) -> Case {
        let template = self.pick(GOOD_READS);
        let mut sql = self.recase(template);
        if self.rng.random_bool(0.5) {
            sql = self.respace(&sql, BENIGN_SPACES, 0.5);
        }
        if self.rng.random_bool(0.3) {
            sql.push_str(self.pick(&[";", " ;", " -- c", " # c", "\n", " /* c */"]));
        }
        let params = (0..sql.matches('?').count())
            .map(|_| match self.rng.random_range(0..3) {
                0 => json!(self.rng.random_range(0..7)),
                1 => json!(self.pick(GOOD_STRINGS)),
                _ => Value::Null,
            })
            .collect();
        Case {
            sql,
            params,
            good: true,
        }
    }

    /// One random disturbance of the text.
    fn noise(&mut self, sql: String) -> String {
        match self.rng.random_range(0..100) {
            0..=19 => self.recase(&sql),
            20..=34 => self.respace(&sql, EXOTIC_SPACES, 0.3),
            35..=44 => self.respace(&sql, BENIGN_SPACES, 0.5),
            45..=69 => {
                let junk = self.pick(JUNK);
                let at = self.boundary(&sql);
                format!("{}{junk}{}", &sql[..at], &sql[at..])
            }
            70..=81 => sql + self.pick(SUFFIXES),
            82..=93 => format!("{}{sql}", self.pick(PREFIXES)),
            94..=97 => {
                let depth = self.rng.random_range(1..300);
                format!("{}{sql}{}", "(".repeat(depth), ")".repeat(depth))
            }
            _ => {
                // Past the SQL length limit (64 KiB) inside a comment.
                let pad = "x".repeat(self.rng.random_range(60_000..70_000));
                format!("{sql} /* {pad} */")
            }
        }
    }

    /// Upper-case words (the keywords of the templates) in random case.
    fn recase(&mut self, sql: &str) -> String {
        let mut out = String::with_capacity(sql.len());
        let mut word = String::new();
        for c in sql.chars().chain(std::iter::once('\u{1}')) {
            if c.is_ascii_alphabetic() || c == '_' {
                word.push(c);
                continue;
            }
            if !word.is_empty() && !word.bytes().any(|b| b.is_ascii_lowercase()) {
                match self.rng.random_range(0..3) {
                    0 => out.push_str(&word.to_ascii_lowercase()),
                    1 => out.extend(word.chars().map(|w| {
                        if self.rng.random_bool(0.5) {
                            w.to_ascii_lowercase()
                        } else {
                            w
                        }
                    })),
                    _ => out.push_str(&word),
                }
            } else {
                out.push_str(&word);
            }
            word.clear();
            if c != '\u{1}' {
                out.push(c);
            }
        }
        out
    }

    /// Replaces each space, with probability `p`, by one of `with`.
    fn respace(&mut self, sql: &str, with: &[&'static str], p: f64) -> String {
        let mut out = String::with_capacity(sql.len() + 16);
        for c in sql.chars() {
            if c == ' ' && self.rng.random_bool(p) {
                out.push_str(with.choose(&mut self.rng).copied().unwrap_or(" "));
            } else {
                out.push(c);
            }
        }
        out
    }

    /// A random char boundary of `s`.
    fn boundary(&mut self, s: &str) -> usize {
        let mut at = self.rng.random_range(0..=s.len());
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        at
    }
}

/// The two keys under test and what each may move.
#[derive(Clone, Copy, PartialEq)]
enum Phase {
    /// Nothing may move.
    Read,
    /// Rows may move (GTID and checksum lines), nothing else.
    Write,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Read => "read",
            Phase::Write => "write",
        }
    }
}

/// The part of a snapshot `phase` must not move.
fn guarded(phase: Phase, snapshot: &str) -> Vec<&str> {
    snapshot
        .lines()
        .filter(|l| match phase {
            Phase::Read => true,
            Phase::Write => !(l.starts_with("gtid\t") || is_checksum(l)),
        })
        .collect()
}

/// A CHECKSUM TABLE line: `schema.table\t<checksum or NULL>`.
fn is_checksum(line: &str) -> bool {
    line.split_once('\t').is_some_and(|(table, sum)| {
        table.contains('.')
            && !table.contains(' ')
            && (sum == "NULL" || (!sum.is_empty() && sum.bytes().all(|b| b.is_ascii_digit())))
    })
}

/// Lines that left (`-`) and appeared (`+`) between two snapshots of a node, as a multiset.
fn diff(before: &[&str], after: &[&str]) -> String {
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for l in before {
        *count.entry(l).or_default() -= 1;
    }
    for l in after {
        *count.entry(l).or_default() += 1;
    }
    let mut out = String::new();
    for (l, n) in count {
        if n != 0 {
            let sign = if n < 0 { '-' } else { '+' };
            let _ = writeln!(out, "    {sign} {l:?}");
        }
    }
    if out.is_empty() {
        out.push_str("    (same lines, different order)\n");
    }
    out
}

/// One send of a case: a label and the request.
struct Send {
    label: String,
    path: &'static str,
    body: Value,
}

fn sends(case: &Case) -> Vec<Send> {
    let stmt = json!({"sql": case.sql, "params": case.params});
    let mut out: Vec<Send> = MODES
        .iter()
        .map(|m| Send {
            label: format!("/query mode={m}"),
            path: "/query",
            body: json!({"sql": case.sql, "params": case.params, "mode": m}),
        })
        .collect();
    out.push(Send {
        label: "/transaction alone".into(),
        path: "/transaction",
        body: json!({"statements": [stmt]}),
    });
    out.push(Send {
        label: "/transaction between two reads".into(),
        path: "/transaction",
        body: json!({"statements": [
            {"sql": "SELECT v FROM app.fuzz_probe WHERE id = ?", "params": [1]},
            stmt,
            {"sql": "SELECT COUNT(*) FROM app.fuzz_probe"},
        ]}),
    });
    out
}

/// POSTs like `Stack::post`, but a connection error is returned, not a panic.
async fn post(s: &Stack, path: &str, key: &str, body: &Value) -> Result<(u16, Value), String> {
    let resp = s
        .http
        .post(format!("{}{path}", s.gatekeeper_url))
        .header("X-API-Key", key)
        .json(body)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| format!("body: {e:?}"))?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

/// What is wrong with an answer's shape, if anything.
fn shape_problem(status: u16, body: &Value) -> Option<String> {
    if !ALLOWED.contains(&status) {
        return Some(format!("status {status} is not one of {ALLOWED:?}"));
    }
    if !body.is_object() {
        return Some(format!("status {status} with a body that is not JSON"));
    }
    if status != 200 {
        let code = body["error"]["code"].as_str().unwrap_or("");
        let rid = body["request_id"].as_str().unwrap_or("");
        if code.is_empty() || rid.is_empty() {
            return Some(format!(
                "status {status} without error.code and a non-empty request_id"
            ));
        }
    }
    None
}

/// `gtid` anywhere, or rows affected: a 200 that wrote.
fn wrote(body: &Value) -> bool {
    let affected = |r: &Value| r["rows_affected"].as_u64().unwrap_or(0) > 0;
    body.get("gtid").is_some_and(|g| !g.is_null())
        || affected(body)
        || body["results"]
            .as_array()
            .is_some_and(|rs| rs.iter().any(affected))
}

fn truncated(s: &str, max: usize) -> String {
    let mut d = format!("{s:?}");
    if d.len() > max {
        let mut at = max;
        while !d.is_char_boundary(at) {
            at -= 1;
        }
        d.truncate(at);
        d.push('…');
    }
    d
}

/// Counts of answers by key, status and code (with the server error number), each with a
/// first example.
#[derive(Default)]
struct Tally {
    buckets: BTreeMap<String, (usize, String)>,
    /// Statements the classifier passed that only the database's privileges stopped.
    privilege_refusals: BTreeMap<String, usize>,
}

impl Tally {
    fn add(&mut self, phase: Phase, send: &str, status: u16, body: &Value, sql: &str) {
        let code = body["error"]["code"].as_str().unwrap_or("-");
        let mysql = body["error"]["mysql_code"].as_u64();
        let mut key = format!("{} {status} {code}", phase.name());
        if let Some(m) = mysql {
            let _ = write!(key, "/{m}");
        }
        let e = self
            .buckets
            .entry(key)
            .or_insert_with(|| (0, format!("{send}: {}", truncated(sql, 120))));
        e.0 += 1;
        if mysql.is_some_and(|m| PRIVILEGE_ERRORS.contains(&m)) {
            let k = format!("{} {mysql:?} {}", phase.name(), truncated(sql, 160));
            *self.privilege_refusals.entry(k).or_default() += 1;
        }
    }
}

struct Run<'a> {
    seed: u64,
    cases: usize,
    cluster: &'a Cluster,
    stack: &'a Stack,
    out: &'a Path,
    baseline: Vec<(String, String)>,
}

impl Run<'_> {
    fn replay(&self) -> String {
        format!(
            "seed {} (replay: SQLGATE_FUZZ_SEED={} SQLGATE_FUZZ_CASES={} cargo test -p gatekeeper --test fuzz -- --nocapture)",
            self.seed, self.seed, self.cases
        )
    }

    fn snapshots(&self) -> Vec<(String, String)> {
        tokio::task::block_in_place(|| self.cluster.snapshots())
            .unwrap_or_else(|e| panic!("{}: snapshots: {e:#}", self.replay()))
    }

    /// The manager's most recent binlog events, to name what moved.
    fn binlog_tail(&self) -> String {
        let status = self
            .cluster
            .root_sql("manager", "SHOW MASTER STATUS")
            .unwrap_or_default();
        let Some(file) = status.split('\t').next().filter(|f| !f.trim().is_empty()) else {
            return "    (no binlog status)\n".into();
        };
        let events = self
            .cluster
            .root_sql("manager", &format!("SHOW BINLOG EVENTS IN '{file}'"))
            .unwrap_or_else(|e| e.to_string());
        let lines: Vec<&str> = events.lines().collect();
        let tail = &lines[lines.len().saturating_sub(30)..];
        tail.iter().map(|l| format!("    {l}\n")).collect()
    }

    async fn phase(&self, phase: Phase, key: &str, gen: &mut Gen, tally: &mut Tally) {
        let mut done = 0;
        let mut batch_no = 0;
        while done < self.cases {
            batch_no += 1;
            let n = BATCH.min(self.cases - done);
            let batch: Vec<Case> = (0..n).map(|_| gen.case()).collect();
            done += n;
            let started = Instant::now();
            let mut problems = Vec::new();
            let mut suspects = Vec::new();
            for (i, case) in batch.iter().enumerate() {
                for send in sends(case) {
                    let what = format!("#{i} {} {}", send.label, truncated(&case.sql, 300));
                    match post(self.stack, send.path, key, &send.body).await {
                        Err(e) => problems.push(format!("{what}: connection error {e}")),
                        Ok((status, body)) => {
                            tally.add(phase, &send.label, status, &body, &case.sql);
                            if let Some(p) = shape_problem(status, &body) {
                                problems.push(format!(
                                    "{what}: {p}: {}",
                                    truncated(&body.to_string(), 600)
                                ));
                            } else if case.good && status != 200 {
                                problems.push(format!(
                                    "{what}: a known-good read answered {status}: {body}"
                                ));
                            }
                            if status == 200 && !case.good && wrote(&body) {
                                suspects
                                    .push(format!("{what}: {}", truncated(&body.to_string(), 300)));
                            }
                        }
                    }
                }
            }
            let sent = started.elapsed();
            let after = self.snapshots();
            for ((node, before), (_, now)) in self.baseline.iter().zip(&after) {
                let (b, a) = (guarded(phase, before), guarded(phase, now));
                if b != a {
                    problems.push(format!(
                        "{node}: the snapshot moved ({} key may not move {}):\n{}",
                        phase.name(),
                        if phase == Phase::Read {
                            "anything"
                        } else {
                            "schema, users or grants"
                        },
                        diff(&b, &a)
                    ));
                }
            }
            match std::fs::read_dir(self.out).map(|d| d.count()) {
                Ok(0) => {}
                Ok(n) => problems.push(format!("{n} files written to {}", self.out.display())),
                Err(e) => problems.push(format!("read {}: {e}", self.out.display())),
            }
            eprintln!(
                "fuzz: {} key batch {batch_no}: {n} statements x 6 sends in {:.1} s, checked in {:.1} s",
                phase.name(),
                sent.as_secs_f64(),
                started.elapsed().as_secs_f64() - sent.as_secs_f64()
            );
            if !problems.is_empty() {
                let mut msg = format!(
                    "{}: {} key, batch {batch_no}: {} problem(s)\n",
                    self.replay(),
                    phase.name(),
                    problems.len()
                );
                for p in problems.iter().take(40) {
                    let _ = writeln!(msg, "  {p}");
                }
                if phase == Phase::Read && !suspects.is_empty() {
                    let _ = writeln!(msg, "read-key answers that report a write:");
                    for s in &suspects {
                        let _ = writeln!(msg, "  {s}");
                    }
                }
                let _ = writeln!(msg, "manager binlog tail:\n{}", self.binlog_tail());
                let _ = writeln!(msg, "the batch's statements:");
                for (i, c) in batch.iter().enumerate() {
                    let _ = writeln!(
                        msg,
                        "  #{i} {} params {}",
                        truncated(&c.sql, 400),
                        json!(c.params)
                    );
                }
                panic!("{msg}");
            }
        }
    }
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sql_text_lets_a_key_exceed_its_role() {
    let seed: u64 = env_number("SQLGATE_FUZZ_SEED").unwrap_or_else(rand::random);
    let cases: usize = env_number("SQLGATE_FUZZ_CASES").unwrap_or(DEFAULT_CASES);
    eprintln!("fuzz: seed {seed}, {cases} statements per key");
    let started = Instant::now();

    let cluster = tokio::task::block_in_place(|| Cluster::start(2))
        .unwrap_or_else(|e| panic!("seed {seed}: start the cluster: {e:#}"));
    // No rate limit: sequential sends approach the default 1000/s, and a known-good read
    // answered 429 would be a false failure.
    let opts = Options {
        gatekeeper_env: vec![("GATEKEEPER_RATE_LIMIT_RPS".into(), "0".into())],
        ..Options::default()
    };
    let stack = Stack::start(&cluster, opts)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: start the stack: {e:#}"));
    let setup = [
        "CREATE TABLE app.fuzz_probe (id INT PRIMARY KEY, v VARCHAR(20))",
        "INSERT INTO app.fuzz_probe VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd'), (5, 'e')",
        "CREATE TABLE app.fuzz_probe2 (id INT PRIMARY KEY)",
        "INSERT INTO app.fuzz_probe2 VALUES (1), (2), (3)",
        "CREATE VIEW app.fuzz_view AS SELECT id, v FROM app.fuzz_probe",
        "CREATE SEQUENCE app.fuzz_seq",
    ];
    for sql in setup {
        let (st, body) = stack.query(&stack.keys.admin, json!({"sql": sql})).await;
        assert_eq!(st, 200, "seed {seed}: setup {sql}: {body}");
    }
    // Named by the seed alone (lower-case hex, fixed length): the generator mangles the text
    // around it, so a random name would change every later draw and break the replay.
    let out = PathBuf::from(format!("/tmp/sqlgate-fuzz-out-{seed:016x}"));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir(&out).expect("a directory for INTO OUTFILE attempts");
    let mut run = Run {
        seed,
        cases,
        cluster: &cluster,
        stack: &stack,
        out: &out,
        baseline: Vec::new(),
    };
    run.baseline = run.snapshots();
    // The write key's filter must recognise what it ignores, or it would ignore nothing.
    let manager = &run.baseline[0].1;
    assert!(
        manager.lines().any(|l| l.starts_with("gtid\t"))
            && manager
                .lines()
                .any(|l| is_checksum(l) && l.contains("fuzz_probe")),
        "seed {seed}: the snapshot format changed (no gtid or checksum line found):\n{manager}"
    );
    let setup_done = started.elapsed();

    let mut gen = Gen::new(seed, &out);
    let mut tally = Tally::default();
    run.phase(Phase::Read, &stack.keys.read, &mut gen, &mut tally)
        .await;
    run.phase(Phase::Write, &stack.keys.write, &mut gen, &mut tally)
        .await;

    let mut summary = String::new();
    for (k, (n, example)) in &tally.buckets {
        let _ = writeln!(summary, "  {n:6}  {k}  e.g. {example}");
    }
    if !tally.privilege_refusals.is_empty() {
        let _ = writeln!(
            summary,
            "passed the classifier, refused by the database's privileges:"
        );
        for (k, n) in &tally.privilege_refusals {
            let _ = writeln!(summary, "  {n:6}  {k}");
        }
    }
    let mut per_code: HashMap<&str, usize> = HashMap::new();
    for (k, (n, _)) in &tally.buckets {
        *per_code
            .entry(k.split(' ').next().unwrap_or(""))
            .or_default() += n;
    }
    eprintln!(
        "fuzz: seed {seed}: {cases} statements per key, {} sends (read {}, write {}); setup {:.1} s, total {:.1} s\n{summary}",
        per_code.values().sum::<usize>(),
        per_code.get("read").copied().unwrap_or(0),
        per_code.get("write").copied().unwrap_or(0),
        setup_done.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    let _ = std::fs::remove_dir_all(&out);
}
