//! Reading credentials out of request headers, without trusting anything about them.
//!
//! Header *names* are case-insensitive by construction (`http::HeaderMap` lower-cases them);
//! the `Bearer` scheme is matched ignoring case too, as RFC 9110 says auth schemes are. A
//! header sent twice is ambiguous — which copy would a proxy in front of us have checked? —
//! so it is treated as unusable rather than picking one.

use http::HeaderMap;
use http::header::{AUTHORIZATION, HeaderName};

/// The header carrying the shared token when `Authorization` is used for something else.
pub const WORKER_TOKEN_HEADER: &str = "x-proovy-worker-token";

/// What a request presented, borrowed from its headers.
#[derive(Debug, Default)]
pub(crate) struct Presented<'a> {
    /// The token of a well-formed `Authorization: Bearer <token>`.
    pub(crate) bearer: Option<&'a str>,
    /// The value of `X-Proovy-Worker-Token`.
    pub(crate) worker_token: Option<&'a str>,
    /// Why a credential header that *was* sent could not be used, if one could not.
    pub(crate) unusable: Option<&'static str>,
}

impl Presented<'_> {
    /// Whether the request sent any credential header at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.bearer.is_none() && self.worker_token.is_none() && self.unusable.is_none()
    }
}

pub(crate) fn extract(headers: &HeaderMap) -> Presented<'_> {
    let mut presented = Presented::default();

    match single_value(headers, &AUTHORIZATION) {
        Value::Absent => {}
        Value::Unusable(why) => presented.unusable = Some(why),
        Value::Present(value) => match parse_bearer(value) {
            Ok(token) => presented.bearer = Some(token),
            Err(why) => presented.unusable = Some(why),
        },
    }

    match single_value(headers, &HeaderName::from_static(WORKER_TOKEN_HEADER)) {
        Value::Absent => {}
        Value::Unusable(why) => presented.unusable = Some(why),
        Value::Present("") => {
            presented.unusable = Some("empty X-Proovy-Worker-Token header");
        }
        Value::Present(value) => presented.worker_token = Some(value),
    }

    presented
}

enum Value<'a> {
    Absent,
    Present(&'a str),
    Unusable(&'static str),
}

fn single_value<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Value<'a> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Value::Absent;
    };
    if values.next().is_some() {
        return Value::Unusable("credential header sent more than once");
    }
    // Tokens are ASCII; anything else (obs-text bytes) cannot be one of ours.
    match first.to_str() {
        Ok(s) => Value::Present(s.trim()),
        Err(_) => Value::Unusable("credential header is not visible ASCII"),
    }
}

fn parse_bearer(value: &str) -> Result<&str, &'static str> {
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("Authorization scheme is not Bearer");
    }
    let token = rest.trim();
    if token.is_empty() {
        return Err("empty bearer token");
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    #[test]
    fn bearer_scheme_is_matched_ignoring_case() {
        let map = headers(&[("authorization", "bEaReR   tok")]);
        assert_eq!(extract(&map).bearer, Some("tok"));
    }

    #[test]
    fn other_schemes_are_unusable() {
        let map = headers(&[("authorization", "Basic dXNlcjpwYXNz")]);
        let presented = extract(&map);
        assert_eq!(presented.bearer, None);
        assert!(presented.unusable.is_some());
        assert!(!presented.is_empty());
    }

    #[test]
    fn bare_bearer_word_is_unusable() {
        let presented_map = headers(&[("authorization", "Bearer")]);
        let presented = extract(&presented_map);
        assert_eq!(presented.bearer, None);
        assert_eq!(presented.unusable, Some("empty bearer token"));
    }

    #[test]
    fn duplicated_header_is_unusable() {
        let map = headers(&[
            ("x-proovy-worker-token", "a"),
            ("x-proovy-worker-token", "a"),
        ]);
        let presented = extract(&map);
        assert_eq!(presented.worker_token, None);
        assert!(presented.unusable.is_some());
    }

    #[test]
    fn non_ascii_value_is_unusable_not_a_panic() {
        let mut map = HeaderMap::new();
        map.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
        );
        let presented = extract(&map);
        assert_eq!(presented.bearer, None);
        assert!(presented.unusable.is_some());
    }

    #[test]
    fn no_credential_headers_is_empty() {
        assert!(extract(&headers(&[("content-type", "application/json")])).is_empty());
    }
}
