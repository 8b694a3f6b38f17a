//! The one error type of the API: a status, a message that names the field and what is wrong
//! with it, and for `429` and `503` when to retry.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), retry_after_secs: None }
    }

    pub fn bad(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, msg)
    }

    /// `429` with `Retry-After`.
    pub fn too_many(msg: impl Into<String>, wait_secs: u64) -> Self {
        Self { retry_after_secs: Some(wait_secs), ..Self::new(StatusCode::TOO_MANY_REQUESTS, msg) }
    }

    /// `503` with `Retry-After`: the server is busy or over a budget; the same request may work
    /// later.
    pub fn busy(msg: impl Into<String>, wait_secs: u64) -> Self {
        Self { retry_after_secs: Some(wait_secs), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, msg) }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!("API request failed: {e}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error while answering the request")
    }
}

/// Metadata refusals keep their meaning (`400`, `404`); a storage failure is a `500`, logged.
impl From<plumb_meta::MetaError> for ApiError {
    fn from(e: plumb_meta::MetaError) -> Self {
        use plumb_meta::MetaError;
        match e {
            MetaError::Invalid(m) => ApiError::bad(m),
            MetaError::NotFound(what) => ApiError::new(StatusCode::NOT_FOUND, format!("{what} not found")),
            e @ MetaError::Storage(_) => ApiError::internal(e),
        }
    }
}

/// A query that makes no sense: the message names the field and what is wrong.
impl From<plumb_query::Invalid> for ApiError {
    fn from(e: plumb_query::Invalid) -> Self {
        ApiError::bad(e.0)
    }
}

impl From<plumb_query::QueryError> for ApiError {
    fn from(e: plumb_query::QueryError) -> Self {
        match e {
            plumb_query::QueryError::Invalid(i) => i.into(),
            plumb_query::QueryError::Store(e) => e.into(),
        }
    }
}

/// A query over a budget: too large is the caller's to narrow (`400`), too long may pass later
/// (`503`); a storage failure is a `500`, logged.
impl From<plumb_store::StoreError> for ApiError {
    fn from(e: plumb_store::StoreError) -> Self {
        use plumb_store::StoreError;
        match e {
            StoreError::TooLarge(m) => ApiError::bad(m),
            e @ StoreError::Timeout(_) => ApiError::busy(e.to_string(), 10),
            e @ StoreError::Backend(_) => ApiError::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({ "error": self.message }))).into_response();
        if let Some(secs) = self.retry_after_secs {
            r.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        // Refused before the body was read: the connection cannot carry another request.
        if matches!(self.status, StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT) {
            r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}
