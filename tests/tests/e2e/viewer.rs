//! The viewer page at `/` in a real browser: headless Chromium driven through chromedriver
//! (WebDriver, `fantoccini`). The page's three files carry the Content-Security-Policy; its
//! script runs under it (the table list fills, the browser log has no CSP report); a filtered
//! table subscription shows the matching changes only, coloured by op, and pauses; a NOTIFY on a
//! channel with upper case and a space shows its payload exactly; a refused filter and a refused
//! channel show the server's error code. A screenshot of the table view goes to
//! `target/test-artefacts/viewer.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`make test` installs them).

use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use walcast_tests::{unique_suffix, wait_for, PgCluster, TestDb, Walcast, WsClient, STEP};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const POLL: Duration = Duration::from_millis(50);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// chromedriver (and the Chromium it starts) in a process group of their own, with a temporary
/// directory of their own: on drop the whole group is killed and the directory removed, whether
/// the test passed or not.
struct Driver {
    child: Child,
    port: u16,
    tmp: PathBuf,
    log: PathBuf,
}

impl Driver {
    async fn start() -> Result<Driver> {
        for bin in [CHROMEDRIVER, CHROMIUM] {
            ensure!(
                Path::new(bin).is_file(),
                "{bin} is missing: the viewer test needs Debian's chromium and chromium-driver \
                 packages (`make test` installs them; or `apt-get install chromium chromium-driver`)"
            );
        }
        let mut last_err = None;
        // A port found free can be taken before chromedriver binds it: retry on a new one.
        for _ in 0..3 {
            match Self::try_start().await {
                Ok(d) => return Ok(d),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("chromedriver did not start")))
    }

    async fn try_start() -> Result<Driver> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let suffix = unique_suffix();
        let tmp = std::env::temp_dir().join(format!("walcast-viewer-{suffix}"));
        fs::create_dir_all(tmp.join("profile"))?;
        let logs = workspace_root().join("target/e2e-logs");
        fs::create_dir_all(&logs)?;
        let log = logs.join(format!("viewer-chromedriver-{suffix}.log"));
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log)?)
            .stderr(Stdio::from(fs::File::options().append(true).open(&log)?))
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot spawn {CHROMEDRIVER}"))?;
        let mut driver = Driver {
            child,
            port,
            tmp,
            log,
        };
        let http = reqwest::Client::new();
        let status_url = format!("http://127.0.0.1:{port}/status");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(exit) = driver.child.try_wait()? {
                bail!(
                    "chromedriver exited early ({exit}); log {}:\n{}",
                    driver.log.display(),
                    fs::read_to_string(&driver.log).unwrap_or_default()
                );
            }
            if let Ok(r) = http.get(&status_url).send().await {
                if let Ok(v) = r.json::<Value>().await {
                    if v["value"]["ready"] == true {
                        return Ok(driver);
                    }
                }
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not answer {status_url} within 20 s; log {}",
                driver.log.display()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn browser(&self) -> Result<Client> {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", self.tmp.join("profile").display()),
                ],
            }),
        );
        // The browser's console, read back at the end for CSP reports and script errors.
        caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url())
            .await
            .with_context(|| {
                format!(
                    "cannot start a Chromium session; chromedriver log {}",
                    self.log.display()
                )
            })
    }

    /// Browser console entries since the last call (chromedriver's `se/log`, which fantoccini
    /// does not wrap).
    async fn console(&self, client: &Client) -> Result<Vec<Value>> {
        let session = client.session_id().await?.context("no WebDriver session")?;
        let v: Value = reqwest::Client::new()
            .post(format!("{}/session/{session}/se/log", self.url()))
            .json(&json!({"type": "browser"}))
            .send()
            .await?
            .json()
            .await?;
        v["value"]
            .as_array()
            .cloned()
            .with_context(|| format!("unexpected se/log answer: {v}"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group: chromedriver and every Chromium process it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.tmp);
    }
}

/// One rendered row of `#rows`: its classes and the text of its cells.
#[derive(Debug)]
struct Row {
    classes: Vec<String>,
    cells: Vec<String>,
}

impl Row {
    fn has(&self, class: &str) -> bool {
        self.classes.iter().any(|c| c == class)
    }

    fn text(&self) -> String {
        self.cells.join(" | ")
    }

    /// The row's `new` JSON cell, parsed (`None` when it shows no row).
    fn new_row(&self) -> Option<Value> {
        serde_json::from_str(self.cells.get(4)?).ok()
    }
}

async fn js(client: &Client, script: &str, args: Vec<Value>) -> Result<Value> {
    client
        .execute(script, args)
        .await
        .with_context(|| format!("script failed: {script}"))
}

