//! The dashboard's CSS and scripts, compiled into the binary. URLs carry a hash of the content,
//! so browsers may cache them for a year and still never run an old copy.

use axum::extract::{Path, RawQuery};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

const FILES: &[(&str, &str, &str)] = &[
    ("app.css", "text/css; charset=utf-8", include_str!("../../assets/app.css")),
    ("dashboard.js", "text/javascript; charset=utf-8", include_str!("../../assets/dashboard.js")),
    ("chart.js", "text/javascript; charset=utf-8", include_str!("../../assets/chart.js")),
    ("site.js", "text/javascript; charset=utf-8", include_str!("../../assets/site.js")),
];

fn version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        FILES.iter().for_each(|(_, _, body)| body.hash(&mut h));
        format!("{:x}", h.finish())
    })
}

/// The address of an embedded file.
pub fn url(name: &str) -> String {
    format!("/assets/{name}?v={}", version())
}

/// Versioned addresses are cached for good; a module's relative imports (no version) are
/// revalidated.
pub async fn serve(Path(name): Path<String>, RawQuery(q): RawQuery) -> Response {
    let cache = if q.is_some_and(|q| q == format!("v={}", version())) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, mime, body)) => {
            ([(header::CONTENT_TYPE, *mime), (header::CACHE_CONTROL, cache)], *body).into_response()
        }
        None => (StatusCode::NOT_FOUND, format!("no asset named `{name}`")).into_response(),
    }
}
