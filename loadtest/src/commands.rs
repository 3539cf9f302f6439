//! Runs each subcommand: resolves its target, measures, prints the table, writes the files.

use crate::bench::{self, BenchOptions, Targets};
use crate::chart;
use crate::cli::{
    groups_or_all, modes_or_all, seed_target, BenchArgs, BenchDocArgs, Command, SeedArgs,
    SelectArgs, SysbenchArgs, SysbenchReportArgs,
};
use crate::doc;
use crate::error::Error;
use crate::report::{self, create_results_dir, utc, PhaseRow};
use crate::scenario::{self, SeedOptions, SelectOptions};
use crate::schedule::Load;
use crate::sysbench::{self, Cluster, SysbenchReport};
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Runs one parsed command line.
pub async fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Seed(a) => seed(a).await,
        Command::Select(a) => select(a).await,
        Command::Sysbench(a) => sysbench_cmd(a).await,
        Command::SysbenchReport(a) => sysbench_report(&a),
        Command::Bench(a) => bench_cmd(a).await,
        Command::BenchDoc(a) => bench_doc(&a),
    }
}

fn progress_bar(hidden: bool, template: &str) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let p = ProgressBar::new(0);
    p.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", s.per_sec());
            })
            .progress_chars("=> "),
    );
    p
}

fn say_written(dir: &Path) {
    eprintln!("loadtest: reports in {}/", dir.display());
}

async fn seed(a: SeedArgs) -> Result<(), Error> {
    // A missing font would only show after the whole run: check it first.
    chart::load_font()?;
    let target = a.target.resolve("write")?;
    let opts = SeedOptions {
        requests: a.requests,
        load: a.load.load(),
        modes: modes_or_all(&a.modes),
        table: a.table.clone(),
        verify_within: a.verify_within,
    };
    let (iso, stamp) = utc(SystemTime::now());
    let progress = progress_bar(
        a.output.no_progress,
        "{msg:<18} [{bar:40}] {pos:>7}/{len} {rate:>8} eta {eta}",
    );
    let r = scenario::seed(&target, &opts, &iso, &progress).await?;
    let dir = create_results_dir(&a.output.out, &stamp)?;
    report::write_seed(&dir, &r)?;
    chart::seed_charts(&dir, &r)?;
    print!("{}", report::seed_text(&r));
    say_written(&dir);
    if r.verification.ok {
        Ok(())
    } else {
        Err(Error::Verification(r.verification.message))
    }
}

/// What `select` measured.
#[derive(Serialize)]
struct SelectReport {
    scenario: String,
    started_at: String,
    gatekeeper: String,
    load: Load,
    row: PhaseRow,
}

