//! Google OIDC on the push endpoint, through the real router: a Cloud Tasks token of an
//! allowed service account runs the job; any other token is refused before the database is
//! touched (403 for a valid token of a service account not allowed, 401 otherwise).

use std::process::Command;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::common::{AppOptions, Counting, TestApp, new_job, quick, read, runner_config};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::{JobId, JobStatus};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

const AUDIENCE: &str = "https://worker.example.test";
const PUSHER: &str = "video-queue@project.iam.gserviceaccount.com";

fn key() -> rsa::RsaPrivateKey {
    let pem = Command::new("openssl")
        .args(["genrsa", "2048"])
        .output()
        .ok()
        .filter(|o| o.status.success());
    pem.and_then(|o| rsa::RsaPrivateKey::from_pkcs1_pem(&String::from_utf8_lossy(&o.stdout)).ok())
        .unwrap_or_else(|| rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap())
}

async fn jwks_server(jwks: Value) -> String {
    let app = axum::Router::new().route(
        "/certs",
        axum::routing::get(move || async move { axum::Json(jwks) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://127.0.0.1:{port}/certs")
}

fn token(encoding: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    jsonwebtoken::encode(&header, claims, encoding).unwrap()
}

fn claims(email: &str, aud: &str, exp_in: i64) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    json!({"iss": "https://accounts.google.com", "aud": aud, "email": email, "email_verified": true,
           "exp": now + exp_in, "iat": now - 5, "sub": "1"})
}

#[tokio::test]
async fn only_an_allowed_service_accounts_token_runs_a_job() {
    let private = key();
    let public = private.to_public_key();
    let jwks = json!({"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "k1",
        "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be())}]});
    let jwks_url = jwks_server(jwks).await;
    let auth = push_auth::Authenticator::new(
        push_auth::AuthConfig {
            shared_token: None,
            oidc: Some(push_auth::OidcConfig {
                audience: AUDIENCE.into(),
                allowed_emails: vec![PUSHER.into()],
                jwks_url,
                issuers: push_auth::OidcConfig::google_issuers(),
            }),
        },
        reqwest::Client::new(),
    )
    .unwrap();
    let repo = Counting::new(Arc::new(repo_mem::MemRepository::new()));
    let app = TestApp::spawn_with(
        repo.clone(),
        quick(),
        AppOptions {
            runner: runner_config("w"),
            listen_for_cancels: false,
            auth,
            ..AppOptions::default()
        },
    )
    .await;
    let encoding = EncodingKey::from_rsa_der(private.to_pkcs1_der().unwrap().as_bytes());
    let push = |bearer: String, id: JobId| {
        app.client
            .post(format!("{}/jobs/run", app.base))
            .bearer_auth(bearer)
            .body(json!({ "job_id": id }).to_string())
            .send()
    };

    let id = new_job(repo.inner.as_ref(), json!({})).await;
    let refused = [
        (
            token(
                &encoding,
                &claims(
                    "someone-else@project.iam.gserviceaccount.com",
                    AUDIENCE,
                    600,
                ),
            ),
            403,
        ),
        (
            token(
                &encoding,
                &claims(PUSHER, "https://another.example.test", 600),
            ),
            401,
        ),
        (token(&encoding, &claims(PUSHER, AUDIENCE, -3600)), 401),
        (crate::common::TOKEN.to_owned(), 401),
    ];
    let before = repo.calls();
    for (bearer, code) in refused {
        let (status, body, _) = read(push(bearer, id).await.unwrap()).await;
        assert_eq!(status, code, "{body}");
    }
    assert_eq!(
        repo.calls(),
        before,
        "refused pushes never reach the database"
    );
    assert_eq!(
        repo.inner.get(id).await.unwrap().unwrap().status,
        JobStatus::Queued
    );

    let (status, body, _) = read(
        push(token(&encoding, &claims(PUSHER, AUDIENCE, 600)), id)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("succeeded")),
        "{body}"
    );
}
