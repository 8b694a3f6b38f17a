//! Web server access logs (nginx's and Apache's combined format, gzip or plain) as a site's
//! history from before its snippet. Each request for a page (GET, answered 2xx or 304, a path
//! with no asset's extension) is judged and counted as the collector and the pipeline count a live
//! hit: bots (by User-Agent) and referrer spam are left out, visitors are signed from site, IP,
//! User-Agent and day under a salt made for this run and forgotten with it, and the sessionizer
//! turns hits into rows, summed here per day and breakdown. No address, User-Agent or signature
//! is written anywhere.

use anyhow::{Context, Result, anyhow};
use chrono_tz::Tz;
use plumb_collector::geo::Geo;
use plumb_collector::spam::SpamList;
use plumb_collector::useragent::UserAgents;
use plumb_core::schema::{ATTRS, Level};
use plumb_core::{EventKind, QueuedEvent, Row};
use plumb_import::{DaySums, Measures, Report};
use plumb_pipeline::Sessionizer;
use plumb_query::imported::{Dim, ImportedRow};
use std::io::{BufRead, BufReader, Read};
use std::net::IpAddr;
use std::path::Path;

/// Extensions of files that are no page.
const ASSETS: &[&str] = &[
    "css", "js", "mjs", "map", "png", "jpg", "jpeg", "gif", "svg", "ico", "webp", "avif", "bmp", "woff", "woff2",
    "ttf", "otf", "eot", "mp4", "webm", "mp3", "ogg", "wav", "pdf", "zip", "gz", "tar", "txt", "xml", "json", "rss",
    "atom", "csv", "wasm",
];

/// The longest log line read (a request line and a User-Agent are far shorter).
const MAX_LINE: usize = 64 * 1024;

/// Malformed lines named in the report (the rest are counted).
const NAMED_LINES: usize = 10;

/// A request as the combined format logs it.
#[derive(Debug, PartialEq)]
struct Request<'a> {
    ip: &'a str,
    ts_ms: i64,
    method: &'a str,
    target: &'a str,
    status: u16,
    referrer: &'a str,
    user_agent: &'a str,
}

/// A quoted field (`\"` and `\\` escaped, as Apache writes them; nginx writes `\x22`), and what
/// follows it.
fn quoted(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start().strip_prefix('"')?;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some((&s[..i], &s[i + 1..])),
            _ => escaped = false,
        }
    }
    None
}

/// `IP IDENT USER [TIME] "REQUEST" STATUS BYTES "REFERER" "USER-AGENT"`.
fn parse(line: &str) -> Option<Request<'_>> {
    let (ip, rest) = line.split_once(' ')?;
    let open = rest.find('[')?;
    let close = open + rest[open..].find(']')?;
    let time = chrono::DateTime::parse_from_str(&rest[open + 1..close], "%d/%b/%Y:%H:%M:%S %z").ok()?;
    let (request, rest) = quoted(&rest[close + 1..])?;
    let mut parts = rest.split_whitespace();
    let status: u16 = parts.next()?.parse().ok()?;
    let _bytes = parts.next()?;
    let after_bytes = rest.trim_start().splitn(3, char::is_whitespace).nth(2)?;
    let (referrer, rest) = quoted(after_bytes)?;
    let (user_agent, _) = quoted(rest)?;
    let mut request = request.split(' ');
    let (method, target) = (request.next()?, request.next()?);
    Some(Request { ip, ts_ms: time.timestamp_millis(), method, target, status, referrer, user_agent })
}

/// Whether the request's path is a page's: no asset's extension.
fn is_page(target: &str) -> bool {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let last = path.rsplit('/').next().unwrap_or_default();
    match last.rsplit_once('.') {
        Some((_, ext)) => !ASSETS.contains(&ext.to_ascii_lowercase().as_str()),
        None => true,
    }
}

/// Opens a log, gzip-compressed or not (told by its first bytes).
fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut magic = [0u8; 2];
    let gz = file.read(&mut magic).map(|n| n == 2 && magic == [0x1f, 0x8b]).unwrap_or(false);
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(if gz {
        Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::new(file))
    })
}

