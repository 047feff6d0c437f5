//! The viewer page at `/` in a real browser: headless Chromium driven through chromedriver
//! (WebDriver, `fantoccini`). The page's three files carry the Content-Security-Policy; its
//! script runs under it (the table list fills, the browser log has no CSP report); a filtered
//! table subscription shows the matching changes only, coloured by op, and pauses; a NOTIFY on a
//! channel with upper case and a space shows its payload exactly; a refused filter and a refused
//! channel show the server's error code. A screenshot of the table view goes to
//! `target/test-artefacts/viewer.png`.
//!
//! Under `auth.mode = "jwt"`: without a token the table list shows the 401; a token from
//! `/#access_token=<jwt>` lists the tables, subscribes and listens, and leaves neither the address
//! bar nor the page's URL nor the DOM; a changed token is used on the next reload or subscribe (a
//! forged one is refused with the server's reason); a socket whose token expires shows 4001.
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
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use walcast_tests::{unique_suffix, wait_for, PgCluster, TestDb, Walcast, WsClient, STEP};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const POLL: Duration = Duration::from_millis(50);
const SECRET: &str = "viewer e2e secret";

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

/// One Chromium session and its chromedriver.
struct Browser {
    driver: Driver,
    client: Client,
}

impl Browser {
    async fn start() -> Result<Browser> {
        let driver = Driver::start().await?;
        let client = driver.browser().await?;
        Ok(Browser { driver, client })
    }

    /// Ends the session and stops chromedriver, then returns what the test found (its error
    /// first: a failed close matters less).
    async fn end(self, outcome: Result<()>) -> Result<()> {
        let closed = self.client.close().await;
        drop(self.driver);
        outcome?;
        closed.context("ending the WebDriver session")?;
        Ok(())
    }