async fn select(a: SelectArgs) -> Result<(), Error> {
    let workload = a.workload();
    let target = a
        .target
        .resolve(if workload.writes() { "write" } else { "read" })?;
    if a.seed_api {
        scenario::seed_preflight(&target, a.sbtest.tables, a.sbtest.table_size).await?;
    } else {
        scenario::preflight(&target).await?;
        scenario::check_sbtest(&target, a.sbtest.tables, a.sbtest.table_size).await?;
    }
    let opts = SelectOptions {
        mode: a.mode,
        load: a.load.load(),
        stop: a.stop(),
        warmup: a.warmup,
        tables: a.sbtest.tables,
        table_size: a.sbtest.table_size,
        workload,
        seed_api: a.seed_api,
    };
    let (iso, stamp) = utc(SystemTime::now());
    let progress = progress_bar(a.output.no_progress, "{msg:<18} [{bar:40}] {elapsed:>4}");
    progress.set_length(u64::try_from(a.duration.as_millis()).unwrap_or(u64::MAX));
    progress.set_message(format!("{} {}", workload.label(), a.mode.as_str()));
    let r = scenario::select(&target, &opts, &progress).await?;
    progress.finish_and_clear();
    let row = PhaseRow::new(a.mode.as_str(), &workload.label(), &r);
    let out = SelectReport {
        scenario: "select".into(),
        started_at: iso,
        gatekeeper: target.gateway.url().to_string(),
        load: opts.load,
        row,
    };
    let dir = create_results_dir(&a.output.out, &stamp)?;
    report::write_json(&dir.join("select.json"), &out)?;
    let s = &out.row.summary;
    let cells = vec![
        out.row.mode.clone(),
        out.row.kind.clone(),
        s.count.to_string(),
        s.errors.to_string(),
        report::ms(s.avg_ms),
        report::ms(s.p50_ms),
        report::ms(s.p95_ms),
        report::ms(s.p99_ms),
        report::ms(s.max_ms),
        format!("{:.1}", s.throughput_rps),
    ];
    report::write_csv(
        &dir.join("select.csv"),
        &report::SUMMARY_COLUMNS,
        std::slice::from_ref(&cells),
    )?;
    println!(
        "select: {}, {}, {} s, gatekeeper {}\n",
        workload.label(),
        out.load,
        a.duration.as_secs_f64(),
        out.gatekeeper
    );
    print!(
        "{}",
        report::render_table(
            &[
                "mode", "type", "count", "errors", "avg ms", "p50 ms", "p95 ms", "p99 ms",
                "max ms", "req/s"
            ],
            &[cells]
        )
    );
    if !out.row.errors_by_code.is_empty() {
        println!("errors: {:?}", out.row.errors_by_code);
    }
    say_written(&dir);
    Ok(())
}

async fn sysbench_cmd(a: SysbenchArgs) -> Result<(), Error> {
    sysbench::version()?;
    let cluster = Cluster::local(&a.local_dir)?;
    let (iso, stamp) = utc(SystemTime::now());
    let (tables, size) = (a.sbtest.tables, a.sbtest.table_size);
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || sysbench::prepare(&c, tables, size))
        .await
        .map_err(|e| Error::Tool(format!("prepare: {e}")))??;
    if a.prepare_only {
        eprintln!("loadtest: sbtest tables prepared and replicated");
        return Ok(());
    }
    let extra = vec![
        format!("--threads={}", a.threads),
        format!("--time={}", a.time),
        "--percentile=95".to_string(),
        "--histogram=on".to_string(),
    ];
    let mut plan: Vec<(String, &str)> = cluster
        .workers()
        .iter()
        .map(|(n, _)| (n.clone(), "oltp_read_only"))
        .collect();
    plan.push((cluster.manager().0.clone(), "oltp_read_write"));
    let dir = create_results_dir(&a.out, &stamp)?;
    let mut results = Vec::new();
    for (i, (node, test)) in plan.iter().enumerate() {
        eprintln!(
            "loadtest: sysbench {}/{}: {test} on {node}, {} threads, {} s",
            i + 1,
            plan.len(),
            a.threads,
            a.time
        );
        let (c, n, t, x) = (
            cluster.clone(),
            node.clone(),
            test.to_string(),
            extra.clone(),
        );
        let (result, raw) =
            tokio::task::spawn_blocking(move || sysbench::run(&c, &n, &t, tables, size, &x))
                .await
                .map_err(|e| Error::Tool(format!("sysbench: {e}")))??;
        let path = dir.join(sysbench::file_name(node, test));
        std::fs::write(&path, raw).map_err(|e| Error::io("write", &path, e))?;
        results.push(result);
    }
    let c = cluster.clone();
    let identical =
        tokio::task::spawn_blocking(move || c.wait_identical(tables, Duration::from_secs(120)))
            .await
            .map_err(|e| Error::Tool(format!("checksum: {e}")))??;
    let r = SysbenchReport {
        scenario: "sysbench".into(),
        started_at: iso,
        tables,
        table_size: size,
        results,
        replicas_identical: Some(identical),
    };
    sysbench::write_report(&dir, &r)?;
    println!(
        "sysbench: {tables} tables × {size} rows, {} threads, {} s per test\n",
        a.threads, a.time
    );
    print!("{}", sysbench::text_table(&r.results));
    say_written(&dir);
    if identical {
        println!("replicas: sbtest checksums equal on the manager and every worker");
        Ok(())
    } else {
        let msg = "REPLICAS DIVERGED: sbtest checksums differ between the manager and a worker after 120 s";
        print!("{}", report::banner(msg));
        Err(Error::Verification(msg.into()))
    }
}

