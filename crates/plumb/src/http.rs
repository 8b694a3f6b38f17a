//! The HTTP server loop: hyper's HTTP/1 with limits a public endpoint needs — headers must
//! arrive within 10 s and fit in 16 KiB (slow or bloated clients are cut off, idle keep-alive
//! connections too), at most `max_connections` at once (further ones wait in the kernel's
//! backlog), and a graceful shutdown that lets in-flight requests finish.
//!
//! Where the collector and the dashboard share a process, the dashboard and API may hold only a
//! share of the connections (`Lanes::web`): a connection whose first request is not the
//! collector's needs a place in that lane for as long as it stays open, so a flood of dashboard
//! connections or event streams never takes the collector's.

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// hyper's read buffer, which whole request heads must fit in (its minimum is 8 KiB).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How long a shutdown waits for open requests (server-sent event streams never end).
const DRAIN: Duration = Duration::from_secs(5);

/// How connections are shared out.
pub struct Lanes {
    pub max_connections: usize,
    /// Where the collector shares the process: the dashboard's and API's share.
    pub web: Option<WebLane>,
}

/// How many connections the dashboard and API may hold, and which paths are the collector's.
pub struct WebLane {
    pub connections: usize,
    pub is_collector: Arc<dyn Fn(&str) -> bool + Send + Sync>,
}

pub async fn serve(listener: TcpListener, app: Router, lanes: Lanes, shutdown: impl Future<Output = ()>) {
    let permits = Arc::new(Semaphore::new(lanes.max_connections));
    let web_lane = lanes.web.map(|l| (Arc::new(Semaphore::new(l.connections)), l.is_collector));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).max_buf_size(MAX_HEAD_BYTES);
    tokio::pin!(shutdown);
    let open = metrics::gauge!("plumb_http_connections");
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors and the like: back off a little, keep serving.
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        // The connection's place in the web lane, once it has asked for something other than
        // the collector's; kept until it closes.
        let web_place: Arc<Mutex<Option<OwnedSemaphorePermit>>> = Arc::default();
        let web_lane = web_lane.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            let refused = match &web_lane {
                Some((lane, is_collector)) if !is_collector(req.uri().path()) => {
                    let mut place = web_place.lock().unwrap();
                    if place.is_none() {
                        *place = lane.clone().try_acquire_owned().ok();
                    }
                    place.is_none()
                }
                _ => false,
            };
            async move {
                if refused {
                    let mut r = (StatusCode::SERVICE_UNAVAILABLE, "too many dashboard connections; retry shortly\n")
                        .into_response();
                    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                    return Ok(r);
                }
                app.oneshot(req.map(axum::body::Body::new)).await
            }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        let open = open.clone();
        open.increment(1.0);
        tokio::spawn(async move {
            // Clients that go away or send garbage end here; nothing to report.
            let _ = conn.await;
            open.decrement(1.0);
            drop(permit);
        });
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::info!("closed connections still open after {DRAIN:?}");
    }
}
