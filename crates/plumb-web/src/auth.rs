use axum::http::{HeaderMap, StatusCode, header};
use plumb_meta::{ApiKey, MetaStore};

use crate::stats::ApiError;

/// The API key named by `Authorization: Bearer <key>`, or a `401` saying what is missing.
pub fn require_key(meta: &dyn MetaStore, headers: &HeaderMap) -> Result<ApiKey, ApiError> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError(StatusCode::UNAUTHORIZED, "missing API key: send `Authorization: Bearer <key>`".into())
    })?;
    let secret = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "Authorization must be `Bearer <API key>`".into()))?;
    meta.verify_key(secret.trim())
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "API key is invalid or revoked".into()))
}
