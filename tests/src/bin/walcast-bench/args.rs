//! Command line of the bench: the scenario name, then `--flag value` pairs. Each scenario has its
//! own defaults and accepts only the flags it uses, so a flag meant for another scenario (or a
//! typo) is an error instead of being silently ignored.

use anyhow::{bail, Context, Result};

/// Resolved parameters of one scenario run (defaults overridden by flags).
#[derive(Clone, Debug)]
pub struct Args {
    pub scenario: String,
    pub rows: u64,
    pub small: u64,
    pub runs: usize,
    /// Client counts (`--subscribers`; `--clients` for `catchup`, whose clients replay the
    /// journal rather than subscribe to the live stream; `--sockets` for `notify`).
    pub subscribers: Vec<usize>,
    pub groups: Vec<usize>,
    pub rate: u64,
    pub seconds: u64,
    pub batch: u64,
    /// `journal.fsync` policies walcast runs with (`ingest`).
    pub fsync: Vec<String>,
    /// Rows committed after the resume position (`resume`).
    pub backlog: u64,
    /// Frames per second the slow client reads (`trickle`).
    pub slow_rate: u64,
    /// Channels of the one-socket-per-channel case (`notify`).
    pub channels: u64,
    /// Distinct row owners, one cohort each (`policy`).
    pub owners: usize,
    /// Subscribes in flight at once (`policy`).
    pub concurrency: usize,
    /// Clients replaying the journal beside the live subscribers, one table row per count
    /// (`replay`; 0 measures the live subscribers alone).
    pub replays: Vec<usize>,
    /// Size of the journal the replays read, in MiB (`replay`).
    pub journal_mib: u64,
    /// walcast builds measured side by side: (`before` | `after`, path) (`replay`).
    pub binaries: Vec<(String, String)>,
    /// Tables, columns per table and timed statements per database and run (`ddl`).
    pub tables: usize,
    pub columns: usize,
    pub statements: u64,
}

/// Every scenario with the flags it takes; `smoke` takes none.
pub const SCENARIOS: &[(&str, &[&str])] = &[
    ("ingest", &["--rows", "--small", "--runs", "--fsync"]),
    (
        "latency",
        &["--subscribers", "--rate", "--seconds", "--runs"],
    ),
    ("plugin", &["--rows", "--runs"]),
    ("idle", &["--subscribers", "--runs"]),
    (
        "fanout",
        &["--subscribers", "--rate", "--seconds", "--batch", "--runs"],
    ),
    (
        "selective",
        &["--subscribers", "--rate", "--seconds", "--batch", "--runs"],
    ),
    (
        "plugins",
        &[
            "--subscribers",
            "--groups",
            "--rate",
            "--seconds",
            "--batch",
            "--runs",
        ],
    ),
    ("bigtx", &["--rows", "--runs"]),
    ("catchup", &["--rows", "--clients", "--runs"]),
    ("resume", &["--backlog", "--runs"]),
    ("trickle", &["--rows", "--slow-rate", "--seconds", "--runs"]),
    ("snapshot", &["--rows", "--runs"]),
    (
        "notify",
        &["--sockets", "--channels", "--rate", "--seconds", "--runs"],
    ),
    (
        "policy",
        &[
            "--subscribers",
            "--owners",
            "--concurrency",
            "--rate",
            "--seconds",
            "--runs",
        ],
    ),
    (
        "replay",
        &[
            "--subscribers",
            "--replays",
            "--journal-mib",
            "--rate",
            "--seconds",
            "--runs",
            "--before",
            "--after",
        ],
    ),
    ("ddl", &["--tables", "--columns", "--statements", "--runs"]),
    ("smoke", &[]),
];

/// The defaults of `scenario` (the commands in docs/development/benchmarks.md spell them out).
pub fn defaults(scenario: &str) -> Args {
    let mut a = Args {
        scenario: scenario.into(),
        rows: 1_000_000,
        small: 100_000,
        runs: 3,
        subscribers: vec![100],
        groups: vec![1, 10, 100],
        rate: 500,
        seconds: 10,
        batch: 10,
        fsync: vec!["burst".to_owned()],
        backlog: 10_000,
        slow_rate: 100,
        channels: 100,
        owners: 100,
        concurrency: 50,
        replays: vec![0, 20],
        journal_mib: 1024,
        binaries: Vec::new(),
        tables: 100,
        columns: 10,
        statements: 200,
    };
    match scenario {
        "latency" => a.rate = 5_000,
        "idle" => a.subscribers = vec![10_000],
        "fanout" | "plugins" => a.subscribers = vec![1_000],
        "selective" => {
            a.subscribers = vec![100, 10_000, 50_000];
            a.rate = 1_000;
        }
        // One run: a 10,000,000-row backlog takes minutes to build and drain twice.
        "bigtx" => {
            a.rows = 10_000_000;
            a.runs = 1;
        }
        "catchup" => {
            a.rows = 200_000;
            a.subscribers = vec![1, 100];
        }
        // `--seconds` caps the window: a stream held back by the slow client would take
        // rows / slow-rate seconds.
        "trickle" => {
            a.rows = 200_000;
            a.seconds = 30;
        }
        "notify" => {
            a.subscribers = vec![1, 100, 1_000];
            a.rate = 2_000;
            a.seconds = 5;
        }
        "policy" => {
            a.subscribers = vec![10_000];
            a.rate = 200;
            a.seconds = 5;
        }
        "replay" => {
            a.rate = 1_000;
            a.seconds = 20;
        }
        "ddl" => a.runs = 5,
        _ => {}
    }
    a
}

