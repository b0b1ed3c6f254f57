//! Idempotent creates: the `Idempotency-Key` header, how long a key is remembered, and the
//! fingerprint that tells a retried request from a different one.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use domain::IdempotencyKey;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// How long an `Idempotency-Key` is remembered: a retry within this answers the first job.
/// Longer than any client's retry loop; after it the key may be purged and reused.
pub const IDEMPOTENCY_KEY_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The header of an idempotent create.
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Set to `true` on the answer to a create that found its job made by an earlier call.
pub(crate) const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// The create's `Idempotency-Key`, if sent. A malformed one is a malformed request (400),
/// like a body that is not JSON: the key is checked before the body is read.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let invalid = |reason: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            format!("Idempotency-Key: {reason}"),
        )
        .field("Idempotency-Key", reason)
    };
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid("send exactly one"));
    }
    let text = value.to_str().map_err(|_| {
        invalid("only visible ASCII characters (! to ~), no spaces or control characters")
    })?;
    IdempotencyKey::new(text)
        .map(Some)
        .map_err(|e| invalid(&e.reason))
}

/// What tells a retried create from a different one: SHA-256 of a version tag and the
/// canonical JSON of the parsed request `{"storyboard": …}` — object keys sorted by their
/// UTF-8 bytes, no whitespace, strings and numbers as serde_json writes them. Two bodies that
/// differ only in whitespace, key order or string escapes are the same request; any other
/// difference (a value, an added field, `1` against `1.0`) makes another.
pub fn request_fingerprint(storyboard: &serde_json::Value) -> [u8; 32] {
    let mut canonical = Vec::with_capacity(1024);
    canonical.extend_from_slice(b"{\"storyboard\":");
    write_canonical(storyboard, &mut canonical);
    canonical.push(b'}');
    let mut hash = Sha256::new();
    // The version tag: a change of the rule above must change every fingerprint.
    hash.update(b"video-worker create v1\n");
    hash.update(&canonical);
    hash.finalize().into()
}

pub(crate) fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(key.clone()).to_string().as_bytes());
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        // Display writes a scalar as compact JSON.
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_fingerprint_ignores_whitespace_and_key_order_but_not_values() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"title": "A", "frame": {"w": 1, "h": 2}, "s": [1, "x"]}"#)
                .unwrap();
        let b: serde_json::Value = serde_json::from_str(
            "{\"s\":[1,\"\\u0078\"],\"frame\":{\"h\":2,\"w\":1},\n \"title\":\"A\"}",
        )
        .unwrap();
        assert_eq!(request_fingerprint(&a), request_fingerprint(&b));
        for other in [
            r#"{"title": "B", "frame": {"w": 1, "h": 2}, "s": [1, "x"]}"#,
            r#"{"title": "A", "frame": {"w": 1, "h": 2}, "s": ["x", 1]}"#,
            r#"{"title": "A", "frame": {"w": 1.0, "h": 2}, "s": [1, "x"]}"#,
            r#"{"title": "A", "frame": {"w": 1, "h": 2}, "s": [1, "x"], "extra": null}"#,
            r#"{"title": "A", "frame": {"w": 1, "h": 2, "x": {}}, "s": [1, "x"]}"#,
        ] {
            let other: serde_json::Value = serde_json::from_str(other).unwrap();
            assert_ne!(
                request_fingerprint(&a),
                request_fingerprint(&other),
                "{other}"
            );
        }
    }

    #[test]
    fn a_malformed_idempotency_key_is_a_bad_request() {
        let with = |values: &[&[u8]]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(IDEMPOTENCY_KEY, HeaderValue::from_bytes(v).unwrap());
            }
            idempotency_key(&headers)
        };
        assert!(with(&[]).unwrap().is_none());
        assert_eq!(with(&[b"order-42"]).unwrap().unwrap().as_str(), "order-42");
        let long = vec![b'k'; 256];
        for bad in [
            &[&b""[..]][..],
            &[&long[..]],
            &[b"two words"],
            &[b"caf\xc3\xa9"],
            &[b"one", b"two"],
        ] {
            let e = with(bad).unwrap_err();
            assert_eq!(
                (e.0, e.1.error.as_str()),
                (StatusCode::BAD_REQUEST, "invalid_idempotency_key"),
                "{bad:?}"
            );
        }
    }
}
