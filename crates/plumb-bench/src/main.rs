//! Collector benchmark (not a test). Drives a do-nothing HTTP server, `plumb serve` (every role in
//! one process) and `plumb collect` (the collector alone) with the same keep-alive load on
//! loopback for a bounded time, each as a separate process, and prints requests/s, latency
//! percentiles and the server's CPU time per request side by side. After each Plumb run it times
//! the drain of what was accepted (for `plumb collect`, by a `plumb work` started after the load)
//! and how long an event takes from its `202` to being visible in the Stats API. Last, what a
//! flood costs: the same load against a per-address limit that turns nearly all of it away with
//! `429`.
//!
//! Usage: cargo build --release --workspace && target/release/plumb-bench [--seconds N] [--connections N]
//!        target/release/plumb-bench --query-rows N [--clickhouse]   (query benchmark, see `queries.rs`)
//!        target/release/plumb-bench --dashboard-data DIR --rows N   (a data directory to serve)
//!        target/release/plumb-bench --abuse [--rows N] [--seconds N]   (resource ceilings, see `abuse.rs`)
//!        target/release/plumb-bench --nats [--seconds N] [--clickhouse]   (collectors on NATS, see `distributed.rs`)
//!        target/release/plumb-bench --import-rows N [--log-bytes N]   (imports, see `imports.rs`)

mod abuse;
mod distributed;
mod imports;
mod queries;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DOMAIN: &str = "bench.test";
/// A site of its own for the events that time visibility under load, so that their count is
/// read alone.
const PROBE_DOMAIN: &str = "probe.test";

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--null-server") {
        return null_server(args[2].parse().expect("port"));
    }
    if let Some(i) = args.iter().position(|a| a == "--dashboard-data") {
        let dir = std::path::PathBuf::from(args.get(i + 1).expect("--dashboard-data DIR"));
        return queries::dashboard_data(&dir, arg("--rows", 10_000_000) as usize);
    }
    if args.iter().any(|a| a == "--query-rows") {
        return queries::run(arg("--query-rows", 1_000_000) as usize, args.iter().any(|a| a == "--clickhouse"));
    }
    let plumb = std::env::current_exe().unwrap().with_file_name("plumb");
    assert!(plumb.exists(), "{} not found: run `cargo build --release --workspace` first", plumb.display());
    if args.iter().any(|a| a == "--nats") {
        return distributed::run(
            &plumb,
            arg("--seconds", 30).min(120),
            arg("--connections", 64).clamp(1, 1024) as usize,
            args.iter().any(|a| a == "--clickhouse"),
        );
    }
    if args.iter().any(|a| a == "--import-rows") {
        return imports::run(&plumb, arg("--import-rows", 10_000_000) as usize, arg("--log-bytes", 1_000_000_000));
    }
    if args.iter().any(|a| a == "--abuse") {
        return abuse::run(&plumb, arg("--rows", 2_000_000) as usize, arg("--seconds", 30).min(120));
    }
    let seconds = arg("--seconds", 10).min(120);
    let connections = arg("--connections", 64).clamp(1, 1024) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();

    // 1. The do-nothing server: same HTTP stack (axum on tokio), answers 202 without reading.
    let base = do_nothing(&rt, seconds, connections);

    // 2. Plumb with every role in one process, on a fresh data directory.
    let (dir, key) = fresh_data_dir(&plumb, "serve");
    let (server, port) = start(&plumb, &dir, "serve", &[&LIFTED[..], &POLLING[..]].concat());
    let probe = rt.spawn(visibility_under_load(port, key.clone(), seconds));
    let all_in_one = rt.block_on(load(port, server.0.id(), seconds, connections, 202));
    rt.block_on(probe).unwrap();
    rt.block_on(drain(port, &key, all_in_one.ok as i64, "the pipeline"));
    rt.block_on(visibility(port, port, &key, all_in_one.ok as i64 + 1));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);

    // 3. The collector alone (`plumb collect`); then `plumb work` works off what it queued.
    let (dir, key) = fresh_data_dir(&plumb, "collect");
    let (collector, collect_port) = start(&plumb, &dir, "collect", &LIFTED);
    let alone = rt.block_on(load(collect_port, collector.0.id(), seconds, connections, 202));
    let (worker, work_port) = start(&plumb, &dir, "work", &POLLING);
    rt.block_on(drain(work_port, &key, alone.ok as i64, "plumb work, started after the load,"));
    rt.block_on(visibility(collect_port, work_port, &key, alone.ok as i64 + 1));
    drop((collector, worker));
    let _ = std::fs::remove_dir_all(&dir);

    println!(
        "collector benchmark: {seconds} s per server, {connections} keep-alive connections, loopback, 2 cores shared with the load generator"
    );
    LoadResult::header();
    base.print("do-nothing axum");
    all_in_one.print("plumb serve /api/event (durable)");
    alone.print("plumb collect /api/event (durable)");
    for (name, r) in [("plumb serve", &all_in_one), ("plumb collect", &alone)] {
        println!("{name} / do-nothing: {:.0}%", 100.0 * r.rate() / base.rate());
    }

    // 4. A flood: Plumb with a per-address limit of one event a second, so nearly every request
    // is answered 429 (which closes its connection: a flood pays a connection per request).
    let (dir, _) = fresh_data_dir(&plumb, "flood");
    let (flooded, flood_port) = start(&plumb, &dir, "collect", &["--ip-rate-limit", "1"]);
    let flood = rt.block_on(load(flood_port, flooded.0.id(), seconds.min(5), connections, 429));
    drop(flooded);
    let _ = std::fs::remove_dir_all(&dir);
    println!("then a flood of {} s against a per-address limit of 1 event/s:", seconds.min(5));
    flood.print("plumb collect flooded (429)");
}

