//! The real collector router over a real metadata store, with a queue that keeps nothing, so a
//! target runs thousands of requests a second. Every answer must be a client error, `202`, the
//! pixel's `200`, `429` or `503` — never a panic or a `500`.

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use plumb_collector::{Collector, CollectorConfig};
use plumb_core::url::PageRules;
use plumb_meta::{MetaStore, SqliteMeta};
use plumb_queue::{AppendFuture, Message, Producer};
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use tower::ServiceExt;

struct Discard;

impl Producer for Discard {
    fn append(&self, _messages: Vec<Message>) -> AppendFuture<'_> {
        Box::pin(async { Ok(()) })
    }
}

pub struct Harness {
    runtime: tokio::runtime::Runtime,
    router: Router,
}

pub static HARNESS: LazyLock<Harness> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("plumb-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let meta = SqliteMeta::open(&dir.join("meta.db")).unwrap();
    if meta.site_by_domain("shop.test").unwrap().is_none() {
        meta.add_site("shop.test", "Europe/Berlin").unwrap();
    }
    let config = CollectorConfig {
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        per_address: 1_000_000,
        per_site: 1_000_000,
        global: 1_000_000,
        per_visitor: 1_000_000,
        per_key: 1_000_000,
        geoip_db: None,
        pages: PageRules { keep_query_params: vec!["q".into()], keep_www: false },
        paths: Default::default(),
    };
    let collector = Collector::new(Arc::new(meta), Arc::new(Discard), config).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    Harness { runtime, router: plumb_collector::router(collector) }
});

impl Harness {
    /// Sends one request and checks the answer's status.
    pub fn check(&self, mut req: Request<Body>) {
        req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let status = self.runtime.block_on(self.router.clone().oneshot(req)).unwrap().status().as_u16();
        assert!(matches!(status, 200 | 202 | 400..=499 | 503), "unexpected status {status}");
    }
}

pub const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
