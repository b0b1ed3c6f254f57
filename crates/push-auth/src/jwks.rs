//! The cache of Google's signing keys (a JWKS document), and when it may be refreshed.
//!
//! Policy, and why:
//! - Keys are kept for the response's `Cache-Control: max-age` (minus `Age`), one hour if
//!   absent, clamped to [1 s, 24 h]: Google announces new keys well before signing with
//!   them, so honouring its cache lifetime is both correct and cheap.
//! - A token with an unknown `kid` while the keys are fresh may mean a rotation we have not
//!   seen, so it triggers one refetch — but at most one a minute: otherwise anyone could make
//!   us hammer the JWKS endpoint by sending made-up `kid`s. Past that, an unknown `kid` is
//!   simply refused (401) without a fetch.
//! - A failed fetch never throws keys away: the old ones keep verifying tokens (Google's
//!   keys stay valid long after rotation), and a new attempt is made no sooner than
//!   `FAILED_FETCH_BACKOFF` (5 s) later so an outage of the endpoint is not made worse by us.
//! - Fetches are single-flight: one task fetches while the others wait on a
//!   `tokio::sync::Mutex`, and a waiter that sees an attempt completed while it waited
//!   uses that outcome instead of fetching again, so a burst of requests is one fetch.
//! - Readers never wait on the network: the current keys sit behind a `std::sync::Mutex`
//!   held only to clone or swap an `Arc` (never across an `.await`), the arc-swap pattern.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::HeaderMap;
use http::header::{AGE, CACHE_CONTROL};
use jsonwebtoken::DecodingKey;
use serde::Deserialize;

/// Longest a JWKS fetch may take, connection to last byte.
pub(crate) const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Cache lifetime when the response does not state one.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(60 * 60);
/// Shortest cache lifetime honoured: a `max-age=0` must not make every request a fetch.
pub(crate) const MIN_TTL: Duration = Duration::from_secs(1);
/// Longest cache lifetime honoured, so a bogus huge `max-age` cannot pin keys for ever.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// At most one refetch per this interval is triggered by unknown `kid`s.
pub(crate) const UNKNOWN_KID_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// After a failed fetch, no new attempt for this long.
pub(crate) const FAILED_FETCH_BACKOFF: Duration = Duration::from_secs(5);
/// A JWKS document is a few KiB; refuse to buffer more than this.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Why no key could be produced for a `kid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyError {
    /// The keys are as fresh as we may make them and none has this `kid`.
    UnknownKid,
    /// The last fetch failed and no cached key has this `kid`.
    Unavailable(String),
}

/// One immutable view of the cache; replaced whole after every fetch attempt.
#[derive(Clone, Default)]
struct Snapshot {
    keys: Arc<HashMap<String, DecodingKey>>,
    /// `None` until a fetch has succeeded.
    expires_at: Option<Instant>,
    /// The last attempt's failure, cleared by a success.
    last_failure: Option<(Instant, String)>,
    last_unknown_kid_refetch: Option<Instant>,
    /// Counts fetch attempts, so a waiter can tell that one happened while it waited.
    attempts: u64,
}

