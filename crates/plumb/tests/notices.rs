//! What Plumb sends, end to end against real receivers started here: an SMTP server of our own
//! (it speaks enough SMTP for any client) and an HTTP webhook receiver. A weekly report must carry
//! the Stats API's numbers and unsubscribe without signing in; mail survives an SMTP outage and a
//! `kill -9` exactly once; spike and drop alerts fire once per cool-down by mail and webhook, with
//! signatures that verify by the documented recipe (checked with Python's `hmac`); `/metrics`
//! parses and agrees with the security counters and the Stats API.

mod common;

use chrono::{Datelike, Duration as Days, Utc};
use common::*;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Mail as the sink received it (the DATA section, dot-unstuffed).
type Inbox = Arc<Mutex<Vec<String>>>;

/// A small SMTP server: greets, accepts any sender and recipient, keeps each message. Aborting
/// its task and dropping the listener is an outage; binding the port again ends it. A stalling
/// one takes a message and never answers it (a server that hangs mid-delivery).
struct SmtpSink {
    port: u16,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SmtpSink {
    async fn start(port: u16, inbox: Inbox) -> SmtpSink {
        SmtpSink::listen(port, inbox, false).await
    }

    async fn stalling(port: u16) -> SmtpSink {
        SmtpSink::listen(port, Inbox::default(), true).await
    }

    async fn listen(port: u16, inbox: Inbox, stall: bool) -> SmtpSink {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let kept = inbox.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let inbox = kept.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    write.write_all(b"220 sink.test ESMTP\r\n").await.unwrap();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let verb = line.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
                        let answer: &[u8] = match verb.as_str() {
                            "EHLO" => b"250-sink.test\r\n250 8BITMIME\r\n",
                            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 OK\r\n",
                            "DATA" => {
                                write.write_all(b"354 go on\r\n").await.unwrap();
                                let mut message = String::new();
                                while let Ok(Some(l)) = lines.next_line().await {
                                    if l == "." {
                                        break;
                                    }
                                    message.push_str(l.strip_prefix('.').unwrap_or(&l));
                                    message.push_str("\r\n");
                                }
                                if stall {
                                    tokio::time::sleep(Duration::from_secs(3600)).await;
                                }
                                inbox.lock().unwrap().push(message);
                                b"250 kept\r\n"
                            }
                            "QUIT" => {
                                let _ = write.write_all(b"221 bye\r\n").await;
                                return;
                            }
                            _ => b"502 not here\r\n",
                        };
                        if write.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        SmtpSink { port, task: Some(task) }
    }

    fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// A webhook receiver: keeps each call's headers and body, answers 200.
#[derive(Clone, Default)]
struct Hooks(Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>>);

impl Hooks {
    async fn start(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let kept = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let kept = kept.clone();
                async move {
                    kept.0.lock().unwrap().push((headers, body));
                    "ok"
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }
}

/// The plain-text part of a mail, decoded (quoted-printable or base64, as the mailer chose).
fn text_part(mail: &str) -> String {
    let start = mail.find("Content-Type: text/plain").expect("a text/plain part");
    let part = &mail[start..];
    let (head, rest) = part.split_once("\r\n\r\n").unwrap();
    let body = &rest[..rest.find("\r\n--").unwrap_or(rest.len())];
    if head.contains("base64") {
        let joined: String = body.split_whitespace().collect();
        String::from_utf8(data_encoding::BASE64.decode(joined.as_bytes()).unwrap()).unwrap()
    } else if head.contains("quoted-printable") {
        let soft = body.replace("=\r\n", "");
        let bytes = soft.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'=' && i + 2 < bytes.len() + 1 {
                out.push(u8::from_str_radix(&soft[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap().replace("\r\n", "\n")
    } else {
        body.replace("\r\n", "\n")
    }
}

fn header<'a>(mail: &'a str, name: &str) -> Option<&'a str> {
    let head = &mail[..mail.find("\r\n\r\n").unwrap_or(mail.len())];
    head.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

/// A number as the report writes it (`1,234`, `41%`, `1m 23s`).
fn figure(text: &str, name: &str) -> f64 {
    let line = text.lines().find(|l| l.starts_with(&format!("{name}: "))).unwrap_or_else(|| panic!("{name} in {text}"));
    let value = line[name.len() + 2..].split(" (").next().unwrap();
    if let Some((m, s)) = value.split_once("m ") {
        return m.parse::<f64>().unwrap() * 60.0 + s.trim_end_matches('s').parse::<f64>().unwrap();
    }
    value.trim_end_matches('%').replace(',', "").parse().unwrap()
}

fn mail_args(smtp: u16) -> Vec<String> {
    [
        "--smtp-url",
        &format!("smtp://127.0.0.1:{smtp}"),
        "--mail-from",
        "Plumb <plumb@mail.test>",
        "--public-url",
        "https://stats.mail.test",
        "--webhook-allow-private",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn post(c: &reqwest::Client, url: &str, key: &str, body: Value) -> (u16, Value) {
    let r = c.post(url).bearer_auth(key).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Pageviews of `visitors` visitors through the Events API: `/` at `ts_ms`, and for three in four
/// a second page 90 s later; returns how many were sent.
async fn visit(
    c: &reqwest::Client,
    url: &str,
    key: &str,
    site: &str,
    visitors: std::ops::Range<u32>,
    ts_ms: i64,
) -> usize {
    let events: Vec<Value> = visitors
        .flat_map(|v| {
            let pages: &[&str] = if v % 4 == 0 {
                &["/"]
            } else if v % 3 == 0 {
                &["/", "/pricing"]
            } else {
                &["/", "/blog"]
            };
            pages
                .iter()
                .enumerate()
                .map(|(i, page)| {
                    json!({"name": "pageview", "domain": site, "url": format!("https://{site}{page}"),
                           "ip": format!("10.7.{}.{}", v / 256, v % 256),
                           "user_agent": format!("Mozilla/5.0 (X11; Linux x86_64) Visitor/{v}"),
                           "referrer": if v % 2 == 0 { "https://www.google.com/" } else { "" },
                           "timestamp": ts_ms / 1000 + 90 * i as i64})
                })
                .collect::<Vec<_>>()
        })
        .collect();
    for chunk in events.chunks(200) {
        let (status, answer) = post(c, &format!("{url}/api/events"), key, json!(chunk)).await;
        assert_eq!((status, &answer["accepted"]), (202, &json!(chunk.len())), "{answer}");
    }
    events.len()
}

/// Adds the site and an API key that may read, send events with their own time and manage the
/// site (reports, alerts and webhooks need `sites:admin`); returns the key.
fn site_and_admin_key(dir: &std::path::Path, site: &str) -> String {
    cli(dir, &["site", "add", site, "--timezone", "UTC"]);
    create_key_with(dir, "reader", &["--scope", "stats:read", "--scope", "events:write", "--scope", "sites:admin"])
}

/// A time for hits that are current: both pageviews of a visit in the last five minutes.
fn recently() -> i64 {
    Utc::now().timestamp_millis() - 200_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weekly_report_carries_the_stats_apis_numbers_and_unsubscribes_without_signing_in() {
    let dir = temp_dir("report");
    let site = "report.test";
    let key = site_and_admin_key(&dir, site);
    let inbox = Inbox::default();
    let smtp = SmtpSink::start(free_port(), inbox.clone()).await;
    let server = Server::start(&dir, &refs(&mail_args(smtp.port)));
    let c = client();
    // Visits on three days of last week (Monday to Sunday, UTC), and some the week before.
    let today = Utc::now().date_naive();
    let monday = today - Days::days(i64::from(today.weekday().num_days_from_monday()) + 7);
    let at = |d: chrono::NaiveDate| d.and_hms_opt(9, 0, 0).unwrap().and_utc().timestamp_millis();
    let mut sent = visit(&c, &server.url, &key, site, 0..40, at(monday)).await;
    sent += visit(&c, &server.url, &key, site, 20..70, at(monday + Days::days(3))).await;
    sent += visit(&c, &server.url, &key, site, 60..65, at(monday + Days::days(6))).await;
    let in_week = sent;
    sent += visit(&c, &server.url, &key, site, 0..9, at(monday - Days::days(7))).await;
    let week = json!([monday.to_string(), (monday + Days::days(6)).to_string()]);
    let done = eventually(Duration::from_secs(60), || async {
        aggregate(&c, &server.url, &key, site, &["pageviews"], json!("all")).await[0] == json!(sent)
    })
    .await;
    assert!(done, "the pipeline did not count {sent} pageviews");

    let reports = format!("{}/api/v1/sites/{site}/reports", server.url);
    let (status, report) = post(&c, &reports, &key, json!({"email": "Boss@Report.test", "period": "week"})).await;
    assert_eq!(status, 201, "{report}");
    assert_eq!(post(&c, &reports, &key, json!({"email": "x", "period": "week"})).await.0, 400);
    assert_eq!(post(&c, &reports, &key, json!({"email": "a@b.test", "period": "day"})).await.0, 400);
    let send = format!("{reports}/{}/send", report["id"]);
    assert_eq!(post(&c, &send, &key, json!({})).await, (202, json!({"queued": true})));
    assert_eq!(post(&c, &send, &key, json!({})).await, (200, json!({"queued": false})), "once per period");

    let arrived = eventually(Duration::from_secs(30), || async { !inbox.lock().unwrap().is_empty() }).await;
    assert!(arrived, "no report arrived");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mail = inbox.lock().unwrap().clone();
    assert_eq!(mail.len(), 1, "one report, however often it was asked for in one period");
    let mail = &mail[0];
    assert!(header(mail, "To").is_some_and(|t| t.contains("boss@report.test")), "{mail}");
    assert!(header(mail, "Message-ID").is_some_and(|m| m.contains("@mail.test")));
    assert!(header(mail, "List-Unsubscribe-Post") == Some("List-Unsubscribe=One-Click"));
    assert!(mail.contains("Content-Type: text/html"), "an HTML part too");
    let text = text_part(mail);
    let api = aggregate(
        &c,
        &server.url,
        &key,
        site,
        &["visitors", "pageviews", "bounce_rate", "visit_duration"],
        week.clone(),
    )
    .await;
    let numbers: Vec<f64> =
        ["Visitors", "Pageviews", "Bounce rate", "Visit duration"].iter().map(|n| figure(&text, n)).collect();
    let expected: Vec<f64> = api.iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(numbers, expected, "the report's numbers are the Stats API's for that week\n{text}");
    // Days are not linked (each day's signature is new): 40 + 50 + 5 visitors.
    assert_eq!(numbers[..2], [95.0, in_week as f64]);
    assert!(numbers[2] > 0.0 && numbers[3] > 0.0, "some bounce, some stay 90 s: {numbers:?}");
    // Top pages as the API ranks them.
    let r = c
        .post(format!("{}/api/v2/query", server.url))
        .bearer_auth(&key)
        .json(&json!({"site_id": site, "metrics": ["visitors"], "date_range": week, "dimensions": ["event:page"],
                      "order_by": [["visitors", "desc"], ["event:page", "asc"]]}))
        .send()
        .await
        .unwrap();
    let pages: Value = r.json().await.unwrap();
    for row in pages["results"].as_array().unwrap() {
        let line = format!("  {}  {}", row["metrics"][0], row["dimensions"][0].as_str().unwrap());
        assert!(text.contains(&line), "{line} in\n{text}");
    }

    // The link in the mail, on this server: a page with one button, then unsubscribed.
    let link = text.lines().find_map(|l| l.strip_prefix("Unsubscribe from this report: ")).unwrap().trim().to_owned();
    let local = link.replace("https://stats.mail.test", &server.url);
    let plain = reqwest::Client::new();
    let page = plain.get(&local).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("boss@report.test") && html.contains(">Unsubscribe</button>"), "{html}");
    let last = if local.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{last}", &local[..local.len() - 1]);
    assert_eq!(plain.post(&forged).send().await.unwrap().status(), 404, "a wrong token does nothing");
    assert_eq!(
        c.get(&reports).bearer_auth(&key).send().await.unwrap().json::<Value>().await.unwrap()["reports"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let done = plain.post(&local).body("List-Unsubscribe=One-Click").send().await.unwrap();
    assert_eq!(done.status(), 200, "one click, no sign-in");
    let left: Value = c.get(&reports).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(left["reports"], json!([]));
    assert_eq!(plain.post(&local).send().await.unwrap().status(), 404, "already unsubscribed");
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

/// The outbox's delivery log of a webhook.
async fn deliveries(c: &reqwest::Client, url: &str, key: &str, site: &str, hook: &Value) -> Vec<Value> {
    let r = c
        .get(format!("{url}/api/v1/sites/{site}/webhooks/{}/deliveries", hook["id"]))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    r.json::<Value>().await.unwrap()["deliveries"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_pending_through_an_smtp_outage_and_a_kill_9_is_delivered_exactly_once() {
    let dir = temp_dir("outage");
    let site = "outage.test";
    let key = site_and_admin_key(&dir, site);
    let inbox = Inbox::default();
    let port = free_port();
    // The outage's first part: a server that takes the mail and never confirms it.
    let outage = Instant::now();
    let mut smtp = SmtpSink::stalling(port).await;
    let mut server = Server::start(&dir, &refs(&mail_args(port)));
    let c = client();
    let base = format!("{}/api/v1/sites/{site}", server.url);
    let (_, report) =
        post(&c, &format!("{base}/reports"), &key, json!({"email": "boss@outage.test", "period": "month"})).await;
    let (status, alert) = post(
        &c,
        &format!("{base}/alerts"),
        &key,
        json!({"kind": "spike", "threshold": 2, "cooldown_minutes": 600, "email": "ops@outage.test"}),
    )
    .await;
    assert_eq!(status, 201, "{alert}");
    assert_eq!(post(&c, &format!("{base}/reports/{}/send", report["id"]), &key, json!({})).await.0, 202);
    visit(&c, &server.url, &key, site, 0..3, recently()).await;
    // The alert fires (once: its cool-down is ten hours); its mail and the report's hang.
    let fired = eventually(Duration::from_secs(30), || async {
        let list: Value = c.get(format!("{base}/alerts")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
        !list["alerts"][0]["last_fired_at"].is_null()
    })
    .await;
    assert!(fired, "the spike alert did not fire");
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Killed mid-delivery; then nothing listens at all, and the server comes back.
    server.kill9();
    smtp.stop();
    server.restart();
    tokio::time::sleep(Duration::from_secs(60).saturating_sub(outage.elapsed())).await;
    let _smtp = SmtpSink::start(port, inbox.clone()).await;
    // Leases of the killed process's claims run out a minute after them; retries back off.
    let both = eventually(Duration::from_secs(150), || async { inbox.lock().unwrap().len() >= 2 }).await;
    assert!(both, "after the outage: {} mails", inbox.lock().unwrap().len());
    // Longer than a lease: a delivery left running or claimed twice would arrive by now.
    tokio::time::sleep(Duration::from_secs(70)).await;
    let mail = inbox.lock().unwrap().clone();
    assert_eq!(mail.len(), 2, "each message exactly once");
    let mut ids: Vec<&str> = mail.iter().map(|m| header(m, "Message-ID").unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 2);
    let subjects: Vec<String> = mail.iter().map(|m| text_part(m).lines().next().unwrap().to_owned()).collect();
    assert!(subjects.iter().any(|s| s.starts_with("Monthly report for outage.test")), "{subjects:?}");
    assert!(subjects.iter().any(|s| s.starts_with("Traffic spike on outage.test: 3 current visitors")), "{subjects:?}");
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

/// Checks a delivery's `Plumb-Signature` the way the README tells receivers to, in another
/// language: Python's `hmac` over `<t>.<body>` with the secret.
fn verifies(secret: &str, signature: &str, body: &str) -> bool {
    let script = "import hmac, hashlib, sys\n\
                  secret, header, body = sys.argv[1], sys.argv[2], sys.stdin.read()\n\
                  parts = dict(p.split('=', 1) for p in header.split(','))\n\
                  want = hmac.new(secret.encode(), (parts['t'] + '.' + body).encode(), hashlib.sha256).hexdigest()\n\
                  sys.exit(0 if hmac.compare_digest(want, parts['v1']) else 1)";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, secret, signature])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    child.wait().unwrap().success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spike_and_drop_alerts_fire_once_per_cool_down_by_mail_and_signed_webhook() {
    let dir = temp_dir("alerts");
    let site = "alerts.test";
    let key = site_and_admin_key(&dir, site);
    let inbox = Inbox::default();
    let smtp = SmtpSink::start(free_port(), inbox.clone()).await;
    let server = Server::start(&dir, &refs(&mail_args(smtp.port)));
    let hooks = Hooks::default();
    let hook_url = hooks.start().await;
    let c = client();
    let base = format!("{}/api/v1/sites/{site}", server.url);
    // A site admin may not point a webhook inside the network unless the operator allows it; this
    // server does (the receiver is on loopback), so the refusal is shown by the unit tests.
    let (status, hook) =
        post(&c, &format!("{base}/webhooks"), &key, json!({"url": hook_url, "events": ["alert"]})).await;
    assert_eq!(status, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_owned();
    let listed: Value = c.get(format!("{base}/webhooks")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert!(listed["webhooks"][0].get("secret").is_none(), "the secret is shown once");
    for bad in [
        json!({"kind": "spike", "threshold": 0, "cooldown_minutes": 1}),
        json!({"kind": "flood", "threshold": 1, "cooldown_minutes": 1}),
        json!({"kind": "drop", "threshold": 5, "cooldown_minutes": 0}),
    ] {
        assert_eq!(post(&c, &format!("{base}/alerts"), &key, bad).await.0, 400);
    }
    let add = |kind: &'static str, threshold: u32| {
        let (c, base, key) = (c.clone(), base.clone(), key.clone());
        async move {
            let body = json!({"kind": kind, "threshold": threshold, "cooldown_minutes": 1, "email": format!("{kind}@alerts.test")});
            let (status, a) = post(&c, &format!("{base}/alerts"), &key, body).await;
            assert_eq!(status, 201, "{a}");
        }
    };
    add("spike", 3).await;
    add("drop", 1).await;
    // Goal conversions per minute go to a webhook of their own.
    cli(&dir, &["goal", "add", site, "--event", "Signup"]);
    let (status, goal_hook) =
        post(&c, &format!("{base}/webhooks"), &key, json!({"url": hook_url, "events": "goal"})).await;
    assert_eq!(status, 201, "{goal_hook}");
    let started = Instant::now();
    // Four visitors now: a spike (threshold 3) for the next five minutes, then silence: a drop
    // after a minute. With a one-minute cool-down each may fire once a minute while it lasts.
    visit(&c, &server.url, &key, site, 0..4, recently()).await;
    // Three of them sign up (events, not pageviews: the drop still comes).
    let signups: Vec<Value> = (1..4)
        .map(|v| {
            json!({"name": "Signup", "domain": site, "url": format!("https://{site}/"), "ip": format!("10.7.0.{v}"),
                         "user_agent": format!("Mozilla/5.0 (X11; Linux x86_64) Visitor/{v}")})
        })
        .collect();
    assert_eq!(post(&c, &format!("{}/api/events", server.url), &key, json!(signups)).await.0, 202);
    tokio::time::sleep(Duration::from_secs(85).saturating_sub(started.elapsed())).await;

    let all_calls = hooks.0.lock().unwrap().clone();
    let (goal_calls, calls): (Vec<_>, Vec<_>) =
        all_calls.into_iter().partition(|(_, b)| b.contains("\"event\":\"goal\""));
    assert_eq!(goal_calls.len(), 1, "one minute with conversions: {goal_calls:?}");
    let goal_body: Value = serde_json::from_str(&goal_calls[0].1).unwrap();
    assert_eq!(goal_body["goals"], json!([{"goal": "Signup", "conversions": 3}]), "{goal_body}");
    let goal_signature = goal_calls[0].0["plumb-signature"].to_str().unwrap();
    assert!(verifies(goal_hook["secret"].as_str().unwrap(), goal_signature, &goal_calls[0].1));
    let bodies: Vec<Value> = calls.iter().map(|(_, b)| serde_json::from_str(b).unwrap()).collect();
    let kinds: Vec<String> = bodies.iter().map(|b| b["kind"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "spike").count(), 2, "spike at once and after the cool-down: {kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "drop").count(), 1, "drop after a quiet minute: {kinds:?}");
    for (headers, body) in &calls {
        let signature = headers["plumb-signature"].to_str().unwrap();
        assert!(verifies(&secret, signature, body), "{signature} over {body}");
        assert!(!verifies("whsec_wrong", signature, body));
        assert!(!verifies(&secret, signature, &body.replace("alert", "alerT")), "a changed body fails");
        assert_eq!(headers["plumb-event"], "alert");
        let t: i64 = signature.split(',').next().unwrap().trim_start_matches("t=").parse().unwrap();
        assert!((Utc::now().timestamp() - t).abs() < 120, "the timestamp is the sending time");
    }
    let spike = bodies.iter().find(|b| b["kind"] == "spike").unwrap();
    assert_eq!(
        (spike["site"].as_str(), spike["value"].as_u64(), spike["threshold"].as_u64()),
        (Some(site), Some(4), Some(3))
    );
    let mail = inbox.lock().unwrap().clone();
    let subjects: Vec<String> = mail.iter().map(|m| text_part(m).lines().next().unwrap().to_owned()).collect();
    assert_eq!(subjects.iter().filter(|s| s.starts_with("Traffic spike on alerts.test")).count(), 2, "{subjects:?}");
    assert_eq!(
        subjects.iter().filter(|s| s.starts_with("No traffic on alerts.test: no pageviews for 1 minute ")).count(),
        1,
        "{subjects:?}"
    );
    let log = deliveries(&c, &server.url, &key, site, &hook).await;
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|d| d["state"] == "sent" && d["attempts"] == 1), "{log:?}");
    // The audit log has the four changes by this key (not the refused attempts), newest first,
    // and the goal added from the command line between them.
    let audit: Value = c.get(format!("{base}/audit")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    let changes = audit["changes"].as_array().unwrap();
    let who: Vec<&str> = changes.iter().map(|e| e["actor"].as_str().unwrap()).collect();
    assert_eq!(
        who,
        ["API key `reader`", "the command line", "API key `reader`", "API key `reader`", "API key `reader`"],
        "{audit}"
    );
    let actions: Vec<&str> = changes.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions[0].starts_with("Add a webhook") && actions[4].starts_with("Add a webhook"), "{actions:?}");
    assert_eq!(actions[1], "Add a goal");
    assert!(actions[2..4].iter().all(|a| a.starts_with("Add a traffic alert")), "{actions:?}");
    assert_eq!(changes[4]["request"], format!("POST /api/v1/sites/{site}/webhooks"));
    // Another, from the command line, is the newest now.
    cli(&dir, &["goal", "add", site, "--event", "Upgrade"]);
    let audit: Value = c.get(format!("{base}/audit")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    let newest = &audit["changes"][0];
    assert_eq!((&newest["actor"], &newest["action"]), (&json!("the command line"), &json!("Add a goal")), "{audit}");
    assert!(newest["request"].as_str().unwrap().ends_with(&format!("goal add {site} --event Upgrade")), "{newest}");
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

/// One sample of a parsed exposition, by name and labels.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_agree_with_the_security_counters_and_the_stats_api() {
    let dir = temp_dir("metrics");
    let site = "metrics.test";
    let key = site_and_admin_key(&dir, site);
    let metrics_port = free_port();
    let listen = format!("127.0.0.1:{metrics_port}");
    let server = Server::start(&dir, &["--metrics-listen", &listen]);
    let c = client();
    // A known load: 30 visitors' pageviews, crawlers, hits without a User-Agent, invalid events.
    let pageviews = visit(&c, &server.url, &key, site, 0..30, recently()).await;
    let bots: Vec<Value> = (0..7)
        .map(|i| {
            json!({"name": "pageview", "domain": site, "url": format!("https://{site}/"), "ip": format!("10.8.0.{i}"),
                         "user_agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"})
        })
        .collect();
    // Answered as accepted (a bot is not told), counted as refused.
    let (status, answer) = post(&c, &format!("{}/api/events", server.url), &key, json!(bots)).await;
    assert_eq!(status, 202, "{answer}");
    for _ in 0..4 {
        let r = browser_without_user_agent()
            .post(format!("{}/api/event", server.url))
            .header("origin", format!("https://{site}"))
            .json(&json!({"n": "pageview", "u": format!("https://{site}/"), "d": site}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "a hit without a User-Agent is dropped quietly");
    }
    for _ in 0..3 {
        let r = c
            .post(format!("{}/api/event", server.url))
            .json(&json!({"n": "pageview", "u": "not a url", "d": site}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
    let counted = eventually(Duration::from_secs(30), || async {
        aggregate(&c, &server.url, &key, site, &["pageviews"], json!("all")).await[0] == json!(pageviews)
    })
    .await;
    assert!(counted);
    // Security counters are written every 2 s.
    let expected = json!({"crawler": 7, "invalid": 3, "no_user_agent": 4});
    let tallied = eventually(Duration::from_secs(15), || async {
        security_totals(&c, &server.url, &key, site).await == expected
    })
    .await;
    let security = security_totals(&c, &server.url, &key, site).await;
    assert!(tallied, "{security}");
    // A Stats query and a commit have been timed by now.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let text = reqwest::get(format!("http://{listen}/metrics")).await.unwrap().text().await.unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    assert_eq!(
        sample(&scrape, "plumb_events_accepted_total", &[]),
        pageviews as f64,
        "accepted = the Stats API's pageviews\n{text}"
    );
    for (reason, n) in security.as_object().unwrap() {
        assert_eq!(
            sample(&scrape, "plumb_events_refused_total", &[("reason", reason)]),
            n.as_f64().unwrap(),
            "{reason}"
        );
    }
    assert_eq!(sample(&scrape, "plumb_events_refused_total", &[("reason", "spam")]), 0.0);
    let count = |name: &str| {
        scrape.samples.iter().find(|s| s.metric == name).map(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            _ => f64::NAN,
        })
    };
    assert!(count("plumb_store_commit_seconds").is_some_and(|n| n >= 1.0), "{text}");
    assert!(count("plumb_query_seconds").is_some_and(|n| n >= 2.0), "{text}");
    assert!(text.contains("plumb_http_connections "), "a gauge of open connections");
    assert!(text.contains("plumb_queue_depth 0\n"), "the pipeline has read everything:\n{text}");
    assert!(text.contains("# HELP plumb_events_accepted_total"));
    // The metrics are not on the public listener.
    assert_eq!(c.get(format!("{}/metrics", server.url)).send().await.unwrap().status(), 404);
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn doctor_says_what_is_fine_and_what_is_not() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("doctor");
    cli(&dir, &["site", "add", "doctor.test"]);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = cli(&dir, &["doctor"]);
    for line in [
        "ok    data directory",
        "is private to its owner",
        "MiB free",
        "1 site(s)",
        "clock reads",
        "salts:",
        "no mail configured",
    ] {
        assert!(out.contains(line), "{line} in\n{out}");
    }
    assert!(!out.contains("FAIL"), "{out}");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(cli(&dir, &["doctor"]).contains("warn  data directory"), "a directory others can read is a warning");
    // Mail configured to a port nothing listens on: a failure, and the exit status says so.
    let closed = format!("smtp://127.0.0.1:{}", free_port());
    let run = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .args([
            "doctor",
            "--smtp-url",
            &closed,
            "--mail-from",
            "a@doctor.test",
            "--public-url",
            "https://s.doctor.test",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(!run.status.success() && out.contains("FAIL  the SMTP server"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn json_logs_are_one_object_per_line() {
    use std::io::BufRead;
    let dir = temp_dir("jsonlogs");
    let mut child = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(&dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--log-format", "json"])
        .env("PLUMB_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let first: Vec<String> = lines.by_ref().take(2).map(Result::unwrap).collect();
    child.kill().unwrap();
    child.wait().unwrap();
    for line in &first {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(v["level"], "INFO", "{line}");
        assert!(v["fields"]["message"].is_string() && v["timestamp"].is_string(), "{line}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_command_line_refuses_bad_reports_alerts_and_webhooks_saying_why() {
    let dir = temp_dir("notices-cli");
    cli(&dir, &["site", "add", "cli.test"]);
    let refused = |args: &[&str], why: &str| {
        let out = std::process::Command::new(BIN).arg("--data-dir").arg(&dir).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(why), "{args:?}: {err}");
    };
    refused(&["report", "add", "cli.test", "--email", "nobody", "--period", "week"], "is not an e-mail address");
    refused(&["report", "add", "cli.test", "--email", "a@b.test", "--period", "day"], "`week` or `month`");
    refused(&["alert", "add", "cli.test", "--kind", "flood", "--threshold", "5"], "`spike` or `drop`");
    refused(&["alert", "add", "cli.test", "--kind", "spike", "--threshold", "300000"], "1 to 200000 current visitors");
    refused(
        &["alert", "add", "cli.test", "--kind", "drop", "--threshold", "5", "--cooldown-minutes", "0"],
        "cool-down",
    );
    refused(&["webhook", "add", "cli.test", "ftp://x.test/"], "http:// or https://");
    refused(&["webhook", "add", "cli.test", "https://x.test/", "--events", "weekly"], "`alert`, `daily` or `goal`");
    refused(&["report", "remove", "cli.test", "99"], "report 99 of site");
    refused(&["webhook", "add", "nosuch.test", "https://x.test/"], "nosuch.test");
    let _ = std::fs::remove_dir_all(dir);
}
