use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// The answer to a [`crate::Refusal`]: its status and a message that says exactly what was
/// wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// For `429`: seconds until a retry can succeed.
    pub retry_after_secs: Option<u64>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(serde_json::json!({ "error": self.message }))).into_response();
        if let Some(secs) = self.retry_after_secs {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        // Answered before the body was read: the connection cannot carry another request, and
        // saying so keeps clients from reusing it.
        if matches!(
            self.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
        ) {
            r.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        }
        r
    }
}