impl Snapshot {
    fn is_fresh(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| now < at)
    }

    fn failed_recently(&self, now: Instant) -> bool {
        self.last_failure
            .as_ref()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) < FAILED_FETCH_BACKOFF)
    }

    fn refetched_for_unknown_kid_recently(&self, now: Instant) -> bool {
        self.last_unknown_kid_refetch
            .is_some_and(|at| now.saturating_duration_since(at) < UNKNOWN_KID_REFETCH_INTERVAL)
    }

    /// The answer from what is cached, without fetching. A cached key is used even when
    /// stale: an old Google key still verifies what it signed.
    fn resolve(&self, kid: &str) -> Result<DecodingKey, KeyError> {
        if let Some(key) = self.keys.get(kid) {
            return Ok(key.clone());
        }
        match &self.last_failure {
            Some((_, why)) => Err(KeyError::Unavailable(why.clone())),
            None => Err(KeyError::UnknownKid),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// Nothing loaded yet, or the cache lifetime ran out.
    Expired,
    /// Fresh keys, but a token named a `kid` they lack.
    UnknownKid,
}

/// The signing keys of one JWKS URL.
pub(crate) struct KeyCache {
    http: reqwest::Client,
    url: String,
    current: Mutex<Arc<Snapshot>>,
    fetching: tokio::sync::Mutex<()>,
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCache")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl KeyCache {
    pub(crate) fn new(http: reqwest::Client, url: String) -> Self {
        Self {
            http,
            url,
            current: Mutex::new(Arc::new(Snapshot::default())),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        // The lock only guards an Arc clone, so a poisoned lock still holds a whole value.
        Arc::clone(&self.current.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn store(&self, snapshot: Snapshot) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(snapshot);
    }

    /// The key for `kid`, fetching the JWKS first if the policy above allows and requires.
    pub(crate) async fn key(&self, kid: &str) -> Result<DecodingKey, KeyError> {
        let seen = self.snapshot();
        if seen.is_fresh(Instant::now())
            && let Some(key) = seen.keys.get(kid)
        {
            return Ok(key.clone());
        }

        let _single_flight = self.fetching.lock().await;
        let current = self.snapshot();
        if current.attempts != seen.attempts {
            // Someone fetched while we waited: their outcome is as new as ours would be.
            return current.resolve(kid);
        }
        let now = Instant::now();
        let reason = if !current.is_fresh(now) {
            if current.failed_recently(now) {
                return current.resolve(kid);
            }
            Reason::Expired
        } else {
            if current.refetched_for_unknown_kid_recently(now) {
                return current.resolve(kid);
            }
            Reason::UnknownKid
        };
        self.refresh(&current, reason).await;
        self.snapshot().resolve(kid)
    }

    /// One fetch attempt; its outcome replaces the snapshot. Called with the single-flight
    /// lock held. If the caller is cancelled mid-fetch nothing is stored and the lock is
    /// released, so the next waiter simply tries again.
    async fn refresh(&self, current: &Snapshot, reason: Reason) {
        let started = Instant::now();
        let outcome = self.fetch().await;
        let mut next = current.clone();
        next.attempts = next.attempts.wrapping_add(1);
        if reason == Reason::UnknownKid {
            next.last_unknown_kid_refetch = Some(started);
        }
        match outcome {
            Ok((keys, ttl)) => {
                tracing::debug!(
                    keys = keys.len(),
                    ttl_secs = ttl.as_secs(),
                    ?reason,
                    "fetched OIDC signing keys"
                );
                next.keys = Arc::new(keys);
                next.expires_at = Some(Instant::now() + ttl);
                next.last_failure = None;
            }
            Err(why) => {
                tracing::warn!(
                    error = %why,
                    ?reason,
                    cached_keys = next.keys.len(),
                    "could not fetch OIDC signing keys; keeping the cached ones"
                );
                next.last_failure = Some((Instant::now(), why));
            }
        }
        self.store(next);
    }

    async fn fetch(&self) -> Result<(HashMap<String, DecodingKey>, Duration), String> {
        let mut response = self
            .http
            .get(&self.url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("JWKS request failed: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("JWKS endpoint answered {status}"));
        }
        let ttl = cache_ttl(response.headers());
        if response
            .content_length()
            .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
        {
            return Err("JWKS document too large".to_owned());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading the JWKS failed: {e}"))?
        {
            if body.len().saturating_add(chunk.len()) > MAX_JWKS_BYTES {
                return Err("JWKS document too large".to_owned());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((parse_jwks(&body)?, ttl))
    }
}

/// How long a JWKS response may be cached, from its `Cache-Control` and `Age` headers.
pub(crate) fn cache_ttl(headers: &HeaderMap) -> Duration {
    let max_age = headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|directive| {
            let (name, value) = directive.trim().split_once('=')?;
            if name.trim().eq_ignore_ascii_case("max-age") {
                value.trim().trim_matches('"').parse::<u64>().ok()
            } else {
                None
            }
        });
    let Some(max_age) = max_age else {
        return DEFAULT_TTL;
    };
    // `Age` is how long a shared cache already held the response.
    let age = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_secs(max_age.saturating_sub(age)).clamp(MIN_TTL, MAX_TTL)
}

#[derive(Deserialize)]
struct JwksDocument {
    keys: Vec<serde_json::Value>,
}

/// The fields of a JWK we look at; everything optional so one odd key cannot spoil the set.
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

/// The RS256 signing keys of a JWKS document, by `kid`. Keys of other types or uses are
/// skipped rather than failing the document, since only RS256 is ever accepted anyway; a
/// document with no usable key at all is an error, so it cannot replace good cached keys.
pub(crate) fn parse_jwks(body: &[u8]) -> Result<HashMap<String, DecodingKey>, String> {
    let document: JwksDocument =
        serde_json::from_slice(body).map_err(|e| format!("JWKS is not valid JSON: {e}"))?;
    let mut keys = HashMap::new();
    for value in document.keys {
        let Ok(jwk) = serde_json::from_value::<RawJwk>(value) else {
            continue;
        };
        let (Some(kid), Some(n), Some(e)) = (jwk.kid, jwk.n, jwk.e) else {
            continue;
        };
        let usable = jwk.kty.as_deref() == Some("RSA")
            && jwk.alg.as_deref().is_none_or(|alg| alg == "RS256")
            && jwk.usage.as_deref().is_none_or(|usage| usage == "sig")
            && !kid.is_empty();
        if !usable {
            continue;
        }
        if let Ok(key) = DecodingKey::from_rsa_components(&n, &e) {
            keys.entry(kid).or_insert(key);
        }
    }
    if keys.is_empty() {
        return Err("JWKS has no usable RS256 key".to_owned());
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_cache_control(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CACHE_CONTROL, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn ttl_follows_max_age() {
        let headers = with_cache_control("public, max-age=19970, must-revalidate, no-transform");
        assert_eq!(cache_ttl(&headers), Duration::from_secs(19970));
    }

    #[test]
    fn ttl_subtracts_age() {
        let mut headers = with_cache_control("max-age=100");
        headers.insert(AGE, HeaderValue::from_static("40"));
        assert_eq!(cache_ttl(&headers), Duration::from_secs(60));
    }

    #[test]
    fn ttl_defaults_to_an_hour_without_max_age() {
        assert_eq!(cache_ttl(&HeaderMap::new()), DEFAULT_TTL);
        assert_eq!(cache_ttl(&with_cache_control("no-cache")), DEFAULT_TTL);
        assert_eq!(cache_ttl(&with_cache_control("max-age=soon")), DEFAULT_TTL);
    }

    #[test]
    fn ttl_is_clamped() {
        assert_eq!(cache_ttl(&with_cache_control("max-age=0")), MIN_TTL);
        assert_eq!(
            cache_ttl(&with_cache_control("max-age=99999999999")),
            MAX_TTL
        );
    }

    #[test]
    fn jwks_parsing_keeps_only_rs256_signing_keys() {
        let body = serde_json::json!({
            "keys": [
                {"kty": "RSA", "kid": "good", "alg": "RS256", "use": "sig", "n": "AQAB", "e": "AQAB"},
                {"kty": "RSA", "kid": "no-alg", "n": "AQAB", "e": "AQAB"},
                {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
                {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": "AQAB", "e": "AQAB"},
                {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
                {"kty": "RSA", "kid": 7, "n": "AQAB", "e": "AQAB"},
                {"kty": "RSA", "kid": "bad-b64", "n": "!!!", "e": "AQAB"},
                "not even an object"
            ]
        });
        let keys = parse_jwks(body.to_string().as_bytes()).unwrap();
        let mut kids: Vec<_> = keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, vec!["good".to_owned(), "no-alg".to_owned()]);
    }

    #[test]
    fn jwks_without_usable_keys_is_an_error() {
        assert!(parse_jwks(br#"{"keys": []}"#).is_err());
        assert!(parse_jwks(b"<html>").is_err());
        assert!(parse_jwks(br#"{"keys": "nope"}"#).is_err());
    }

    #[test]
    fn stale_cached_key_is_still_resolved() {
        let mut keys = HashMap::new();
        keys.insert(
            "k".to_owned(),
            DecodingKey::from_rsa_raw_components(&[1], &[1]),
        );
        let snapshot = Snapshot {
            keys: Arc::new(keys),
            expires_at: None,
            last_failure: Some((Instant::now(), "down".into())),
            ..Snapshot::default()
        };
        assert!(snapshot.resolve("k").is_ok());
        assert_eq!(
            snapshot.resolve("other").err(),
            Some(KeyError::Unavailable("down".into()))
        );
    }
}