/// The logs in the order of their first request's time (rotated logs are named newest first),
/// so that visitor-days and sessions spanning two files stay whole.
fn in_time_order(paths: &[std::path::PathBuf]) -> Result<Vec<std::path::PathBuf>> {
    let mut dated = Vec::new();
    for path in paths {
        let mut input = open(path)?;
        let mut buf = Vec::new();
        let mut first = i64::MAX;
        // The first of its first thousand lines that reads as a request.
        for _ in 0..1000 {
            match plumb_import::read_line(&mut input, &mut buf, MAX_LINE)
                .with_context(|| format!("cannot read {}", path.display()))?
            {
                None => break,
                Some(true) => {
                    if let Some(req) = parse(String::from_utf8_lossy(&buf).trim_end()) {
                        first = req.ts_ms;
                        break;
                    }
                }
                Some(false) => {}
            }
        }
        dated.push((first, path.clone()));
    }
    dated.sort();
    Ok(dated.into_iter().map(|(_, p)| p).collect())
}

/// The rows of `site` (`domain`, days in `tz`) from the logs at `paths`.
pub fn read(
    paths: &[std::path::PathBuf],
    site_id: u32,
    domain: &str,
    tz: Tz,
    sink: &mut dyn FnMut(ImportedRow) -> Result<()>,
) -> Result<Report> {
    let (agents, spam) = (UserAgents::new(), SpamList::new());
    let geo = Geo::open(None).map_err(|e| anyhow!(e))?;
    // This run's salt: visitors are told apart within it, and never again.
    let salt = plumb_core::signature::random_salt();
    let mut sums = DaySums::new(site_id, sink);
    // By bytes of the files as stored (compressed ones move slower than they read).
    let total: u64 = paths.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum();
    sums.progress = plumb_import::Progress::new(&format!("{:.0} MB", total as f64 / 1e6), total);
    let mut sessions = Sessionizer::default();
    let mut rows: Vec<Row> = Vec::new();
    let mut malformed: Vec<String> = Vec::new();
    let (mut seq, mut latest_ms) = (0u64, i64::MIN);
    let idle_ms = plumb_pipeline::sessionizer::SESSION_TIMEOUT_MS;
    for path in in_time_order(paths)? {
        let path = &path;
        let mut input = open(path)?;
        let mut buf = Vec::new();
        let mut number = 0u64;
        loop {
            let read = plumb_import::read_line(&mut input, &mut buf, MAX_LINE)
                .with_context(|| format!("{}: line {}", path.display(), number + 1))?;
            let Some(whole) = read else { break };
            number += 1;
            sums.record(buf.len() as u64 + 1);
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            let parsed = if whole { parse(line) } else { None };
            let Some(req) = parsed else {
                sums.report.skip("malformed lines");
                if malformed.len() < NAMED_LINES {
                    malformed.push(format!("{} line {number}", path.display()));
                }
                continue;
            };
            let Ok(ip) = req.ip.parse::<IpAddr>() else {
                sums.report.skip("malformed lines");
                // The field itself is not shown: it may be a client's address or host name.
                if malformed.len() < NAMED_LINES {
                    malformed.push(format!("{} line {number} (no IP address)", path.display()));
                }
                continue;
            };
            if req.method != "GET" || !(200..300).contains(&req.status) && req.status != 304 || !is_page(req.target) {
                sums.report.skip("requests for no page (other methods, errors, redirects, assets)");
                continue;
            }
            let agent = agents.parse(req.user_agent);
            if agent.bot.is_some() {
                sums.report.skip("requests from bots");
                continue;
            }
            let Ok(page) = plumb_core::url::parse_page_url(&format!("https://{domain}{}", req.target), false) else {
                sums.report.skip("requests for a path that is no URL's");
                continue;
            };
            // A referrer on the site itself is navigation, not a source.
            let referrer = plumb_core::url::parse_referrer(req.referrer).filter(|(_, host)| *host != page.hostname);
            if referrer.as_ref().is_some_and(|(_, host)| spam.is_spam(host)) {
                sums.report.skip("requests with a spam referrer");
                continue;
            }
            let (day, hour) = plumb_core::time::local_day_hour(tz, req.ts_ms);
            let ev = QueuedEvent {
                site_id,
                ts_ms: req.ts_ms,
                day,
                hour,
                signature: plumb_core::signature::visitor_signature(&salt, site_id, day, ip, req.user_agent),
                kind: EventKind::Pageview,
                name: String::new(),
                hostname: page.hostname.clone(),
                pathname: page.pathname.clone(),
                visit: plumb_collector::visit_info(&agent, referrer, &page, None, geo.locate(ip)),
                props: vec![],
                revenue: None,
                interactive: true,
                engaged_ms: 0,
                scroll_depth: None,
            };
            seq += 1;
            sessions.apply(&ev, seq, ev.ts_ms, &mut rows);
            latest_ms = latest_ms.max(ev.ts_ms);
            if rows.len() >= 10_000 {
                add_rows(&mut sums, &mut rows)?;
                // Visitor-days that are over (their day ended, their last hit long ago) go.
                let today = plumb_core::time::local_day(tz, latest_ms);
                sessions.evict(latest_ms, idle_ms, |_, d| d < today);
                sessions.take_releasable(latest_ms, idle_ms);
            }
        }
    }
    add_rows(&mut sums, &mut rows)?;
    let mut report = sums.finish()?;
    if !malformed.is_empty() {
        let more = report.skipped.get("malformed lines").copied().unwrap_or(0) as usize - malformed.len();
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        report.skip(format!("malformed lines were: {}{more}", malformed.join(", ")));
    }
    Ok(report)
}

