//! Who may call: bearer API keys, kept as digests and compared in constant time, and the
//! middleware that admits a `/v1` request and tags it with its [`Caller`].

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ApiState;
use crate::error::ApiError;

/// The caller of a `/v1` route, as the key check found it: a digest of its API key that
/// scopes its idempotency keys. Domain-separated from the digest [`ApiKeys`] compares, so
/// the stored value is no other use's digest of the key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller {
    pub(crate) scope: [u8; 32],
}

impl Caller {
    pub(crate) fn of(api_key: &str) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"video-worker idempotency scope v1\0");
        hash.update(api_key.as_bytes());
        Self {
            scope: hash.finalize().into(),
        }
    }
}

/// Bearer API keys, kept as SHA-256 digests so comparison is constant-time and
/// length-independent.
#[derive(Clone)]
pub struct ApiKeys(Arc<Vec<[u8; 32]>>);

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.0.len())
    }
}

impl ApiKeys {
    /// Keys from their values; only their digests are kept.
    pub fn new(keys: &[SecretString]) -> Self {
        Self(Arc::new(
            keys.iter()
                .map(|k| Sha256::digest(k.expose_secret().as_bytes()).into())
                .collect(),
        ))
    }

    pub(crate) fn accepts(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Check every key, so timing does not tell which one (if any) matched.
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |any, key| any | key.ct_eq(&digest))
            .into()
    }
}

pub(crate) async fn require_key(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented {
        Some(key) if state.keys.accepts(key) => {
            let caller = Caller::of(key);
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        _ => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required (Authorization: Bearer <key>)",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_accept_only_their_values() {
        let keys = ApiKeys::new(&["alpha-key-123".into(), "beta-key-456".into()]);
        assert!(keys.accepts("alpha-key-123"));
        assert!(keys.accepts("beta-key-456"));
        assert!(!keys.accepts("alpha-key-12"));
        assert!(!keys.accepts(""));
    }
}