/// The load against a do-nothing server: the same HTTP stack (axum on tokio), answering `202`
/// without reading.
fn do_nothing(rt: &tokio::runtime::Runtime, seconds: u64, connections: usize) -> LoadResult {
    let port = free_port();
    let null = Proc(
        Command::new(std::env::current_exe().unwrap()).args(["--null-server", &port.to_string()]).spawn().unwrap(),
    );
    wait_listening(port);
    rt.block_on(load(port, null.0.id(), seconds, connections, 202))
}

/// Every connection comes from loopback (one address) and is one visitor sending as fast as it
/// can: the per-address and per-visitor limits are lifted, as are the others.
const LIFTED: [&str; 8] = [
    "--ip-rate-limit",
    "10000000",
    "--global-rate-limit",
    "10000000",
    "--site-rate-limit",
    "10000000",
    "--visitor-rate-limit",
    "100000000",
];

/// The benchmark polls the Stats API every few milliseconds while it waits for events.
const POLLING: [&str; 2] = ["--key-rate-limit", "10000000"];

/// A new data directory with the benchmark's site and a key; returns both.
fn fresh_data_dir(plumb: &Path, name: &str) -> (PathBuf, String) {
    fresh_data_dir_with(plumb, name, &[])
}

/// [`fresh_data_dir`], the site and key made with `global` flags (`--meta …`).
fn fresh_data_dir_with(plumb: &Path, name: &str, global: &[&str]) -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("plumb-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    run(plumb, &dir, &[global, &["site", "add", DOMAIN]].concat());
    run(plumb, &dir, &[global, &["site", "add", PROBE_DOMAIN]].concat());
    let key = run(plumb, &dir, &[global, &["key", "create", "--name", "bench"]].concat());
    (dir, key.lines().last().unwrap().trim().to_owned())
}