/// Sums rows into the day's breakdowns, counting visitors and visits per breakdown as a query by
/// it alone would (see `plumb_query`'s grains).
fn add_rows<S: FnMut(ImportedRow) -> Result<()>>(sums: &mut DaySums<S>, rows: &mut Vec<Row>) -> Result<()> {
    for r in rows.drain(..) {
        let n = &r.counters;
        let [pageviews, events, visitors, visits, bounces] =
            [n.pageviews, n.events, n.visitors, n.visits, n.bounces].map(i64::from);
        let duration = n.duration_ms;
        let m: Measures = [visitors, visits, pageviews, bounces, duration, events];
        sums.add(r.day, Dim::Total, "", m)?;
        for a in ATTRS {
            let value = (a.value)(&r);
            let m: Measures = match (a.level, a.session_bit) {
                (Level::Event, _) => {
                    [n.page_visitors.into(), n.page_visits.into(), pageviews, bounces, duration, events]
                }
                (Level::Visit, Some(bit)) => {
                    let first = i64::from(n.visits == 1 && n.attr_first & (1u16 << bit) != 0);
                    [first, visits, pageviews, bounces, duration, events]
                }
                (Level::Visit, None) => m,
            };
            sums.add(r.day, Dim::Attr(a.attr), value, m)?;
        }
        if n.exits != 0 || n.exit_visitors != 0 {
            sums.add(r.day, Dim::ExitPage, &r.pathname, [n.exit_visitors.into(), n.exits.into(), 0, 0, 0, 0])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_lines_parse_and_others_do_not() {
        let line = r#"203.0.113.9 - - [10/Oct/2024:13:55:36 -0700] "GET /a?b=1 HTTP/1.1" 200 2326 "https://www.google.com/" "Mozilla/5.0 (X11) \"quoted\"""#;
        let r = parse(line).unwrap();
        assert_eq!((r.ip, r.method, r.target, r.status), ("203.0.113.9", "GET", "/a?b=1", 200));
        assert_eq!((r.referrer, r.user_agent), ("https://www.google.com/", r#"Mozilla/5.0 (X11) \"quoted\""#));
        assert_eq!(r.ts_ms, chrono::DateTime::parse_from_rfc3339("2024-10-10T20:55:36Z").unwrap().timestamp_millis());
        let dash = r#"::1 - bob [10/Oct/2024:13:55:36 +0000] "GET / HTTP/2.0" 304 - "-" "-""#;
        assert_eq!(parse(dash).unwrap().status, 304);
        for bad in [
            "",
            "garbage",
            r#"1.2.3.4 - - [10/Oct/2024:13:55:36 -0700] "GET / HTTP/1.1" 200 12"#,
            r#"1.2.3.4 - - [yesterday] "GET / HTTP/1.1" 200 12 "-" "x""#,
            r#"1.2.3.4 - - [10/Oct/2024:13:55:36 -0700] "GET / HTTP/1.1" ok 12 "-" "x""#,
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn pages_are_paths_without_an_assets_extension() {
        for page in ["/", "/blog/post", "/index.html", "/a.php?x=1", "/v1.2/notes"] {
            assert!(is_page(page), "{page}");
        }
        for asset in ["/app.js", "/style.CSS", "/img/a.png?v=2", "/favicon.ico", "/robots.txt", "/feed.xml"] {
            assert!(!is_page(asset), "{asset}");
        }
    }
}
