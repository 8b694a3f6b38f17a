//! `GET /collect?<anything>` (Fathom Lite's pixel).
#![no_main]

#[path = "common.rs"]
mod common;

use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Only what can stand in a request target: the HTTP layer refuses the rest before us.
    let query: String = String::from_utf8_lossy(data).chars().filter(|c| c.is_ascii_graphic() && *c != '#').collect();
    let Ok(req) = Request::get(format!("/collect?{query}"))
        .header("user-agent", common::BROWSER)
        .header("accept-language", "en-GB,en;q=0.8")
        .body(Body::empty())
    else {
        return;
    };
    common::HARNESS.check(req);
});
