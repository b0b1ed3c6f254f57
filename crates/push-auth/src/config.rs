//! What the service operator configures, and the checks that refuse a configuration which
//! would leave the push endpoint open or impossible to pass.
//!
//! The errors name the environment variables the `video-worker` binary reads, because the
//! person who sees a start-up failure fixes it in the deployment's environment, not in Rust.

use std::fmt;

use secrecy::SecretString;

/// Names of the environment variables the service reads this configuration from.
///
/// They live here, next to the checks whose errors quote them, so the binary that reads the
/// environment and the messages that tell an operator what to fix cannot drift apart.
pub mod env {
    /// The shared token accepted in `Authorization: Bearer` or `X-Proovy-Worker-Token`.
    pub const AUTH_TOKEN: &str = "VIDEO_WORKER_AUTH_TOKEN";
    /// The exact `aud` expected in Google-signed ID tokens (Cloud Tasks' `oidcToken.audience`).
    pub const OIDC_AUDIENCE: &str = "VIDEO_WORKER_OIDC_AUDIENCE";
    /// The service-account emails allowed to push.
    pub const OIDC_ALLOWED_EMAILS: &str = "VIDEO_WORKER_OIDC_ALLOWED_EMAILS";
    /// Where the signing keys (a JWKS document) are fetched from.
    pub const OIDC_JWKS_URL: &str = "VIDEO_WORKER_OIDC_JWKS_URL";
    /// The accepted `iss` values.
    pub const OIDC_ISSUERS: &str = "VIDEO_WORKER_OIDC_ISSUERS";
}

/// How Google-signed OIDC ID tokens (what Cloud Tasks sends with `oidcToken`) are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// The exact `aud` expected.
    pub audience: String,
    /// Service-account emails allowed to push (must not be empty). Compared ignoring ASCII
    /// case, as Google treats these addresses.
    pub allowed_emails: Vec<String>,
    /// Where the RS256 public keys are published; [`OidcConfig::GOOGLE_JWKS_URL`] in production.
    pub jwks_url: String,
    /// Accepted `iss` values; [`OidcConfig::google_issuers`] in production.
    pub issuers: Vec<String>,
}

impl OidcConfig {
    /// Google's JWKS document for the keys that sign its ID tokens.
    pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";

    /// The two spellings of Google's issuer that appear in its ID tokens.
    pub fn google_issuers() -> Vec<String> {
        vec![
            "https://accounts.google.com".to_owned(),
            "accounts.google.com".to_owned(),
        ]
    }

    /// A configuration for Google's production keys and issuers.
    pub fn google(audience: impl Into<String>, allowed_emails: Vec<String>) -> Self {
        Self {
            audience: audience.into(),
            allowed_emails,
            jwks_url: Self::GOOGLE_JWKS_URL.to_owned(),
            issuers: Self::google_issuers(),
        }
    }
}

/// Which ways of authenticating a push are enabled. At least one must be.
#[derive(Clone, Default)]
pub struct AuthConfig {
    /// A secret shared with the pusher. `None` disables the shared-token path.
    pub shared_token: Option<SecretString>,
    /// Google OIDC verification. `None` disables the OIDC path.
    pub oidc: Option<OidcConfig>,
}

// Hand-written so that printing the configuration at start-up (a common habit) never puts
// the shared secret in the logs.
impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field(
                "shared_token",
                &self.shared_token.as_ref().map(|_| "[redacted]"),
            )
            .field("oidc", &self.oidc)
            .finish()
    }
}

/// A configuration the service must refuse to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    /// Neither a shared token nor OIDC is configured: the endpoint would be open.
    #[error(
        "no push authentication configured: set VIDEO_WORKER_AUTH_TOKEN, or \
         VIDEO_WORKER_OIDC_AUDIENCE together with VIDEO_WORKER_OIDC_ALLOWED_EMAILS, or both"
    )]
    NothingConfigured,
    /// The shared token is present but empty (or only whitespace).
    #[error("VIDEO_WORKER_AUTH_TOKEN is set but empty")]
    EmptySharedToken,
    /// The shared token cannot be sent in an HTTP header as it is.
    #[error(
        "VIDEO_WORKER_AUTH_TOKEN must be visible ASCII without spaces, since it travels in an \
         HTTP header"
    )]
    MalformedSharedToken,
    /// OIDC is configured without an audience.
    #[error(
        "VIDEO_WORKER_OIDC_AUDIENCE is empty: set it to the audience Cloud Tasks puts in its \
         OIDC tokens"
    )]
    EmptyAudience,
    /// OIDC is configured without anyone allowed to push.
    #[error(
        "VIDEO_WORKER_OIDC_ALLOWED_EMAILS is empty: list the service-account emails allowed to \
         push"
    )]
    EmptyAllowList,
    /// An allow-list entry is not an email address.
    #[error("VIDEO_WORKER_OIDC_ALLOWED_EMAILS has an entry that is not an email address: {0:?}")]
    MalformedAllowedEmail(String),
    /// The JWKS URL is not an absolute http(s) URL.
    #[error("VIDEO_WORKER_OIDC_JWKS_URL is not an http(s) URL: {0:?}")]
    InvalidJwksUrl(String),
    /// No issuer (or a blank one) is configured.
    #[error(
        "VIDEO_WORKER_OIDC_ISSUERS is empty or has a blank entry: leave it unset for Google's \
         issuers"
    )]
    EmptyIssuers,
}

