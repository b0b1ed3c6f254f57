//! The shared-token path, the configuration checks, and the disabled (`demo`) mode.

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use push_auth::{AuthConfig, AuthConfigError, AuthError, Authenticator, Caller, OidcConfig, env};

use crate::common::{assert_invalid, http_client};

const TOKEN: &str = "s3cret-shared-token-0123456789";

fn shared_only() -> Authenticator {
    Authenticator::new(
        AuthConfig {
            shared_token: Some(TOKEN.into()),
            oidc: None,
        },
        http_client(),
    )
    .unwrap()
}

fn oidc_config() -> OidcConfig {
    OidcConfig {
        audience: "https://worker.example.test/jobs/run".to_owned(),
        allowed_emails: vec!["pusher@proj.iam.gserviceaccount.com".to_owned()],
        // Never fetched in these tests: nothing here reaches the OIDC path's key lookup.
        jwks_url: "http://127.0.0.1:9/certs".to_owned(),
        issuers: OidcConfig::google_issuers(),
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

#[tokio::test]
async fn shared_token_as_bearer_is_accepted() {
    let result = shared_only()
        .authenticate(&headers(&[("authorization", &format!("Bearer {TOKEN}"))]))
        .await;
    assert_eq!(result.unwrap(), Caller::SharedToken);
}

#[tokio::test]
async fn shared_token_in_worker_token_header_is_accepted() {
    let result = shared_only()
        .authenticate(&headers(&[("x-proovy-worker-token", TOKEN)]))
        .await;
    assert_eq!(result.unwrap(), Caller::SharedToken);
}

#[tokio::test]
async fn header_names_and_bearer_scheme_in_odd_case_are_accepted() {
    let auth = shared_only();
    let bearer = format!("bEARER {TOKEN}");
    let cases = [
        ("AuThOrIzAtIoN", bearer.as_str()),
        ("AUTHORIZATION", bearer.as_str()),
        ("X-PROOVY-WORKER-TOKEN", TOKEN),
        ("x-Proovy-Worker-Token", TOKEN),
    ];
    for (name, value) in cases {
        let result = auth.authenticate(&headers(&[(name, value)])).await;
        assert_eq!(result.unwrap(), Caller::SharedToken, "{name}");
    }
}

#[tokio::test]
async fn wrong_shared_token_is_refused_in_either_header() {
    let auth = shared_only();
    let near_misses = [
        "wrong".to_owned(),
        TOKEN[..TOKEN.len() - 1].to_owned(),
        format!("{TOKEN}x"),
        TOKEN.to_uppercase(),
    ];
    for attempt in &near_misses {
        assert_invalid(
            auth.authenticate(&headers(&[("authorization", &format!("Bearer {attempt}"))]))
                .await,
        );
        assert_invalid(
            auth.authenticate(&headers(&[("x-proovy-worker-token", attempt)]))
                .await,
        );
    }
}

#[tokio::test]
async fn shared_token_under_another_scheme_is_refused() {
    let auth = shared_only();
    assert_invalid(
        auth.authenticate(&headers(&[("authorization", &format!("Basic {TOKEN}"))]))
            .await,
    );
    assert_invalid(
        auth.authenticate(&headers(&[("authorization", TOKEN)]))
            .await,
    );
}

#[tokio::test]
async fn good_worker_token_passes_despite_an_unusable_authorization_header() {
    let result = shared_only()
        .authenticate(&headers(&[
            ("authorization", "Basic dXNlcjpwYXNz"),
            ("x-proovy-worker-token", TOKEN),
        ]))
        .await;
    assert_eq!(result.unwrap(), Caller::SharedToken);
}

#[tokio::test]
async fn duplicated_credential_header_is_refused() {
    let result = shared_only()
        .authenticate(&headers(&[
            ("x-proovy-worker-token", TOKEN),
            ("x-proovy-worker-token", "other"),
        ]))
        .await;
    assert_invalid(result);
}

#[tokio::test]
async fn missing_credentials_are_reported_as_missing() {
    let auth = shared_only();
    for map in [
        HeaderMap::new(),
        headers(&[
            ("content-type", "application/json"),
            ("x-cloudtasks-taskname", "t1"),
        ]),
    ] {
        match auth.authenticate(&map).await {
            Err(error @ AuthError::Missing) => assert_eq!(error.status(), StatusCode::UNAUTHORIZED),
            other => panic!("expected Missing, got {other:?}"),
        }
    }
    let oidc_only = Authenticator::new(
        AuthConfig {
            shared_token: None,
            oidc: Some(oidc_config()),
        },
        http_client(),
    )
    .unwrap();
    assert!(matches!(
        oidc_only.authenticate(&HeaderMap::new()).await,
        Err(AuthError::Missing)
    ));
}

#[tokio::test]
async fn empty_credential_values_are_invalid_not_missing() {
    let auth = shared_only();
    for map in [
        headers(&[("authorization", "Bearer ")]),
        headers(&[("authorization", "")]),
        headers(&[("x-proovy-worker-token", "")]),
    ] {
        assert_invalid(auth.authenticate(&map).await);
    }
}

#[tokio::test]
async fn non_ascii_header_bytes_are_refused_without_panicking() {
    let mut map = HeaderMap::new();
    map.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_bytes(b"Bearer \xe2\x82\xac\xff").unwrap(),
    );
    assert_invalid(shared_only().authenticate(&map).await);
}

#[tokio::test]
async fn jwt_shaped_bearer_is_refused_when_only_the_shared_token_is_enabled() {
    let result = shared_only()
        .authenticate(&headers(&[("authorization", "Bearer aaa.bbb.ccc")]))
        .await;
    assert_invalid(result);
}

#[tokio::test]
async fn worker_token_header_is_refused_when_only_oidc_is_enabled() {
    let auth = Authenticator::new(
        AuthConfig {
            shared_token: None,
            oidc: Some(oidc_config()),
        },
        http_client(),
    )
    .unwrap();
    assert_invalid(
        auth.authenticate(&headers(&[("x-proovy-worker-token", TOKEN)]))
            .await,
    );
    // An opaque (non-JWT) bearer value is refused without a key lookup.
    assert_invalid(
        auth.authenticate(&headers(&[("authorization", "Bearer opaque-value")]))
            .await,
    );
}

#[tokio::test]
async fn disabled_authenticator_accepts_everything() {
    let auth = Authenticator::disabled();
    assert!(auth.is_disabled());
    assert!(!shared_only().is_disabled());
    assert_eq!(
        auth.authenticate(&HeaderMap::new()).await.unwrap(),
        Caller::Unauthenticated
    );
    assert_eq!(
        auth.authenticate(&headers(&[("authorization", "Bearer junk")]))
            .await
            .unwrap(),
        Caller::Unauthenticated
    );
}

#[test]
fn authenticator_debug_output_does_not_reveal_the_shared_token() {
    let printed = format!("{:?}", shared_only());
    assert!(!printed.contains(TOKEN), "{printed}");
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

fn config_error(config: AuthConfig) -> AuthConfigError {
    Authenticator::new(config, http_client()).unwrap_err()
}

#[test]
fn nothing_configured_is_refused_naming_the_variables() {
    let error = config_error(AuthConfig::default());
    assert_eq!(error, AuthConfigError::NothingConfigured);
    let message = error.to_string();
    assert!(message.contains(env::AUTH_TOKEN), "{message}");
    assert!(message.contains(env::OIDC_AUDIENCE), "{message}");
    assert!(message.contains(env::OIDC_ALLOWED_EMAILS), "{message}");
}

#[test]
fn empty_shared_token_is_refused_naming_the_variable() {
    for token in ["", "   "] {
        let error = config_error(AuthConfig {
            shared_token: Some(token.into()),
            oidc: None,
        });
        assert_eq!(error, AuthConfigError::EmptySharedToken);
        assert!(error.to_string().contains("VIDEO_WORKER_AUTH_TOKEN"));
    }
}

#[test]
fn empty_allow_list_is_refused_naming_the_variable() {
    for emails in [vec![], vec![String::new(), " ".to_owned()]] {
        let mut oidc = oidc_config();
        oidc.allowed_emails = emails;
        let error = config_error(AuthConfig {
            shared_token: Some(TOKEN.into()),
            oidc: Some(oidc),
        });
        assert_eq!(error, AuthConfigError::EmptyAllowList);
        assert!(
            error
                .to_string()
                .contains("VIDEO_WORKER_OIDC_ALLOWED_EMAILS")
        );
    }
}

#[test]
fn empty_audience_is_refused_naming_the_variable() {
    let mut oidc = oidc_config();
    oidc.audience = String::new();
    let error = config_error(AuthConfig {
        shared_token: None,
        oidc: Some(oidc),
    });
    assert_eq!(error, AuthConfigError::EmptyAudience);
    assert!(error.to_string().contains("VIDEO_WORKER_OIDC_AUDIENCE"));
}

#[test]
fn bad_jwks_url_and_issuers_are_refused_naming_the_variables() {
    let mut oidc = oidc_config();
    oidc.jwks_url = "ftp://example.com/certs".to_owned();
    let error = config_error(AuthConfig {
        shared_token: None,
        oidc: Some(oidc),
    });
    assert!(error.to_string().contains("VIDEO_WORKER_OIDC_JWKS_URL"));

    let mut oidc = oidc_config();
    oidc.issuers = vec![];
    let error = config_error(AuthConfig {
        shared_token: None,
        oidc: Some(oidc),
    });
    assert!(error.to_string().contains("VIDEO_WORKER_OIDC_ISSUERS"));
}

#[test]
fn google_defaults_are_the_documented_ones() {
    assert_eq!(
        OidcConfig::GOOGLE_JWKS_URL,
        "https://www.googleapis.com/oauth2/v3/certs"
    );
    assert_eq!(
        OidcConfig::google_issuers(),
        vec!["https://accounts.google.com", "accounts.google.com"]
    );
    let config = OidcConfig::google("aud", vec!["a@b.c".to_owned()]);
    assert_eq!(config.jwks_url, OidcConfig::GOOGLE_JWKS_URL);
    assert_eq!(config.issuers, OidcConfig::google_issuers());
}