async fn rows(client: &Client) -> Result<Vec<Row>> {
    let v = js(
        client,
        "return [...document.querySelectorAll('#rows > tr')].map(tr => \
           ({classes: [...tr.classList], cells: [...tr.cells].map(td => td.textContent)}))",
        vec![],
    )
    .await?;
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(v.as_array()
        .context("rows: not an array")?
        .iter()
        .map(|r| Row {
            classes: strings(&r["classes"]),
            cells: strings(&r["cells"]),
        })
        .collect())
}

/// The text of the element with this id.
async fn text_of(client: &Client, id: &str) -> Result<String> {
    let v = js(
        client,
        "const e = document.getElementById(arguments[0]); return e ? e.textContent : null",
        vec![json!(id)],
    )
    .await?;
    v.as_str()
        .map(str::to_owned)
        .with_context(|| format!("no element #{id}"))
}

async fn value_of(client: &Client, id: &str) -> Result<String> {
    let v = js(
        client,
        "return document.getElementById(arguments[0]).value",
        vec![json!(id)],
    )
    .await?;
    Ok(v.as_str().unwrap_or_default().to_owned())
}

async fn click(client: &Client, id: &str) -> Result<()> {
    client
        .find(Locator::Id(id))
        .await?
        .click()
        .await
        .with_context(|| format!("cannot click #{id}"))
}

async fn type_into(client: &Client, id: &str, text: &str) -> Result<()> {
    let e = client.find(Locator::Id(id)).await?;
    e.clear().await?;
    e.send_keys(text)
        .await
        .with_context(|| format!("cannot type into #{id}"))
}

/// Waits until the element's text contains `needle`; returns the text.
async fn wait_text(client: &Client, id: &str, needle: &str) -> Result<String> {
    let got = wait_for(
        &format!("#{id} to contain {needle:?}"),
        STEP,
        POLL,
        || async move {
            let t = text_of(client, id).await?;
            Ok(t.contains(needle).then_some(t))
        },
    )
    .await;
    if got.is_err() {
        let status = text_of(client, "status").await.unwrap_or_default();
        let error = text_of(client, "error").await.unwrap_or_default();
        return got.with_context(|| format!("#status {status:?}, #error {error:?}"));
    }
    got
}

/// Waits until some row satisfies `pred`; returns every row at that moment.
async fn wait_row<F>(client: &Client, what: &str, pred: F) -> Result<Vec<Row>>
where
    F: Fn(&Row) -> bool,
{
    let pred = &pred;
    let got = wait_for(what, STEP, POLL, || async move {
        let rs = rows(client).await?;
        Ok(rs.iter().any(pred).then_some(rs))
    })
    .await;
    if got.is_err() {
        let shown: Vec<String> = rows(client)
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| format!("{:?} {}", r.classes, r.text()))
            .collect();
        let status = text_of(client, "status").await.unwrap_or_default();
        let error = text_of(client, "error").await.unwrap_or_default();
        return got.with_context(|| {
            format!(
                "#status {status:?}, #error {error:?}, rows shown:\n{}",
                shown.join("\n")
            )
        });
    }
    got
}

fn new_field(row: &Row, key: &str) -> Value {
    row.new_row().map(|n| n[key].clone()).unwrap_or(Value::Null)
}

