//! The tracker script, embedded in the binary and served pre-compressed.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::io::Write;
use std::sync::LazyLock;

pub const SCRIPT: &str = include_str!("../../../tracker/script.js");

static GZIPPED: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(SCRIPT.as_bytes()).expect("writing to memory");
    enc.finish().expect("writing to memory")
});

/// An ETag that changes with the script's content.
static ETAG: LazyLock<String> = LazyLock::new(|| {
    let h = SCRIPT.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    format!("\"{h:016x}\"")
});

pub async fn script(headers: HeaderMap) -> Response {
    let etag = HeaderValue::from_str(&ETAG).expect("hex is a valid header");
    if headers.get(header::IF_NONE_MATCH) == Some(&etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let mut r = if gzip {
        let mut r = GZIPPED.as_slice().into_response();
        r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        SCRIPT.into_response()
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/javascript; charset=utf-8"));
    // Short enough that a new version reaches visitors within hours, long enough to spare them
    // a request on every page; the ETag makes revalidation cheap.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=14400"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(header::ETAG, etag);
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

/// The 1×1 transparent GIF answered to pixel hits.
pub fn gif() -> Response {
    const GIF: &[u8] = &[
        0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
        0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00,
        0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
    ];
    let mut r = GIF.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_fits_the_size_budget() {
        let size = GZIPPED.len();
        println!("tracker: {} bytes, {size} bytes gzipped", SCRIPT.len());
        assert!(size <= 1536, "tracker is {size} bytes gzipped, budget 1536");
    }
}