/// The checked form of [`OidcConfig`]: trimmed, allow-list lower-cased.
#[derive(Debug, Clone)]
pub(crate) struct CheckedOidc {
    pub(crate) audience: String,
    pub(crate) allowed_emails: Vec<String>,
    pub(crate) jwks_url: String,
    pub(crate) issuers: Vec<String>,
}

/// Checks the shared token; `Ok(None)` when it is not configured.
pub(crate) fn check_shared_token(token: Option<&str>) -> Result<Option<&str>, AuthConfigError> {
    let Some(token) = token else {
        return Ok(None);
    };
    if token.trim().is_empty() {
        return Err(AuthConfigError::EmptySharedToken);
    }
    // HTTP strips surrounding whitespace from header values and cannot carry control
    // characters, so such a token could never be matched: refuse it now, not at 3 a.m.
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AuthConfigError::MalformedSharedToken);
    }
    Ok(Some(token))
}

/// Checks and normalises the OIDC configuration.
pub(crate) fn check_oidc(config: &OidcConfig) -> Result<CheckedOidc, AuthConfigError> {
    let audience = config.audience.trim();
    if audience.is_empty() {
        return Err(AuthConfigError::EmptyAudience);
    }

    let mut allowed_emails = Vec::with_capacity(config.allowed_emails.len());
    for email in &config.allowed_emails {
        let email = email.trim();
        if email.is_empty() {
            continue;
        }
        if !looks_like_email(email) {
            return Err(AuthConfigError::MalformedAllowedEmail(email.to_owned()));
        }
        allowed_emails.push(email.to_ascii_lowercase());
    }
    // Blank entries (e.g. a trailing comma in the variable) are skipped above; a list with
    // nothing else in it would let no one in, which is a misconfiguration, not a policy.
    if allowed_emails.is_empty() {
        return Err(AuthConfigError::EmptyAllowList);
    }

    let jwks_url = config.jwks_url.trim();
    match reqwest::Url::parse(jwks_url) {
        Ok(url) if matches!(url.scheme(), "https" | "http") && url.host().is_some() => {}
        _ => return Err(AuthConfigError::InvalidJwksUrl(jwks_url.to_owned())),
    }

    if config.issuers.is_empty() || config.issuers.iter().any(|i| i.trim().is_empty()) {
        return Err(AuthConfigError::EmptyIssuers);
    }
    let issuers = config.issuers.iter().map(|i| i.trim().to_owned()).collect();

    Ok(CheckedOidc {
        audience: audience.to_owned(),
        allowed_emails,
        jwks_url: jwks_url.to_owned(),
        issuers,
    })
}

fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !s.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oidc() -> OidcConfig {
        OidcConfig::google("https://worker.example/jobs/run", vec!["a@b.iam".into()])
    }

    #[test]
    fn debug_output_redacts_the_shared_token() {
        let config = AuthConfig {
            shared_token: Some("s3cret-value".into()),
            oidc: None,
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("s3cret-value"), "{printed}");
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn shared_token_with_inner_space_is_refused() {
        assert_eq!(
            check_shared_token(Some("two words")),
            Err(AuthConfigError::MalformedSharedToken)
        );
    }

    #[test]
    fn allow_list_is_trimmed_lowercased_and_skips_blank_entries() {
        let mut config = oidc();
        config.allowed_emails = vec![" Pusher@Proj.IAM.gserviceaccount.com ".into(), "".into()];
        let checked = check_oidc(&config).unwrap();
        assert_eq!(
            checked.allowed_emails,
            vec!["pusher@proj.iam.gserviceaccount.com".to_owned()]
        );
    }

    #[test]
    fn allow_list_entry_without_at_sign_is_refused_by_name() {
        let mut config = oidc();
        config.allowed_emails = vec!["not-an-email".into()];
        let err = check_oidc(&config).unwrap_err();
        assert!(err.to_string().contains(env::OIDC_ALLOWED_EMAILS), "{err}");
    }

    #[test]
    fn jwks_url_must_be_http_or_https() {
        let mut config = oidc();
        config.jwks_url = "file:///etc/passwd".into();
        let err = check_oidc(&config).unwrap_err();
        assert!(err.to_string().contains(env::OIDC_JWKS_URL), "{err}");
        config.jwks_url = "not a url".into();
        assert!(matches!(
            check_oidc(&config),
            Err(AuthConfigError::InvalidJwksUrl(_))
        ));
    }

    #[test]
    fn blank_issuer_is_refused_by_name() {
        let mut config = oidc();
        config.issuers = vec![" ".into()];
        let err = check_oidc(&config).unwrap_err();
        assert!(err.to_string().contains(env::OIDC_ISSUERS), "{err}");
    }

    #[test]
    fn empty_audience_is_refused_by_name() {
        let mut config = oidc();
        config.audience = "  ".into();
        let err = check_oidc(&config).unwrap_err();
        assert!(err.to_string().contains(env::OIDC_AUDIENCE), "{err}");
    }
}