/// `plumb <role>` on a free port, listening when this returns.
fn start(plumb: &Path, dir: &Path, role: &str, args: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let child = Command::new(plumb)
        .arg("--data-dir")
        .arg(dir)
        .args([role, "--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .env("PLUMB_LOG", "warn")
        .spawn()
        .unwrap();
    let proc = Proc(child);
    wait_listening(port);
    (proc, port)
}

/// Waits until the Stats API on `port` counts `accepted` pageviews; prints how long it took.
async fn drain(port: u16, key: &str, accepted: i64, who: &str) {
    let start = Instant::now();
    while pageviews(port, key).await < accepted {
        assert!(start.elapsed() < Duration::from_secs(600), "{who} did not catch up within 10 minutes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("{who} drained the {accepted} accepted events {secs:.2} s after the load stopped");
}

/// 202 → visible while the load runs: every 250 ms for `seconds`, a pageview of the probe site,
/// polled for every 5 ms in the Stats API; prints the percentiles.
async fn visibility_under_load(port: u16, key: String, seconds: u64) {
    let mut lat = Vec::new();
    let start = Instant::now();
    for i in 0.. {
        if start.elapsed() >= Duration::from_secs(seconds) {
            break;
        }
        assert_eq!(post(port, &request_for(PROBE_DOMAIN, "/", 9998)).await, 202);
        let acked = Instant::now();
        while pageviews_of(port, &key, PROBE_DOMAIN).await <= i {
            assert!(acked.elapsed() < Duration::from_secs(60), "a probe event was not visible within a minute");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        lat.push(acked.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    print_latencies("202 → visible in the Stats API under the load", &mut lat);
}

fn print_latencies(what: &str, lat: &mut [f64]) {
    lat.sort_by(f64::total_cmp);
    println!(
        "{what}, over {} events: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        lat.len(),
        lat[lat.len() / 2],
        lat[lat.len() * 95 / 100],
        lat[lat.len() - 1]
    );
}

/// 202 → visible: one event at a time to `collect_port`, polling the Stats API on `query_port`
/// every 5 ms until it counts `count`, then one more, and so on.
async fn visibility(collect_port: u16, query_port: u16, key: &str, mut count: i64) {
    let mut lat = Vec::new();
    for i in 0..40 {
        let status = post_event(collect_port, i).await;
        assert_eq!(status, 202);
        let acked = Instant::now();
        while pageviews(query_port, key).await < count {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        lat.push(acked.elapsed().as_secs_f64() * 1000.0);
        count += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    print_latencies("202 → visible in the Stats API", &mut lat);
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(plumb: &Path, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(plumb).arg("--data-dir").arg(dir).args(args).stderr(Stdio::inherit()).output().unwrap();
    assert!(out.status.success(), "plumb {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server on port {port} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn null_server(port: u16) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let app = axum::Router::new().route(
            "/api/event",
            axum::routing::post(|| async { (axum::http::StatusCode::ACCEPTED, axum::Json(serde_json::json!({}))) }),
        );
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await.unwrap();
        axum::serve(listener, app).await.unwrap();
    });
}

struct LoadResult {
    /// Answers with the expected status.
    ok: u64,
    /// Answers with any other status.
    errors: u64,
    /// Connections opened again after the server closed one.
    reconnects: u64,
    elapsed: Duration,
    /// Sorted latencies in microseconds.
    latencies: Vec<u32>,
    /// CPU time the server process used during the load (user + system).
    cpu_secs: f64,
}

/// User + system CPU seconds a process has used so far, from `/proc/<pid>/stat`.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15; the kernel counts them in USER_HZ, 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

impl LoadResult {
    fn header() {
        println!(
            "{:<34} {:>12} {:>10} {:>10} {:>14} {:>10} {:>11}",
            "server", "requests/s", "p50 ms", "p99 ms", "server CPU µs", "errors", "reconnects"
        );
    }

    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self, name: &str) {
        println!(
            "{name:<34} {:>12.0} {:>10.2} {:>10.2} {:>14.1} {:>10} {:>11}",
            self.rate(),
            self.percentile(0.50),
            self.percentile(0.99),
            self.cpu_secs * 1e6 / self.ok.max(1) as f64,
            self.errors,
            self.reconnects
        );
    }

    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        self.latencies[((self.latencies.len() - 1) as f64 * p) as usize] as f64 / 1000.0
    }
}

fn request(n: u64, conn: usize) -> Vec<u8> {
    request_for(DOMAIN, &format!("/docs/page-{}", n % 200), conn)
}

/// A pageview of `path` on `domain` from connection `conn`'s visitor.
fn request_for(domain: &str, path: &str, conn: usize) -> Vec<u8> {
    let body = format!(
        "{{\"n\":\"pageview\",\"u\":\"https://{domain}{path}\",\"d\":\"{domain}\",\"r\":\"https://www.google.com/\"}}"
    );
    format!(
        "POST /api/event HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Bench/{conn}\r\nAccept-Language: en-GB,en;q=0.9\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One response: its status, its body, and whether the server closes the connection after it.
struct Answer {
    status: u16,
    body: Vec<u8>,
    close: bool,
}

/// Reads one HTTP/1.1 response with a Content-Length body from a keep-alive stream, leaving any
/// bytes of the next response in `buf`.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Answer> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                let close = head.lines().any(|l| l.starts_with("connection:") && l.contains("close"));
                buf.drain(..end + 4 + len);
                return Ok(Answer { status, body, close });
            }
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Drives `connections` clients at full speed for `seconds`; answers with status `expect` count as
/// served. A connection the server closes is opened again.
async fn load(port: u16, pid: u32, seconds: u64, connections: usize, expect: u16) -> LoadResult {
    load_spread(&[(port, pid)], seconds, connections, expect).await
}

/// [`load`] over several servers, given as (port, pid): the connections are dealt out in turn,
/// and the servers' CPU time is summed.
async fn load_spread(servers: &[(u16, u32)], seconds: u64, connections: usize, expect: u16) -> LoadResult {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for conn in 0..connections {
        let stop = stop.clone();
        let port = servers[conn % servers.len()].0;
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut reconnects, mut lat) = (0u64, 0u64, 0u64, Vec::new());
            let mut stream = connect(port).await;
            let mut buf = Vec::new();
            let mut n = conn as u64 * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let t = Instant::now();
                let answer = match stream.write_all(&request(n, conn)).await {
                    Ok(()) => read_response(&mut stream, &mut buf).await,
                    Err(e) => Err(e),
                };
                match answer {
                    Ok(a) => {
                        if a.status == expect {
                            ok += 1;
                            lat.push(t.elapsed().as_micros() as u32);
                        } else {
                            errors += 1;
                        }
                        if a.close {
                            stream = connect(port).await;
                            buf.clear();
                            reconnects += 1;
                        }
                    }
                    Err(_) => {
                        errors += 1;
                        stream = connect(port).await;
                        buf.clear();
                        reconnects += 1;
                    }
                }
            }
            (ok, errors, reconnects, lat)
        }));
    }
    let cpu_all = || servers.iter().map(|(_, pid)| cpu_secs(*pid)).sum::<f64>();
    let (start, cpu_before) = (Instant::now(), cpu_all());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let cpu = cpu_all() - cpu_before;
    let elapsed = start.elapsed();
    let mut r = LoadResult { ok: 0, errors: 0, reconnects: 0, elapsed, latencies: Vec::new(), cpu_secs: cpu };
    for t in tasks {
        let (ok, errors, reconnects, lat) = t.await.unwrap();
        r.ok += ok;
        r.errors += errors;
        r.reconnects += reconnects;
        r.latencies.extend(lat);
    }
    r.latencies.sort_unstable();
    r
}

async fn post_event(port: u16, i: u64) -> u16 {
    post(port, &request(i, 9999)).await
}

async fn post(port: u16, request: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(request).await.unwrap();
    read_response(&mut s, &mut Vec::new()).await.unwrap().status
}

async fn pageviews(port: u16, key: &str) -> i64 {
    pageviews_of(port, key, DOMAIN).await
}

/// Today's pageviews of `domain`.
async fn pageviews_of(port: u16, key: &str, domain: &str) -> i64 {
    let body = format!("{{\"site_id\":\"{domain}\",\"metrics\":[\"pageviews\"],\"date_range\":\"day\"}}");
    let req = format!(
        "POST /api/v2/query HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let Answer { status, body, .. } = read_response(&mut s, &mut Vec::new()).await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["results"][0]["metrics"][0].as_i64().unwrap()
}
