//! What both authentication paths' tests need: an HTTP client for the authenticator and the
//! check that a result is a 401.

use http::StatusCode;
use push_auth::{AuthError, Caller};

/// The authenticator's client. Loopback only: never route the tests' JWKS fetches through a
/// proxy from the environment.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Refused with 401, for whatever reason.
pub fn assert_invalid(result: Result<Caller, AuthError>) {
    match result {
        Err(error @ AuthError::Invalid(_)) => assert_eq!(error.status(), StatusCode::UNAUTHORIZED),
        other => panic!("expected Invalid (401), got {other:?}"),
    }
}