/// `GET path`: the page's files come with their content type and the CSP.
async fn check_asset(server: &Walcast, path: &str, content_type: &str) -> Result<String> {
    let r = reqwest::get(format!("{}{path}", server.http_base())).await?;
    let status = r.status().as_u16();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (ct, csp) = (header("content-type"), header("content-security-policy"));
    let body = r.text().await?;
    ensure!(status == 200, "GET {path}: {status} {body}");
    ensure!(ct == content_type, "GET {path}: content-type {ct:?}");
    ensure!(csp == CSP, "GET {path}: content-security-policy {csp:?}");
    Ok(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_page_shows_changes_and_notifications_in_a_browser() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "viewer").await?;
    db.exec(
        "CREATE TABLE viewer_people (id int PRIMARY KEY, name text, age int);
         ALTER TABLE viewer_people REPLICA IDENTITY FULL;
         CREATE TABLE viewer_hidden (id int PRIMARY KEY);",
    )
    .await?;
    let server = Walcast::builder(&db)
        .env("WALCAST_NOTIFY_CHANNELS", "Viewer*")
        .env("WALCAST_TABLES", "public.viewer_people")
        .start()
        .await?;

    // The files, their types and the CSP; the page loads exactly these two assets.
    let html = check_asset(&server, "/", "text/html; charset=utf-8").await?;
    ensure!(
        html.contains(r#"src="/assets/viewer.js""#)
            && html.contains(r#"href="/assets/viewer.css""#),
        "index.html does not load /assets/viewer.js and /assets/viewer.css"
    );
    // Nothing inline (the CSP would refuse it) and nothing from elsewhere.
    ensure!(
        !html.contains("style=")
            && !html.contains("<style")
            && html.matches("<script").count() == 1,
        "index.html has an inline style or script"
    );
    for attr in [" src=\"", " href=\""] {
        for (at, _) in html.match_indices(attr) {
            let value = html[at + attr.len()..]
                .split('"')
                .next()
                .unwrap_or_default();
            ensure!(
                ["/assets/viewer.js", "/assets/viewer.css", "data:,"].contains(&value),
                "index.html refers to {value:?}"
            );
        }
    }
    check_asset(
        &server,
        "/assets/viewer.js",
        "text/javascript; charset=utf-8",
    )
    .await?;
    check_asset(&server, "/assets/viewer.css", "text/css; charset=utf-8").await?;
    let (status, tables) = server.get("/v1/tables").await?;
    let tables: Value = serde_json::from_str(&tables)?;
    ensure!(
        status == 200
            && tables["tables"]
                .as_array()
                .is_some_and(|t| t.len() == 1 && t[0]["table"] == "viewer_people"),
        "/v1/tables with tables.allow = public.viewer_people: {status} {tables}"
    );

    let driver = Driver::start().await?;
    let client = driver.browser().await?;
    let outcome = drive(&driver, &client, &server, &db).await;
    let closed = client.close().await;
    drop(driver);
    outcome?;
    closed.context("ending the WebDriver session")?;
    Ok(())
}

async fn drive(driver: &Driver, client: &Client, server: &Walcast, db: &TestDb<'_>) -> Result<()> {
    client.goto(&format!("{}/", server.http_base())).await?;

    // The script ran under the CSP: the table list came from /v1/tables.
    wait_for("the table list to fill", STEP, POLL, || async move {
        let v = js(
            client,
            "return [...document.getElementById('table').options].map(o => o.textContent)",
            vec![],
        )
        .await?;
        Ok((v == json!(["public.viewer_people"])).then_some(()))
    })
    .await?;

    // A filtered subscription: age.gt.30.
    client
        .find(Locator::Id("table"))
        .await?
        .select_by_label("public.viewer_people")
        .await?;
    type_into(client, "filter", "age.gt.30").await?;
    click(client, "subscribe").await?;
    wait_text(client, "status", "subscribed").await?;
    ensure!(
        text_of(client, "error").await?.is_empty(),
        "an error is shown after subscribing"
    );

    // The URL the page offers is the same subscription for another client.
    let url = value_of(client, "url").await?;
    let expected = format!(
        "{}/ws?query=*%3Apublic.viewer_people&filter=age.gt.30",
        server.ws_base()
    );
    ensure!(url == expected, "#url is {url:?}, expected {expected:?}");
    let path = url.strip_prefix(&server.ws_base()).context("ws base")?;
    let mut twin = match WsClient::try_open(server, path).await? {
        Ok(c) => c,
        Err((status, body)) => bail!("the page's URL {url} was refused: {status} {body}"),
    };
    twin.expect_subscribed().await?;
    // Copy URL: copied to the clipboard, or (clipboard refused) the URL's text selected.
    click(client, "copy").await?;
    wait_for(
        "#copy to say Copied or Press Ctrl+C",
        STEP,
        POLL,
        || async move {
            let t = text_of(client, "copy").await?;
            Ok((t == "Copied" || t == "Press Ctrl+C").then_some(()))
        },
    )
    .await?;

    db.exec("INSERT INTO viewer_people VALUES (1, 'Ada', 40)")
        .await?;
    db.exec("INSERT INTO viewer_people VALUES (2, 'Bob', 20)")
        .await?;
    db.exec("INSERT INTO viewer_people VALUES (3, 'Chloé', 52)")
        .await?;
    let shown = wait_row(client, "Chloé's insert", |r| {
        r.has("op-insert") && new_field(r, "name") == "Chloé"
    })
    .await?;
    ensure!(
        !shown.iter().any(|r| new_field(r, "name") == "Bob"),
        "the age-20 row is shown despite age.gt.30: {shown:?}"
    );
    let inserts: Vec<_> = shown.iter().filter(|r| r.has("op-insert")).collect();
    ensure!(
        inserts.len() == 2
            && new_field(inserts[0], "id") == 3
            && new_field(inserts[1], "id") == 1
            && inserts.iter().all(|r| r.has("row")),
        "expected Chloé then Ada (newest first): {shown:?}"
    );
    ensure!(
        inserts[1].cells[2] == "public.viewer_people" && inserts[1].cells[1] == "insert",
        "row cells: {:?}",
        inserts[1].cells
    );
    let twin_change = twin.next_change(STEP).await?;
    ensure!(
        twin_change["new"]["name"] == "Ada",
        "the URL's socket got {twin_change}"
    );
    twin.close().await;

    // Update, delete, truncate: one row each, coloured by op.
    db.exec("UPDATE viewer_people SET age = 41 WHERE id = 1")
        .await?;
    wait_row(client, "Ada's update", |r| {
        r.has("op-update") && new_field(r, "age") == 41
    })
    .await?;
    db.exec("DELETE FROM viewer_people WHERE id = 3").await?;
    wait_row(client, "Chloé's delete", |r| {
        r.has("op-delete") && r.cells.get(5).is_some_and(|old| old.contains("Chloé"))
    })
    .await?;

    // Paused: counted, not shown; shown on resume.
    click(client, "pause").await?;
    db.exec("INSERT INTO viewer_people VALUES (4, 'Dmitri', 63), (5, 'Eun-ji', 35)")
        .await?;
    wait_text(client, "pause", "(2 new)").await?;
    ensure!(
        !rows(client).await?.iter().any(|r| new_field(r, "id") == 4),
        "a row was rendered while paused"
    );
    click(client, "pause").await?;
    wait_row(client, "the rows held while paused", |r| {
        new_field(r, "id") == 5
    })
    .await?;
    db.exec("TRUNCATE viewer_people").await?;
    let shown = wait_row(client, "the truncate", |r| r.has("op-truncate")).await?;
    for op in ["op-insert", "op-update", "op-delete", "op-truncate"] {
        ensure!(shown.iter().any(|r| r.has(op)), "no {op} row: {shown:?}");
    }
    ensure!(
        !shown.iter().any(|r| new_field(r, "name") == "Bob"),
        "the age-20 row is shown"
    );

    let dir = target_dir().join("test-artefacts");
    fs::create_dir_all(&dir)?;
    let png = dir.join("viewer.png");
    fs::write(&png, client.screenshot().await?)?;
    println!("viewer screenshot: {}", png.display());

    // A channel whose name needs quoting and URL-encoding; the payload exactly.
    click(client, "mode-channel").await?;
    ensure!(text_of(client, "subscribe").await? == "Listen");
    type_into(client, "channel", "Viewer Chan").await?;
    ensure!(
        value_of(client, "url").await? == format!("{}/listen/Viewer%20Chan", server.ws_base()),
        "#url for the channel: {}",
        value_of(client, "url").await?
    );
    click(client, "subscribe").await?;
    wait_text(client, "status", "listening").await?;
    db.exec("SELECT pg_notify('Viewer Chan', 'héllo ✓')")
        .await?;
    let shown = wait_row(client, "the notification", |r| r.has("notify")).await?;
    let notify = shown
        .iter()
        .find(|r| r.has("notify"))
        .context("notify row")?;
    ensure!(
        notify.cells[3] == "héllo ✓" && notify.cells[2] == "Viewer Chan",
        "notify row: {notify:?}"
    );

    // A channel outside notify.channels: the refusal the browser hides, read by the page.
    type_into(client, "channel", "secret").await?;
    click(client, "subscribe").await?;
    wait_text(client, "error", "channel_not_allowed").await?;

    // A refused filter, then a refused column: the error frame's code; the socket is done.
    click(client, "mode-table").await?;
    type_into(client, "filter", "age.zz.1").await?;
    click(client, "subscribe").await?;
    wait_text(client, "error", "bad_operator").await?;
    wait_text(client, "status", "refused").await?;
    type_into(client, "filter", "nosuchcol.eq.1").await?;
    click(client, "subscribe").await?;
    wait_text(client, "error", "unknown_column").await?;

    // Clear empties the view.
    click(client, "clear").await?;
    ensure!(rows(client).await?.is_empty(), "rows left after Clear");

    // The console: no CSP report, no script error. (It is read: the refused socket is there.)
    let console = driver.console(client).await?;
    ensure!(
        console.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("/listen/secret"))),
        "the browser log has no entry for the refused /listen/secret: {console:?}"
    );
    let bad: Vec<&Value> = console
        .iter()
        .filter(|e| {
            let m = e["message"].as_str().unwrap_or_default();
            m.contains("Content Security Policy")
                || m.contains("Uncaught")
                || m.contains("Refused to")
        })
        .collect();
    ensure!(bad.is_empty(), "browser console: {bad:?}");
    Ok(())
}
