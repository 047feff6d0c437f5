//! The two plugin SDK guides (`filter-sdk/README.md` for Rust, `filter-sdk/assemblyscript/README.md`
//! for AssemblyScript), followed as a new user would in a fresh directory: copy the template out of
//! the repository, apply the guide's steps with the code and commands it prints, build, run the
//! plugin's own test, then the guide's `walcast plugin check` / `walcast plugin run` lines against
//! the real binary. Code blocks are read from the guides, so a guide edit that breaks a step fails
//! here. Needs what `plugins/build.sh` sets up: a wasm32 Rust toolchain, node and npm.

use std::fmt;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use walcast_tests::{unique_suffix, walcast_binary};

/// Where the guides tell users to put their checkout of walcast.
const PLACEHOLDER: &str = "/path/to/walcast";
const WASM32: &str = "wasm32-unknown-unknown";
/// Generous: the CI machine is small and may be busy; a step normally takes seconds.
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
const QUICK_TIMEOUT: Duration = Duration::from_secs(120);

/// Env meant for the host build that would break or redirect a wasm32 guest build (the list
/// `plugins/build.sh` unsets).
const HOST_BUILD_ENV: &[&str] = &[
    "RUSTC",
    "RUSTDOC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_TARGET_DIR",
];

#[test]
fn rust_guide_and_template_build_check_and_run() -> Result<()> {
    let user = User::new("rust")?;
    let guide = read(&user.repo.join("filter-sdk/README.md"))?;
    let guide = section(&guide, "## Write your first filter in 5 minutes (Rust)")?;

    // 1. Copy the template; the guide's `cp` reads the checkout as `walcast/` in the current dir.
    let work = user.dir("work")?;
    std::os::unix::fs::symlink(&user.repo, work.join("walcast"))?;
    user.sh(&block(step(guide, 1)?, "sh")?, &work, QUICK_TIMEOUT)?
        .ok()?;
    let krate = work.join("my_filter");
    // Point the SDK dependency at the checkout with the line the guide gives. The package keeps
    // its name: the guide's commands below run `my_filter.wasm`.
    let dep = user.fill(inline_code(step(guide, 1)?, "walcast-filter-sdk = ")?);
    let manifest = read(&krate.join("Cargo.toml"))?;
    let old = manifest
        .lines()
        .find(|l| l.starts_with("walcast-filter-sdk = "))
        .context("template Cargo.toml has no walcast-filter-sdk dependency line")?;
    fs::write(krate.join("Cargo.toml"), manifest.replace(old, &dep))?;

    // The template as it is, with the commands of its own README.
    let wasm = krate.join("target/wasm32-unknown-unknown/release/my_filter.wasm");
    build_rust(&krate, &wasm)?;
    let readme = read(&user.repo.join("filter-sdk/template/README.md"))?;
    let runs = user.run_walcast_lines(&all_blocks(&readme, "sh").join("\n"), &krate)?;
    for run in &runs {
        ensure!(
            run.stderr.contains("[my_filter] info: my_filter ready"),
            "the guest's log line belongs on stderr: {run}"
        );
    }
    let people = |status: &str| insert("people", &format!(r#"{{"id":1,"status":"{status}"}}"#));
    let params = ["column=status", "equals=active"];
    expect_verdict(&plugin_run(&wasm, &people("banned"), &params)?, "drop")?;
    let tagged = plugin_run(&wasm, &people("active"), &[params[0], params[1], "tag=vip"])?;
    expect_verdict(&tagged, "rewritten")?;
    ensure!(tagged.stdout.contains(r#""tag":"vip""#), "{tagged}");

    // 2. The guide's plugin replaces the template's.
    fs::write(krate.join("src/lib.rs"), block(step(guide, 2)?, "rust")?)?;
    // 3. Build. 4. The guide's `check` and `run` lines: every example change passes `min=100`.
    build_rust(&krate, &wasm)?;
    let runs = user.run_walcast_lines(&all_blocks(step(guide, 4)?, "sh").join("\n"), &krate)?;
    ensure!(runs.len() >= 4, "step 4 should run four changes");
    let small = insert("orders", r#"{"id":1,"amount":99.5}"#);
    expect_verdict(&plugin_run(&wasm, &small, &["min=100"])?, "drop")?;
    let rejected = plugin_run(&wasm, &small, &[])?;
    ensure!(
        !rejected.ok && rejected.stderr.contains(r#"param "min" is required"#),
        "a rejecting init fails the command, naming the param: {rejected}"
    );
    Ok(())
}

#[test]
fn assemblyscript_guide_and_template_build_test_check_and_run() -> Result<()> {
    let user = User::new("as")?;
    let guide = read(&user.repo.join("filter-sdk/assemblyscript/README.md"))?;
    let guide = section(&guide, "## Write your first filter in 5 minutes")?;
    let sdk_before = sdk_state(&user.repo)?;

    // 1. Copy the template and point it at the SDK.
    let work = user.dir("work")?;
    user.sh(&block(step(guide, 1)?, "sh")?, &work, BUILD_TIMEOUT)?
        .ok()?;
    let plugin = work.join("status");

    // 2. Build and test the template as it is: its test.mjs must pass as copied.
    let built = user.sh(&block(step(guide, 2)?, "sh")?, &plugin, BUILD_TIMEOUT)?;
    let built = built.ok()?;
    ensure!(built.stdout.contains("template tests passed"), "{built}");
    let wasm = plugin.join("build/status.wasm");
    let user_row = |status: &str| {
        insert(
            "users",
            &format!(r#"{{"id":1,"status":"{status}","password":"hunter2"}}"#),
        )
    };
    let params = ["column=status", "equals=active", "hide=password"];
    let hidden = plugin_run(&wasm, &user_row("active"), &params)?;
    expect_verdict(&hidden, "rewritten")?;
    ensure!(
        !hidden.stdout.contains("hunter2"),
        "hide=password: {hidden}"
    );
    expect_verdict(&plugin_run(&wasm, &user_row("banned"), &params)?, "drop")?;

    // 3. The guide's plugin and its test replace the template's; build and test again.
    let step3 = step(guide, 3)?;
    fs::write(plugin.join("assembly/index.ts"), block(step3, "ts")?)?;
    fs::write(plugin.join("test.mjs"), block(step3, "js")?)?;
    let again = inline_code(step3, "./build.sh && node test.mjs")?;
    let tested = user.sh(again, &plugin, BUILD_TIMEOUT)?.ok()?;
    ensure!(tested.stdout.contains("status tests passed"), "{tested}");

    // 4. The guide's `check` and `run` lines: every example change passes `status=paid`.
    let runs = user.run_walcast_lines(&block(step(guide, 4)?, "sh")?, &plugin)?;
    ensure!(runs.len() >= 3, "step 4 should run three changes");
    let order = |status: &str| insert("orders", &format!(r#"{{"id":1,"status":"{status}"}}"#));
    expect_verdict(
        &plugin_run(&wasm, &order("open"), &["status=paid"])?,
        "drop",
    )?;
    let rejected = plugin_run(&wasm, &order("paid"), &[])?;
    ensure!(
        !rejected.ok && rejected.stderr.contains(r#"param "status" is required"#),
        "a rejecting walcast_init fails the command, naming the param: {rejected}"
    );

    // build.sh writes only inside the plugin's folder: nothing beside it, nothing in the SDK.
    ensure!(
        entries(&work)? == ["status"],
        "the build wrote beside the plugin folder: {:?}",
        entries(&work)?
    );
    let sdk_after = sdk_state(&user.repo)?;
    ensure!(
        sdk_after == sdk_before,
        "the build changed filter-sdk/ in the repository:\nbefore:\n{sdk_before}\nafter:\n{sdk_after}"
    );
    Ok(())
}

/// A new user's scratch space: `bin/walcast` (the binary under test, on `PATH`) and work dirs,
/// all removed on drop. Removal does not follow symlinks (`node_modules/@walcast/filter-sdk`
/// points into the repository).
struct User {
    root: PathBuf,
    bin: PathBuf,
    repo: PathBuf,
}

impl User {
    fn new(label: &str) -> Result<User> {
        let repo = fs::canonicalize(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))?;
        let root = std::env::temp_dir().join(format!("walcast-guide-{label}-{}", unique_suffix()));
        let bin = root.join("bin");
        fs::create_dir_all(&bin)?;
        let user = User { root, bin, repo };
        // The guides' paths are pasted into shell lines unquoted, as a user would.
        for path in [&user.repo, &user.root] {
            let text = path.display().to_string();
            ensure!(
                !text.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c)),
                "the guides' commands need a path without spaces or quotes: {text}"
            );
        }
        let binary = fs::canonicalize(walcast_binary()?)?;
        std::os::unix::fs::symlink(binary, user.bin.join("walcast"))?;
        Ok(user)
    }

    fn dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.root.join(name);
        fs::create_dir(&dir)?;
        Ok(dir)
    }

    /// Guide text with the checkout's placeholder path replaced by this repository.
    fn fill(&self, text: &str) -> String {
        text.replace(PLACEHOLDER, &self.repo.display().to_string())
    }

    /// Runs a guide's shell lines in `cwd` (`sh -e`), with `walcast` on `PATH`.
    fn sh(&self, script: &str, cwd: &Path, timeout: Duration) -> Result<Ran> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![self.bin.clone()];
        paths.extend(std::env::split_paths(&path));
        let mut cmd = Command::new("sh");
        cmd.arg("-ec")
            .arg(self.fill(script))
            .current_dir(cwd)
            .env("PATH", std::env::join_paths(paths)?)
            // Reuse npm's cache when it holds the pinned compiler (plugins/build.sh filled it).
            .env("npm_config_prefer_offline", "true")
            .env("npm_config_update_notifier", "false");
        for key in HOST_BUILD_ENV {
            cmd.env_remove(key);
        }
        run(
            &mut cmd,
            &format!("`{}` in {}", script.trim(), cwd.display()),
            timeout,
        )
    }

    /// Runs every `walcast plugin ...` command of a guide's shell block: `check` must succeed,
    /// `run` must print `verdict: pass`. Returns the runs.
    fn run_walcast_lines(&self, script: &str, cwd: &Path) -> Result<Vec<Ran>> {
        let commands = shell_commands(script);
        let mut runs = Vec::new();
        let mut checked = false;
        for cmd in commands.iter().filter(|c| c.starts_with("walcast plugin ")) {
            let ran = self.sh(cmd, cwd, QUICK_TIMEOUT)?;
            if cmd.starts_with("walcast plugin check ") {
                ran.ok()?;
                checked = true;
            } else {
                expect_verdict(&ran, "pass")?;
                runs.push(ran);
            }
        }
        ensure!(
            checked && !runs.is_empty(),
            "no `walcast plugin check` and `run` lines in:\n{script}"
        );
        Ok(runs)
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Builds the crate for wasm32 with the guide's command, in its own target dir (the guide's
/// `target/`), with the toolchain `plugins/build.sh` would pick.
fn build_rust(krate: &Path, wasm: &Path) -> Result<()> {
    let mut cmd = guest_cargo()?;
    cmd.args(["build", "--target", WASM32, "--release"])
        .current_dir(krate)
        .env("CARGO_TARGET_DIR", krate.join("target"))
        // A template with registry dependencies would not build offline with Debian's cargo 1.65.
        .env("CARGO_NET_OFFLINE", "true");
    let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
    let what = format!("`cargo {}` in {}", args.join(" "), krate.display());
    run(&mut cmd, &what, BUILD_TIMEOUT)?.ok()?;
    ensure!(wasm.is_file(), "the build did not write {}", wasm.display());
    Ok(())
}

/// `cargo +debian` when that toolchain is linked and has the wasm32 std, else the default cargo
/// when it has it (as `plugins/build.sh` chooses; it also installs Debian's toolchain when neither).
fn guest_cargo() -> Result<Command> {
    let hygienic = |program: &str, toolchain: Option<&str>| {
        let mut cmd = Command::new(program);
        cmd.args(toolchain);
        for key in HOST_BUILD_ENV {
            cmd.env_remove(key);
        }
        cmd
    };
    let has_wasm_std = |toolchain: Option<&str>| {
        let libdir = hygienic("rustc", toolchain)
            .args(["--print", "target-libdir", "--target", WASM32])
            .output();
        let Ok(libdir) = libdir else { return false };
        let dir = String::from_utf8_lossy(&libdir.stdout).trim().to_string();
        let Ok(files) = fs::read_dir(dir) else {
            return false;
        };
        libdir.status.success()
            && files
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("libcore-"))
    };
    let debian = Some("+debian");
    if hygienic("cargo", debian)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        && has_wasm_std(debian)
    {
        return Ok(hygienic("cargo", debian));
    }
    if has_wasm_std(None) {
        return Ok(hygienic("cargo", None));
    }
    bail!("no Rust toolchain with the {WASM32} target: run plugins/build.sh (make test does), which installs one")
}

/// A finished child process, shown whole when a step fails.
struct Ran {
    what: String,
    ok: bool,
    status: String,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn ok(self) -> Result<Ran> {
        ensure!(self.ok, "{self}");
        Ok(self)
    }
}

impl fmt::Display for Ran {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} exited with {}\n--- stdout\n{}\n--- stderr\n{}",
            self.what, self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` in its own process group; on `timeout` kills the group (npm, node, rustc included).
fn run(cmd: &mut Command, what: &str, timeout: Duration) -> Result<Ran> {
    let started = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let (out, timed_out): (Output, bool) = match rx.recv_timeout(timeout) {
        Ok(out) => (out?, false),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            (rx.recv()??, true)
        }
    };
    let ran = Ran {
        what: what.to_string(),
        ok: out.status.success() && !timed_out,
        status: if timed_out {
            format!("a timeout after {timeout:?}")
        } else {
            format!("{} after {:?}", out.status, started.elapsed())
        },
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    Ok(ran)
}

/// `walcast plugin run <wasm> --change <change> [--param k=v]...`.
fn plugin_run(wasm: &Path, change: &str, params: &[&str]) -> Result<Ran> {
    let mut cmd = Command::new(walcast_binary()?);
    cmd.args(["plugin", "run"])
        .arg(wasm)
        .args(["--change", change]);
    for p in params {
        cmd.args(["--param", p]);
    }
    run(
        &mut cmd,
        &format!("walcast plugin run ... {params:?}"),
        QUICK_TIMEOUT,
    )
}

/// A walcast change frame: an insert of the JSON row `new` into `public.<table>`.
fn insert(table: &str, new: &str) -> String {
    format!(r#"{{"type":"change","op":"insert","schema":"public","table":"{table}","new":{new}}}"#)
}

/// Requires success and `verdict: <want>` on stdout.
fn expect_verdict(ran: &Ran, want: &str) -> Result<()> {
    let got = ran
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("verdict: "))
        .and_then(|rest| rest.split_whitespace().next());
    ensure!(
        ran.ok && got == Some(want),
        "expected verdict {want}, got {got:?}: {ran}"
    );
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The text from the line `heading` to the next `## ` heading.
fn section<'a>(doc: &'a str, heading: &str) -> Result<&'a str> {
    let start = doc
        .find(&format!("\n{heading}\n"))
        .with_context(|| format!("no heading {heading:?}"))?;
    let rest = &doc[start + 1..];
    let end = rest[heading.len()..]
        .find("\n## ")
        .map_or(rest.len(), |i| i + heading.len());
    Ok(&rest[..end])
}

/// Step `n` of a guide: from the line starting `n. ` (or `**n. `) to the one starting `n+1. `.
fn step(section: &str, n: u32) -> Result<&str> {
    let at = |k: u32| {
        let marks = [format!("\n{k}. "), format!("\n**{k}. ")];
        marks.into_iter().filter_map(|m| section.find(&m)).min()
    };
    let start = at(n).with_context(|| format!("no step {n} in:\n{section}"))?;
    let end = at(n + 1).filter(|&e| e > start).unwrap_or(section.len());
    Ok(&section[start..end])
}

/// Every fenced code block of language `lang`, unindented (list items indent their blocks).
fn all_blocks(text: &str, lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String, Vec<&str>)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        match &mut open {
            None => {
                if let Some(tag) = trimmed.strip_prefix("```") {
                    open = Some((
                        line.len() - trimmed.len(),
                        tag.trim().to_string(),
                        Vec::new(),
                    ));
                }
            }
            Some((indent, tag, body)) => {
                if trimmed == "```" {
                    if tag == lang {
                        blocks.push(body.iter().map(|l| format!("{l}\n")).collect());
                    }
                    open = None;
                } else {
                    let cut = line.len() - line.trim_start().len();
                    body.push(&line[cut.min(*indent)..]);
                }
            }
        }
    }
    blocks
}

/// The one fenced block of language `lang` in `text`.
fn block(text: &str, lang: &str) -> Result<String> {
    let mut blocks = all_blocks(text, lang);
    ensure!(
        blocks.len() == 1,
        "expected one ```{lang} block in:\n{text}"
    );
    Ok(blocks.remove(0))
}

/// The inline code span of `text` that starts with `prefix`.
fn inline_code<'a>(text: &'a str, prefix: &str) -> Result<&'a str> {
    let start = text
        .find(&format!("`{prefix}"))
        .with_context(|| format!("no `{prefix}...` in:\n{text}"))?
        + 1;
    let len = text[start..].find('`').context("unclosed inline code")?;
    Ok(&text[start..start + len])
}

/// Splits shell lines into commands: joins `\` continuations and newlines inside single quotes,
/// drops comment lines.
fn shell_commands(script: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in script.lines() {
        if current.is_empty() && (line.trim().is_empty() || line.trim_start().starts_with('#')) {
            continue;
        }
        current.push_str(line.trim_start());
        current.push('\n');
        let in_quote = current.matches('\'').count() % 2 == 1;
        if !in_quote && !line.trim_end().ends_with('\\') {
            commands.push(current.trim_end().to_string());
            current.clear();
        }
    }
    commands
}

/// The names in `dir`.
fn entries(dir: &Path) -> Result<Vec<String>> {
    let mut names = fs::read_dir(dir)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}

/// What git sees under `filter-sdk/`, ignored files included (so a `node_modules/` or build output
/// written into the SDK shows up).
fn sdk_state(repo: &Path) -> Result<String> {
    let out = Command::new("git")
        .args(["status", "--porcelain", "--ignored", "--", "filter-sdk"])
        .current_dir(repo)
        .output()
        .context("running git status")?;
    ensure!(
        out.status.success(),
        "git status in {}: {}",
        repo.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
