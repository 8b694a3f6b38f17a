//! The audit log: who changed what in a site's settings. Every request whose route needs
//! `personal` (segments), `manage` or `own` and that is not a read runs inside a slot; the permission check that lets the caller
//! in notes the site and who they are there (`note`), and when the handler succeeded the change is
//! recorded with the route's words. One place, so no handler can forget it.

use crate::Web;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use plumb_meta::notices::AuditEntry;
use plumb_meta::permission::Action;
use std::cell::RefCell;
use std::sync::Arc;

tokio::task_local! {
    static CHANGE: RefCell<Option<(u32, String)>>;
}

/// What an API route does, in the endpoint table's words: the audit log's name for its changes
/// (dashboard routes have none; their method and route stand in).
#[derive(Clone, Copy)]
pub(crate) struct Summary(pub &'static str);

/// The caller `actor` was let in on site `site_id`: remembered for the change being made, if any.
pub(crate) fn note(site_id: u32, actor: String) {
    let _ = CHANGE.try_with(|c| *c.borrow_mut() = Some((site_id, actor)));
}

/// Whether requests of this method to a route needing `action` change a site's settings.
fn audited(method: &Method, action: Option<&Action>) -> bool {
    *method != Method::GET
        && *method != Method::HEAD
        && matches!(action, Some(Action::Personal | Action::Manage | Action::Own))
}

/// Records the change a successful request made (a redirect after a form counts as success).
pub(crate) async fn layer(State(web): State<Arc<Web>>, req: Request, next: Next) -> Response {
    if !audited(req.method(), req.extensions().get::<Action>()) {
        return next.run(req).await;
    }
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let detail = format!("{} {}", req.method(), req.uri().path());
    let action = match req.extensions().get::<Summary>() {
        Some(Summary(summary)) => (*summary).to_owned(),
        None => format!("dashboard: {} {route}", req.method()),
    };
    let (response, noted) = CHANGE
        .scope(RefCell::new(None), async move {
            let response = next.run(req).await;
            (response, CHANGE.with(|c| c.borrow_mut().take()))
        })
        .await;
    let done = response.status().is_success() || response.status().is_redirection();
    if let (true, Some((site_id, actor))) = (done, noted) {
        let entry = AuditEntry { at_ms: chrono::Utc::now().timestamp_millis(), actor, action, detail };
        let meta = web.meta.clone();
        // A site deleted by this very request takes its log along; nothing to record then.
        match tokio::task::spawn_blocking(move || meta.record_audit(site_id, &entry)).await {
            Ok(Ok(())) | Ok(Err(plumb_meta::MetaError::NotFound(_))) => {}
            Ok(Err(e)) => tracing::error!("the audit log could not record a change: {e}"),
            Err(e) => tracing::error!("the audit log could not record a change: {e}"),
        }
    }
    response
}
