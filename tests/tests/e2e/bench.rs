//! The benchmark program stays runnable: `walcast-bench smoke` runs every scenario once with tiny
//! parameters and must print each one's table. Figures are not checked: at this size, on a shared
//! machine, they are noise; what breaks silently otherwise is a scenario that no longer runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Title prefix of every scenario's table, as the bench prints it.
const TABLES: [&str; 13] = [
    "# ingest:",
    "# latency:",
    "# plugin overhead:",
    "# idle:",
    "# fanout:",
    "# selective:",
    "# plugins:",
    "# bigtx:",
    "# catchup:",
    "# resume:",
    "# trickle:",
    "# snapshot:",
    "# notify:",
];

/// Data rows of the table titled `title`: `|` lines after the column header and the `|---`
/// rule, up to the blank line that ends each scenario's output. `None` when the title is absent.
fn table_rows(stdout: &str, title: &str) -> Option<Vec<String>> {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with(title));
    lines.next()?;
    let table: Vec<&str> = lines
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with('|'))
        .collect();
    Some(
        table
            .iter()
            .skip(1)
            .filter(|l| !l.starts_with("|---"))
            .map(|l| l.to_string())
            .collect(),
    )
}

#[test]
fn bench_smoke_prints_every_table() -> Result<()> {
    // The `plugin` and `plugins` scenarios load it; a missing build is a setup error, reported
    // as plugins.rs does.
    let threshold = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist/threshold.wasm");
    if !threshold.is_file() {
        bail!(
            "{} missing: run plugins/build.sh first",
            threshold.display()
        );
    }
    // The bench finds walcast as the harness does (`WALCAST_BIN`, else target/), with this
    // environment. Tests run in the package directory, so a `WALCAST_BIN` relative to the
    // workspace root (as typed there) is made absolute for the bench.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_walcast-bench"));
    if let Some(bin) = std::env::var_os("WALCAST_BIN").map(PathBuf::from) {
        let from_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(&bin);
        if bin.is_relative() && !bin.is_file() && from_root.is_file() {
            cmd.env("WALCAST_BIN", from_root);
        }
    }
    let out = cmd
        .arg("smoke")
        .stdin(Stdio::null())
        .output()
        .context("cannot run walcast-bench")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "walcast-bench smoke exited with {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        );
    }
    for title in TABLES {
        match table_rows(&stdout, title) {
            None => bail!("no `{title}` table in the smoke output:\n{stdout}"),
            Some(rows) if rows.is_empty() => {
                bail!("the `{title}` table has no rows:\n{stdout}\nstderr:\n{stderr}")
            }
            Some(_) => {}
        }
    }
    Ok(())
}