fn sysbench_report(a: &SysbenchReportArgs) -> Result<(), Error> {
    let results = sysbench::parse_dir(&a.dir)?;
    let (iso, _) = utc(SystemTime::now());
    let r = SysbenchReport {
        scenario: "sysbench".into(),
        started_at: iso,
        tables: 0,
        table_size: 0,
        results,
        replicas_identical: None,
    };
    sysbench::write_report(&a.dir, &r)?;
    print!("{}", sysbench::text_table(&r.results));
    say_written(&a.dir);
    Ok(())
}

async fn bench_cmd(a: BenchArgs) -> Result<(), Error> {
    // Argument errors first, before anything is reached.
    let groups = groups_or_all(&a.groups);
    let seed = seed_target(&groups, a.seed_url.as_deref(), a.target.timeout)?;
    let mix_script = a.lua_dir.join(bench::MIX_SCRIPT);
    if groups.contains(&bench::Group::Mixed) && !mix_script.is_file() {
        return Err(Error::Usage(format!(
            "the mixed group's sysbench script {} is missing (run from the repository root, or \
             give --lua-dir)",
            mix_script.display()
        )));
    }
    let read = a.target.resolve("read")?;
    let write = if groups
        .iter()
        .any(|g| matches!(g, bench::Group::Writes | bench::Group::Mixed))
    {
        Some(a.target.resolve("write")?)
    } else {
        None
    };
    let cluster = Cluster::local(&a.target.local_dir)?;
    let run_dir = a.target.local_dir.join("run");
    let opts = BenchOptions {
        time: Duration::from_secs(a.time),
        warmup: Duration::from_secs(a.warmup),
        concurrencies: a.concurrency.iter().map(|&c| c as usize).collect(),
        modes: modes_or_all(&a.modes),
        groups,
        mix_write_percent: a.mix_write_percent,
        tables: a.sbtest.tables,
        table_size: a.sbtest.table_size,
        direct_node: a.direct_node.clone(),
        lua_dir: a.lua_dir.clone(),
        watch: ["gatekeeper", "proxy"]
            .iter()
            .map(|n| (n.to_string(), run_dir.join(format!("{n}.pid"))))
            .collect(),
        seed_watch: [
            ("seed-gatekeeper", "gatekeeper.py"),
            ("seed-proxy", "proxy.py"),
        ]
        .iter()
        .map(|(n, word)| {
            (
                n.to_string(),
                run_dir.join(format!("{n}.pid")),
                word.to_string(),
            )
        })
        .collect(),
        state_dir: a.target.local_dir.clone(),
        settings: a.settings.clone(),
        invocation: a.invocation.clone(),
    };
    let targets = Targets { read, write, seed };
    let (iso, stamp) = utc(SystemTime::now());
    let dir = create_results_dir(&a.out, &stamp)?;
    let r = bench::run(&targets, &cluster, &opts, &iso, &dir).await?;
    bench::write_files(&dir, &r)?;
    doc::write(&a.doc, &r, &dir.display().to_string(), Some(&a.notes))?;
    println!(
        "bench: {}, {} s per run, gateway = {}\n",
        r.groups
            .iter()
            .map(|g| g.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        a.time,
        r.gatekeeper
    );
    print!("{}", bench::text_table(&r));
    say_written(&dir);
    eprintln!("loadtest: wrote {}", a.doc.display());
    Ok(())
}

fn bench_doc(a: &BenchDocArgs) -> Result<(), Error> {
    let r: bench::BenchReport = report::read_json(&a.dir.join("bench.json"))?;
    doc::write(&a.doc, &r, &a.dir.display().to_string(), Some(&a.notes))?;
    eprintln!(
        "loadtest: wrote {} from {}",
        a.doc.display(),
        a.dir.display()
    );
    Ok(())
}
