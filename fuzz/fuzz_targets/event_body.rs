//! `POST /api/event` with any body.
#![no_main]

#[path = "common.rs"]
mod common;

use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let req = Request::post("/api/event")
        .header("user-agent", common::BROWSER)
        .header("accept-language", "en-GB,en;q=0.8")
        .header("content-type", "text/plain")
        .body(Body::from(data.to_vec()))
        .unwrap();
    common::HARNESS.check(req);
});
