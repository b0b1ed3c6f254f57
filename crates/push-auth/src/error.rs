//! Why a push was refused, and which HTTP status says so.
//!
//! The split matters to Cloud Tasks: a 401/403 is a permanent refusal that someone must fix
//! (wrong token, wrong service account), while a 503 — we could not get Google's keys — is our
//! own transient fault, and Cloud Tasks retries it later.
//!
//! Messages are fixed strings chosen by this crate (never a token, nor text echoed from one),
//! so they are safe to log and to send back.

use http::StatusCode;

/// A refused push.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials at all.
    #[error("missing credentials")]
    Missing,
    /// Bad, forged or expired token; wrong `aud`/`iss`/`alg`/`kid`; bad shared token.
    #[error("invalid credentials: {0}")]
    Invalid(String),
    /// A genuine Google token for a caller that may not push (email not allowed or not
    /// verified).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Google's signing keys could not be fetched and no cached key fits the token.
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

impl AuthError {
    /// The HTTP status to answer with: 401, 403 or 503.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Missing | Self::Invalid(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::KeysUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::Invalid(reason.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_maps_to_its_status() {
        assert_eq!(AuthError::Missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            AuthError::Invalid("x".into()).status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            AuthError::Forbidden("x".into()).status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            AuthError::KeysUnavailable("x".into()).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
