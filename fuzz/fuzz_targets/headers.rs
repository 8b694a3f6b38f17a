//! A valid event under any headers: lines of `name: value` (User-Agent, X-Forwarded-For,
//! Authorization, Content-Type…), as far as HTTP allows them; each replaces a header of that
//! name, the browser User-Agent included.
#![no_main]

#[path = "common.rs"]
mod common;

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut req = Request::post("/api/event")
        .header("user-agent", common::BROWSER)
        .header("accept-language", "en-GB,en;q=0.8")
        .body(Body::from(
            r#"{"n":"pageview","u":"https://shop.test/a?utm_source=x","d":"shop.test","r":"https://t.co/"}"#,
        ))
        .unwrap();
    for line in data.split(|b| *b == b'\n') {
        let Some(at) = line.iter().position(|b| *b == b':') else { continue };
        let (name, value) = (&line[..at], line[at + 1..].trim_ascii());
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            req.headers_mut().insert(n, v);
        }
    }
    common::HARNESS.check(req);
});
