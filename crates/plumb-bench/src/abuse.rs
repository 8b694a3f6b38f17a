//! Resource ceilings under abuse (a benchmark, not a test): `plumb serve` over a data directory of
//! N pageviews, first idle, then for a bounded time hit at once by the heaviest queries a shared
//! link may send, hundreds of stalled request bodies and a hundred open event streams. Prints the
//! server's resident memory (peak and idle) and `/api/health` latency in both phases.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Resident memory of a process, in MiB, from `/proc/<pid>/status`.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// `/api/health` latencies (ms) and the peak RSS while `busy` is set, sampled every 50 ms.
async fn watch(port: u16, pid: u32, for_how_long: Duration) -> (Vec<f64>, f64) {
    let (mut lat, mut peak) = (Vec::new(), 0f64);
    let until = Instant::now() + for_how_long;
    while Instant::now() < until {
        peak = peak.max(rss_mib(pid));
        let t = Instant::now();
        let ok = tokio::time::timeout(Duration::from_secs(5), get(port, "/api/health")).await;
        lat.push(if matches!(ok, Ok(200)) { t.elapsed().as_secs_f64() * 1000.0 } else { f64::INFINITY });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lat.sort_by(f64::total_cmp);
    (lat, peak)
}

/// Sends one request on a new connection (closed after the answer); the answer's status, 0 if none.
async fn status_of(port: u16, request: String) -> u16 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else { return 0 };
    if s.write_all(request.as_bytes()).await.is_err() {
        return 0;
    }
    let mut head = [0u8; 12];
    match s.read_exact(&mut head).await {
        Ok(_) => String::from_utf8_lossy(&head[9..12]).parse().unwrap_or(0),
        Err(_) => 0,
    }
}

async fn get(port: u16, path: &str) -> u16 {
    status_of(port, format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")).await
}

async fn post(port: u16, path: &str, headers: &str, body: &str) -> u16 {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    status_of(port, request).await
}

fn print(phase: &str, lat: &[f64], rss: f64) {
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    println!(
        "{phase:<44} RSS peak {rss:>7.1} MiB   /api/health p50 {:>6.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({} probes)",
        p(0.5),
        p(0.99),
        p(1.0),
        lat.len()
    );
}

pub fn run(plumb: &Path, rows: usize, seconds: u64) {
    let dir = std::env::temp_dir().join(format!("plumb-bench-abuse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    crate::queries::dashboard_data(&dir, rows);
    // Twenty shared links: streams are capped at five per link and client network.
    let slugs = share_links(&dir, 20);
    let slug = slugs[0].clone();
    let (server, port) = crate::start(plumb, &dir, "serve", &[]);
    let pid = server.0.id();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // Warm up: the dashboard's own queries once.
        for _ in 0..3 {
            post(port, "/api/v2/query", &format!("X-Plumb-Share: {slug}\r\n"), &heavy(0)).await;
        }
        let (lat, rss) = watch(port, pid, Duration::from_secs(5)).await;
        print("idle", &lat, rss);

        let stop = Arc::new(AtomicBool::new(false));
        let answered: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
        let mut tasks = Vec::new();
        // The heaviest queries a shared link may ask, back to back from 8 clients.
        for client in 0..8 {
            let (stop, answered, slug) = (stop.clone(), answered.clone(), slug.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = client;
                while !stop.load(Ordering::Relaxed) {
                    let status = post(port, "/api/v2/query", &format!("X-Plumb-Share: {slug}\r\n"), &heavy(i)).await;
                    let slot = match status {
                        200 => 0,
                        400 => 1,
                        429 | 503 => 2,
                        _ => 3,
                    };
                    answered[slot].fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            }));
        }
        // 500 request bodies that never arrive (sign-in forms and queries), held open.
        let mut stalled = Vec::new();
        for i in 0..500 {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await {
                let path = if i % 2 == 0 { "/login" } else { "/api/v2/query" };
                let head = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 60000\r\n\r\n{{");
                let _ = s.write_all(head.as_bytes()).await;
                stalled.push(s);
            }
        }
        // 100 event streams, read as they come.
        let streams = Arc::new(AtomicU64::new(0));
        for i in 0..100 {
            let (stop, slug, streams) = (stop.clone(), slugs[i % slugs.len()].clone(), streams.clone());
            tasks.push(tokio::spawn(async move {
                let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else { return };
                let req = format!(
                    "GET /api/v1/stats/realtime/stream?site_id=bench.test&share={slug}&n={i} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                );
                let _ = s.write_all(req.as_bytes()).await;
                let mut buf = [0u8; 1024];
                let mut first = true;
                while !stop.load(Ordering::Relaxed) {
                    match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => return,
                        Ok(Ok(n)) if first => {
                            first = false;
                            if buf[..n].starts_with(b"HTTP/1.1 200") {
                                streams.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {}
                    }
                }
            }));
        }
        let (lat, rss) = watch(port, pid, Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        print(&format!("under abuse ({seconds} s)"), &lat, rss);
        let [ok, refused, busy, other] = &*answered;
        println!(
            "  heavy queries: {} answered, {} refused as too large, {} told to wait (429/503), {} other; \
             {} of 100 event streams opened; {} stalled bodies held",
            ok.load(Ordering::Relaxed),
            refused.load(Ordering::Relaxed),
            busy.load(Ordering::Relaxed),
            other.load(Ordering::Relaxed),
            streams.load(Ordering::Relaxed),
            stalled.len()
        );
        drop(stalled);
        for t in tasks {
            let _ = t.await;
        }
        let (lat, rss) = watch(port, pid, Duration::from_secs(3)).await;
        print("after", &lat, rss);
    });
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A v2 query from the heaviest kinds a caller may send: every page by day, every city by hour
/// over a month, regular expressions over every row, the longest range by month.
fn heavy(i: u64) -> String {
    let bodies = [
        r#"{"site_id":"bench.test","metrics":["visitors","visits","pageviews","bounce_rate","time_on_page"],"date_range":"all","dimensions":["event:page","time:day"]}"#,
        r#"{"site_id":"bench.test","metrics":["visitors","pageviews"],"date_range":"30d","dimensions":["visit:city","time:hour"]}"#,
        r#"{"site_id":"bench.test","metrics":["visitors","visits","bounce_rate","visit_duration"],"date_range":"all","dimensions":["event:page"],"filters":[["matches","event:page",["^/(docs|blog)/.*[0-9]+$"]],["contains","visit:source",["e"],{"case_sensitive":false}]]}"#,
        r#"{"site_id":"bench.test","metrics":["visitors","visits","pageviews"],"date_range":["1970-01-01","2199-12-31"],"dimensions":["time:month","visit:browser","visit:os"]}"#,
        r#"{"site_id":"bench.test","metrics":["visitors"],"date_range":["1970-01-01","2199-12-31"],"dimensions":["time:hour"]}"#,
    ];
    bodies[i as usize % bodies.len()].to_owned()
}

/// Public shared links of the site, made before the server starts; their slugs.
fn share_links(dir: &Path, n: usize) -> Vec<String> {
    use plumb_meta::Accounts;
    let meta = plumb_meta::SqliteMeta::open(&dir.join("meta.db")).expect("open metadata");
    (0..n).map(|i| meta.create_shared_link(1, &format!("abuse {i}"), None, 0).expect("a shared link").slug).collect()
}