/// Tiny parameters for `smoke`: every code path once, in seconds rather than minutes.
pub fn smoke(scenario: &str) -> Args {
    let mut a = defaults(scenario);
    a.runs = 1;
    a.rows = if scenario == "bigtx" { 2_000 } else { 200 };
    a.small = 200;
    a.backlog = 200;
    a.subscribers = if scenario == "catchup" {
        vec![1, 3]
    } else {
        vec![3]
    };
    a.groups = vec![1, 2];
    a.channels = 3;
    a.rate = 100;
    a.seconds = 1;
    a.replays = vec![2];
    a.journal_mib = 4;
    a.tables = 5;
    a.columns = 3;
    a.statements = 20;
    a
}

/// Parses `<scenario> [--flag value]...` (the program name already skipped).
pub fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args> {
    let scenario = argv.next().context("no scenario given")?;
    let Some((_, allowed)) = SCENARIOS.iter().find(|(name, _)| *name == scenario) else {
        bail!("unknown scenario {scenario:?}");
    };
    let mut a = defaults(&scenario);
    while let Some(flag) = argv.next() {
        if !allowed.contains(&flag.as_str()) {
            bail!(
                "{scenario} does not take {flag} (it takes: {})",
                allowed.join(" ")
            );
        }
        let value = argv
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--subscribers" | "--clients" | "--sockets" => a.subscribers = list(&flag, &value)?,
            "--groups" => a.groups = list(&flag, &value)?,
            "--replays" => a.replays = counts(&flag, &value)?,
            // `before` first, so ratios read before / after.
            "--before" => a.binaries.insert(0, ("before".into(), value)),
            "--after" => a.binaries.push(("after".into(), value)),
            "--fsync" => a.fsync = policies(&value)?,
            _ => {
                let n = number(&flag, &value)?;
                match flag.as_str() {
                    "--rows" => a.rows = n,
                    "--small" => a.small = n,
                    "--runs" => a.runs = n as usize,
                    "--rate" => a.rate = n,
                    "--seconds" => a.seconds = n,
                    "--batch" => a.batch = n,
                    "--backlog" => a.backlog = n,
                    "--slow-rate" => a.slow_rate = n,
                    "--channels" => a.channels = n,
                    "--owners" => a.owners = n as usize,
                    "--concurrency" => a.concurrency = n as usize,
                    "--journal-mib" => a.journal_mib = n,
                    "--tables" => a.tables = n as usize,
                    "--columns" => a.columns = n as usize,
                    "--statements" => a.statements = n,
                    other => bail!("unknown flag {other}"),
                }
            }
        }
    }
    for (flag, v) in [
        ("--runs", a.runs as u64),
        ("--rate", a.rate),
        ("--seconds", a.seconds),
        ("--batch", a.batch),
        ("--backlog", a.backlog),
        ("--slow-rate", a.slow_rate),
        ("--channels", a.channels),
        ("--owners", a.owners as u64),
        ("--concurrency", a.concurrency as u64),
        ("--tables", a.tables as u64),
        ("--columns", a.columns as u64),
        ("--statements", a.statements),
    ] {
        if v == 0 {
            bail!("{flag} must be at least 1");
        }
    }
    if matches!(scenario.as_str(), "catchup" | "trickle" | "snapshot") && a.rows == 0 {
        bail!("--rows must be at least 1");
    }
    if matches!(scenario.as_str(), "latency" | "replay") && a.subscribers.len() != 1 {
        bail!("{scenario} takes one --subscribers value");
    }
    if scenario == "replay" && a.journal_mib == 0 {
        bail!("--journal-mib must be at least 1");
    }
    Ok(a)
}

fn number(flag: &str, value: &str) -> Result<u64> {
    value
        .replace('_', "")
        .parse()
        .with_context(|| format!("{flag} {value}: not a number"))
}

/// A comma list of `journal.fsync` policies, e.g. `always,burst,never`.
fn policies(value: &str) -> Result<Vec<String>> {
    value
        .split(',')
        .map(|p| match p.trim() {
            p @ ("always" | "burst" | "never") => Ok(p.to_owned()),
            other => bail!("--fsync {other:?}: use always, burst or never (a comma list)"),
        })
        .collect()
}

/// A comma list of counts, 0 included, e.g. `0,20`.
fn counts(flag: &str, value: &str) -> Result<Vec<usize>> {
    value
        .split(',')
        .map(|s| number(flag, s.trim()).map(|n| n as usize))
        .collect()
}

/// A comma list of positive counts, e.g. `1000,10000,50000`.
fn list(flag: &str, value: &str) -> Result<Vec<usize>> {
    let v = value
        .split(',')
        .map(|s| number(flag, s.trim()).map(|n| n as usize))
        .collect::<Result<Vec<_>>>()?;
    if v.contains(&0) {
        bail!("{flag} {value}: counts must be at least 1");
    }
    Ok(v)
}
