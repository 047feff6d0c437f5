//! Facts about the host the embedded cluster runs on: where the binaries are, whether wal2json
//! is installed, whether we are root (Postgres refuses to run as root, so we switch to the
//! `postgres` user with `runuser`), and what the server binary supports. Changes nothing on the
//! host.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::EmbeddedError;

/// The OS user that owns the cluster when walcast itself runs as root.
pub(super) const PG_USER: &str = "postgres";

/// Binaries the embedded cluster needs, checked up front so the error names the package.
pub(super) fn check_binaries(pg_bin: &Path) -> Result<(), EmbeddedError> {
    for name in ["initdb", "postgres"] {
        let path = pg_bin.join(name);
        if !path.is_file() {
            return Err(EmbeddedError::MissingBinaries { path });
        }
    }
    Ok(())
}

/// wal2json lives in the server's pkglibdir; ask `pg_config` from the same bin directory and
/// fall back to Debian's layout (`{pg_bin}/../lib`).
pub(super) fn check_wal2json(pg_bin: &Path) -> Result<(), EmbeddedError> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    let pg_config = pg_bin.join("pg_config");
    if pg_config.is_file() {
        if let Ok(out) = Command::new(&pg_config).arg("--pkglibdir").output() {
            if out.status.success() {
                let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                if !dir.is_empty() {
                    candidates.push(Path::new(&dir).join("wal2json.so"));
                }
            }
        }
    }
    candidates.push(pg_bin.join("../lib/wal2json.so"));
    if candidates.iter().any(|p| p.is_file()) {
        return Ok(());
    }
    let looked = candidates
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Err(EmbeddedError::MissingWal2json { looked })
}

/// Effective uid 0? Read from /proc (no libc dependency), falling back to `id -u`.
pub(super) fn running_as_root() -> bool {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) {
            // Uid: real effective saved fs
            if let Some(effective) = line.split_whitespace().nth(2) {
                return effective == "0";
            }
        }
    }
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command for `program`, run as the `postgres` user when we are root.
pub(super) fn pg_command(program: &Path, as_root: bool) -> Command {
    if as_root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", PG_USER, "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Gives the `postgres` user a directory tree we created as root.
pub(super) fn chown_to_pg_user(dir: &Path) -> Result<(), EmbeddedError> {
    let out = Command::new("chown")
        .arg("-R")
        .arg(format!("{PG_USER}:{PG_USER}"))
        .arg(dir)
        .output()
        .map_err(|e| EmbeddedError::io("run chown", e))?;
    if !out.status.success() {
        return Err(EmbeddedError::Command {
            command: "chown",
            status: out.status,
            output: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// Postgres 15.19+ decodes only with plugins named in `output_plugin_libraries`; older servers
/// reject the setting outright, so pass it only when the binary knows it.
pub(super) fn supports_output_plugin_libraries(pg_bin: &Path, as_root: bool) -> bool {
    pg_command(&pg_bin.join("postgres"), as_root)
        .arg("--describe-config")
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|line| line.split('\t').next() == Some("output_plugin_libraries"))
        })
        .unwrap_or(false)
}

/// A TCP port nobody listens on right now. The cluster listens only on its Unix socket, whose
/// file name carries the port, so this just keeps socket names distinct and realistic.
pub(super) fn free_port() -> Result<u16, EmbeddedError> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| EmbeddedError::io("find a free port", e))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|e| EmbeddedError::io("find a free port", e))
}

/// Sends a signal by name (`INT`, `QUIT`, `KILL`) with the `kill` command; no libc needed.
pub(super) fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Last `lines` lines of a text file, for error messages about a failed server start.
pub(super) fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
