//! Why the collector turns a request or an event away, whichever step decided it (validation,
//! admission, the queue). Each kind becomes one HTTP status, here and nowhere else.

use crate::ApiError;
use axum::http::StatusCode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed: a field missing, of the wrong type or out of range; an unknown site.
    Invalid(String),
    /// An `Authorization` header without a valid key.
    Unauthorized(String),
    /// A key that may not send for the site, or a firewall rule of the site.
    Forbidden(String),
    /// More at once than any retry can pass: a body or a batch over its size, a burst.
    TooLarge(String),
    /// The body did not arrive in time.
    TooSlow(String),
    /// Over a rate budget; a retry after this many seconds can pass.
    RateLimited { message: String, retry_after_secs: u64 },
    /// The collector cannot do its part now (metadata, queue): nothing was taken; retry.
    Unavailable(String),
}

impl Refusal {
    pub fn invalid(message: impl Into<String>) -> Self {
        Refusal::Invalid(message.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
            Refusal::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            Refusal::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::TooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            Refusal::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Refusal::Invalid(m)
            | Refusal::Unauthorized(m)
            | Refusal::Forbidden(m)
            | Refusal::TooLarge(m)
            | Refusal::TooSlow(m)
            | Refusal::RateLimited { message: m, .. }
            | Refusal::Unavailable(m) => m,
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let retry_after_secs = match &r {
            Refusal::RateLimited { retry_after_secs, .. } => Some(*retry_after_secs),
            _ => None,
        };
        ApiError { status: r.status(), message: r.message().to_owned(), retry_after_secs }
    }
}
