//! Authentication of queue pushes: who may call the worker's push endpoint.
//!
//! Two ways in, either of which may be enabled (and at least one must be, outside `demo`):
//!
//! - **Shared token** — a secret sent as `Authorization: Bearer <token>` or
//!   `X-Proovy-Worker-Token: <token>`, compared in constant time (module `shared`).
//! - **Google OIDC** — the ID token Cloud Tasks attaches with `oidcToken`, verified in the
//!   app against Google's published keys: RS256 only, exact audience, known issuer, fresh,
//!   and minted for an allowed, verified service-account email (modules `oidc`, `jwks`).
//!
//! Verifying in the app, rather than trusting a fronting proxy or Cloud Run IAM, keeps the
//! worker safe wherever it is deployed; the cost is a cached key fetch now and then.
//!
//! Everything a request carries is untrusted: any malformed input is an [`AuthError`], never
//! a panic, and tokens are never logged.

mod config;
mod error;
mod headers;
mod jwks;
mod oidc;
mod shared;

use secrecy::ExposeSecret;
use std::sync::Arc;

use http::HeaderMap;

pub use config::{AuthConfig, AuthConfigError, OidcConfig, env};
pub use error::AuthError;
pub use headers::WORKER_TOKEN_HEADER;

use oidc::OidcVerifier;
use shared::SharedToken;

/// Who made an accepted push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The request carried the shared token.
    SharedToken,
    /// The request carried a valid Google ID token for this allowed service account.
    ServiceAccount {
        /// The service account's email, as written in the token.
        email: String,
    },
    /// Authentication is disabled ([`Authenticator::disabled`], the `demo` command only).
    Unauthenticated,
}

/// Checks the credentials of incoming pushes. Cheap to clone: the state is shared.
#[derive(Debug, Clone)]
pub struct Authenticator {
    /// `None` when disabled: there is nothing to check with.
    enabled: Option<Arc<Enabled>>,
}

/// The enabled checks; at least one is `Some` (enforced by [`Authenticator::new`]).
#[derive(Debug)]
struct Enabled {
    shared: Option<SharedToken>,
    oidc: Option<OidcVerifier>,
}

impl Authenticator {
    /// Checks `config` and builds an authenticator from it. `http` is used to fetch the
    /// OIDC signing keys (each fetch gets its own 5 s timeout).
    ///
    /// Errors, naming the environment variable to fix, when neither a shared token nor OIDC
    /// is configured, when the shared token is empty, or when OIDC has an empty audience, an
    /// empty allow-list, a non-http(s) JWKS URL or no issuers. No network access happens
    /// here: keys are fetched on first use, so start-up does not depend on Google.
    pub fn new(config: AuthConfig, http: reqwest::Client) -> Result<Self, AuthConfigError> {
        let shared = config::check_shared_token(
            config
                .shared_token
                .as_ref()
                .map(ExposeSecret::expose_secret),
        )?;
        let oidc = config.oidc.as_ref().map(config::check_oidc).transpose()?;
        if shared.is_none() && oidc.is_none() {
            return Err(AuthConfigError::NothingConfigured);
        }
        Ok(Self {
            enabled: Some(Arc::new(Enabled {
                shared: shared.map(SharedToken::new),
                oidc: oidc.map(|checked| OidcVerifier::new(checked, http)),
            })),
        })
    }

    /// Accepts everything: for the `demo` command only.
    pub fn disabled() -> Self {
        Self { enabled: None }
    }

    /// Whether this authenticator accepts every request.
    pub fn is_disabled(&self) -> bool {
        self.enabled.is_none()
    }

    /// Decides whether the request with these headers may push.
    ///
    /// Order: a Bearer value whose signature segment is Google's
    /// `SIGNATURE_REMOVED_BY_GOOGLE` is refused outright; then the shared token is tried on
    /// both headers; then a JWT-shaped Bearer value goes to OIDC, whose verdict (including
    /// 403 and 503) is the answer; otherwise the request is refused as missing or invalid.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, AuthError> {
        let Some(enabled) = self.enabled.as_deref() else {
            return Ok(Caller::Unauthenticated);
        };
        let presented = headers::extract(headers);
        let result = decide(enabled.shared.as_ref(), enabled.oidc.as_ref(), &presented).await;
        if let Err(error) = &result {
            // The reason only: fixed strings from this crate, never the credential.
            tracing::debug!(%error, "push authentication refused");
        }
        result
    }
}

async fn decide(
    shared: Option<&SharedToken>,
    oidc: Option<&OidcVerifier>,
    presented: &headers::Presented<'_>,
) -> Result<Caller, AuthError> {
    if let Some(bearer) = presented.bearer
        && oidc::has_removed_signature(bearer)
    {
        return Err(AuthError::invalid("token signature was removed"));
    }

    if let Some(shared) = shared {
        // Both candidates are compared even when the first matches; which one matched is no
        // secret, and it keeps the code free of early exits that depend on the secret.
        let by_header = presented.worker_token.is_some_and(|t| shared.matches(t));
        let by_bearer = presented.bearer.is_some_and(|t| shared.matches(t));
        if by_header || by_bearer {
            return Ok(Caller::SharedToken);
        }
    }

    if let Some(bearer) = presented.bearer.filter(|b| oidc::looks_like_jwt(b)) {
        return match oidc {
            Some(oidc) => oidc.verify(bearer).await,
            None => Err(AuthError::invalid(
                "bearer token is not the shared token (OIDC is not enabled)",
            )),
        };
    }

    if presented.is_empty() {
        return Err(AuthError::Missing);
    }
    if let Some(why) = presented.unusable {
        return Err(AuthError::invalid(why));
    }
    if shared.is_none() && presented.worker_token.is_some() {
        return Err(AuthError::invalid(
            "shared-token authentication is not enabled",
        ));
    }
    if shared.is_some() {
        return Err(AuthError::invalid("shared token does not match"));
    }
    Err(AuthError::invalid("malformed bearer token"))
}