    /// The console so far, after checking it holds no CSP report and no script error.
    async fn clean_console(&self) -> Result<Vec<Value>> {
        let console = self.driver.console(&self.client).await?;
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
        Ok(console)
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
    if text.is_empty() {
        return Ok(());
    }
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

/// Waits until the table select lists exactly `labels`.
async fn wait_tables(client: &Client, labels: &[&str]) -> Result<()> {
    let expected = json!(labels);
    let expected = &expected;
    let got = wait_for("the table list to fill", STEP, POLL, || async move {
        let v = js(
            client,
            "return [...document.getElementById('table').options].map(o => o.textContent)",
            vec![],
        )
        .await?;
        Ok((v == *expected).then_some(()))
    })
    .await;
    if got.is_err() {
        let error = text_of(client, "error").await.unwrap_or_default();
        return got.with_context(|| format!("#error {error:?}"));
    }
    got
}

/// Table mode, `table` chosen, `filter` typed, Subscribe: waits for `subscribed`, no error shown.
async fn subscribe_table(client: &Client, table: &str, filter: &str) -> Result<()> {
    click(client, "mode-table").await?;
    client
        .find(Locator::Id("table"))
        .await?
        .select_by_label(table)
        .await?;
    type_into(client, "filter", filter).await?;
    click(client, "subscribe").await?;
    wait_text(client, "status", "subscribed").await?;
    ensure!(
        text_of(client, "error").await?.is_empty(),
        "an error is shown after subscribing"
    );
    Ok(())
}

/// Channel mode, `channel` typed, Listen: waits for `listening`.
async fn listen(client: &Client, channel: &str) -> Result<()> {
    click(client, "mode-channel").await?;
    ensure!(text_of(client, "subscribe").await? == "Listen");
    type_into(client, "channel", channel).await?;
    click(client, "subscribe").await?;
    wait_text(client, "status", "listening").await?;
    Ok(())
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

    let browser = Browser::start().await?;
    let outcome = drive(&browser, &server, &db).await;
    browser.end(outcome).await
}

async fn drive(browser: &Browser, server: &Walcast, db: &TestDb<'_>) -> Result<()> {
    let client = &browser.client;
    client.goto(&format!("{}/", server.http_base())).await?;

    // The script ran under the CSP: the table list came from /v1/tables.
    wait_tables(client, &["public.viewer_people"]).await?;

    // A filtered subscription: age.gt.30.
    subscribe_table(client, "public.viewer_people", "age.gt.30").await?;

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
    listen(client, "Viewer Chan").await?;
    ensure!(
        value_of(client, "url").await? == format!("{}/listen/Viewer%20Chan", server.ws_base()),
        "#url for the channel: {}",
        value_of(client, "url").await?
    );
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
    let console = browser.clean_console().await?;
    ensure!(
        console.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("/listen/secret"))),
        "the browser log has no entry for the refused /listen/secret: {console:?}"
    );
    Ok(())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An HS256 token for subject `viewer`, valid for `seconds`, signed with `secret`.
fn token(secret: &str, seconds: i64) -> Result<String> {
    Ok(encode(
        &Header::default(),
        &json!({"sub": "viewer", "exp": now() + seconds}),
        &EncodingKey::from_secret(secret.as_bytes())?,
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_page_sends_a_token_it_never_shows() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "viewer_jwt").await?;
    db.exec("CREATE TABLE viewer_members (id int PRIMARY KEY, name text, age int);")
        .await?;
    let server = Walcast::builder(&db)
        .env("WALCAST_AUTH_MODE", "jwt")
        .env("WALCAST_JWT_SECRET", SECRET)
        .env("WALCAST_NOTIFY_CHANNELS", "Viewer*")
        .env("WALCAST_TABLES", "public.viewer_members")
        .start()
        .await?;
    // The page needs no token; the data does.
    check_asset(&server, "/", "text/html; charset=utf-8").await?;
    let (status, body) = server.get("/v1/tables").await?;
    ensure!(
        status == 401 && body.contains("unauthorized"),
        "/v1/tables without a token: {status} {body}"
    );

    let browser = Browser::start().await?;
    let outcome = drive_with_token(&browser, &server, &db).await;
    browser.end(outcome).await
}

async fn drive_with_token(browser: &Browser, server: &Walcast, db: &TestDb<'_>) -> Result<()> {
    let client = &browser.client;
    let jwt = token(SECRET, 600)?;
    let jwt = jwt.as_str();

    // No token: the table list's 401 and what to do about it.
    client.goto(&format!("{}/", server.http_base())).await?;
    let error = wait_text(client, "error", "unauthorized").await?;
    ensure!(
        error.contains("a token is required") && error.contains("paste a JWT in the Token field"),
        "#error without a token: {error:?}"
    );
    ensure!(
        js(
            client,
            "return document.getElementById('table').options[0].textContent",
            vec![]
        )
        .await?
        .as_str()
        .is_some_and(|t| t.contains("unavailable")),
        "the table list does not say it is unavailable"
    );

    // The token in the fragment of a fresh load: the list fills, the address bar drops it.
    client.goto("about:blank").await?;
    client
        .goto(&format!("{}/#access_token={jwt}", server.http_base()))
        .await?;
    wait_tables(client, &["public.viewer_members"]).await?;
    ensure!(
        text_of(client, "error").await?.is_empty(),
        "an error is shown with a valid token: {}",
        text_of(client, "error").await?
    );
    let address = client.current_url().await?;
    ensure!(
        !address.as_str().contains(jwt)
            && !address.as_str().contains("access_token")
            && address.fragment().is_none()
            && address.path() == "/",
        "the address bar still shows the token: {address}"
    );
    ensure!(
        value_of(client, "token").await? == jwt,
        "#token does not hold the fragment's token"
    );
    let field_type = js(
        client,
        "return document.getElementById('token').type",
        vec![],
    )
    .await?;
    ensure!(field_type == "password", "#token is a {field_type} field");

    // A filtered subscription with the token; the page's URL has none.
    subscribe_table(client, "public.viewer_members", "age.gt.30").await?;
    let url = value_of(client, "url").await?;
    let expected = format!(
        "{}/ws?query=*%3Apublic.viewer_members&filter=age.gt.30",
        server.ws_base()
    );
    ensure!(url == expected, "#url is {url:?}, expected {expected:?}");
    db.exec("INSERT INTO viewer_members VALUES (1, 'Bob', 20), (2, 'Ada', 40)")
        .await?;
    let shown = wait_row(client, "Ada's insert", |r| {
        r.has("op-insert") && new_field(r, "name") == "Ada"
    })
    .await?;
    ensure!(
        !shown.iter().any(|r| new_field(r, "name") == "Bob"),
        "the age-20 row is shown despite age.gt.30: {shown:?}"
    );

    // A channel with the token.
    listen(client, "Viewer jwt").await?;
    ensure!(
        value_of(client, "url").await? == format!("{}/listen/Viewer%20jwt", server.ws_base()),
        "#url for the channel: {}",
        value_of(client, "url").await?
    );
    db.exec("SELECT pg_notify('Viewer jwt', 'with a token')")
        .await?;
    let shown = wait_row(client, "the notification", |r| r.has("notify")).await?;
    ensure!(
        shown
            .iter()
            .any(|r| r.has("notify") && r.cells[3] == "with a token"),
        "notify rows: {shown:?}"
    );

    // The token is in the password field's value and nowhere else in the document.
    let leaks = js(
        client,
        "const t = arguments[0]; \
         const inputs = [...document.querySelectorAll('input')] \
           .filter(i => i.id !== 'token' && i.value.includes(t)).map(i => i.id); \
         return {html: document.documentElement.outerHTML.includes(t), inputs, \
                 title: document.title.includes(t)}",
        vec![json!(jwt)],
    )
    .await?;
    ensure!(
        leaks == json!({"html": false, "inputs": [], "title": false}),
        "the token is in the DOM: {leaks}"
    );

    // A changed token is used by the next listen, reload and subscribe: a forged one is refused
    // with the server's reason (which it gives only when the token was sent).
    let forged = token("not the server's secret", 600)?;
    type_into(client, "token", &forged).await?;
    click(client, "subscribe").await?; // still the channel
    wait_text(client, "error", "Listen again").await?;
    let error = wait_text(client, "error", "signature does not verify").await?;
    let status = text_of(client, "status").await?;
    ensure!(
        status == "refused (HTTP 401)",
        "#status {status:?}, #error {error:?} for the refused channel"
    );
    click(client, "mode-table").await?;
    click(client, "reload-tables").await?;
    wait_text(client, "error", "reload the tables").await?;
    let error = wait_text(client, "error", "signature does not verify").await?;
    ensure!(
        error.contains("unauthorized") && error.contains("The token was refused"),
        "#error after reloading with a forged token: {error:?}"
    );
    type_into(client, "filter", "").await?;
    click(client, "subscribe").await?;
    wait_text(client, "error", "Subscribe again").await?;
    let error = wait_text(client, "error", "signature does not verify").await?;
    let status = text_of(client, "status").await?;
    ensure!(
        status == "refused (HTTP 401)",
        "#status {status:?}, #error {error:?} for the refused table socket"
    );

    // The good token again: the list reloads and the refusal's error goes.
    type_into(client, "token", jwt).await?;
    click(client, "reload-tables").await?;
    wait_for("the refusal's error to go", STEP, POLL, || async move {
        Ok(text_of(client, "error").await?.is_empty().then_some(()))
    })
    .await?;
    wait_tables(client, &["public.viewer_members"]).await?;

    // A token that expires while its socket is open: 4001, shown as such.
    let short = token(SECRET, 4)?;
    type_into(client, "token", &short).await?;
    subscribe_table(client, "public.viewer_members", "").await?;
    let status = wait_text(client, "status", "token expired").await?;
    ensure!(
        status.contains("4001"),
        "#status after the expiry: {status:?}"
    );
    let error = text_of(client, "error").await?;
    ensure!(
        error.contains("token expired") && error.contains("Paste a fresh token"),
        "#error after the expiry: {error:?}"
    );

    // A new fragment over the open page (no new load): taken, used, and gone from the address bar.
    client
        .goto(&format!("{}/#access_token={jwt}", server.http_base()))
        .await?;
    wait_for("the expiry's error to go", STEP, POLL, || async move {
        Ok(text_of(client, "error").await?.is_empty().then_some(()))
    })
    .await?;
    ensure!(
        value_of(client, "token").await? == jwt,
        "#token after the new fragment"
    );
    let address = client.current_url().await?;
    ensure!(
        !address.as_str().contains("access_token") && address.fragment().is_none(),
        "the address bar still shows the new fragment's token: {address}"
    );

    let console = browser.clean_console().await?;
    for tok in [jwt, forged.as_str(), short.as_str()] {
        ensure!(
            !console
                .iter()
                .any(|e| e["message"].as_str().is_some_and(|m| m.contains(tok))),
            "a token is in the browser log: {console:?}"
        );
    }
    Ok(())
}
