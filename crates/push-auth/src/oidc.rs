//! The OIDC path: a Google-signed ID token, as Cloud Tasks attaches with `oidcToken`.
//!
//! Everything in the token is attacker-controlled until its signature is checked, so the
//! order is: cheap shape checks on the raw string (size, three base64url segments), then
//! the header — whose `alg` is *compared* with RS256 but never *obeyed*, which is what
//! defeats `alg: none` and "HS256 keyed with the RSA public key" forgeries — then the key
//! for its `kid`, then signature and the standard claims via `jsonwebtoken`, and only then
//! the checks that need trusted claims (`iat`, exact `aud`, the allow-list).

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use crate::Caller;
use crate::config::CheckedOidc;
use crate::error::AuthError;
use crate::jwks::{KeyCache, KeyError};

/// What Google puts in place of the signature when it shows a token it will not let be
/// replayed (e.g. in logs). Such a token must never be accepted, whatever the keys say.
pub(crate) const SIGNATURE_REMOVED: &str = "SIGNATURE_REMOVED_BY_GOOGLE";
/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub(crate) const LEEWAY_SECS: u64 = 60;
/// Google ID tokens are about 1 KiB; anything far larger is not one.
pub(crate) const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Longest `kid` we bother looking up.
const MAX_KID_LEN: usize = 256;

/// Whether `token` has the JWS compact shape (three dot-separated segments), which is what
/// routes a Bearer value to this path rather than the shared-token one.
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

/// Whether `token` is a Google token displayed with its signature removed.
pub(crate) fn has_removed_signature(token: &str) -> bool {
    token
        .rsplit_once('.')
        .is_some_and(|(_, signature)| signature == SIGNATURE_REMOVED)
}

/// The claims read after the signature is verified. Everything is optional or loosely
/// typed so that an odd claim yields a clear refusal below instead of a parse error.
#[derive(Deserialize)]
struct GoogleClaims {
    aud: Option<serde_json::Value>,
    iat: Option<serde_json::Value>,
    email: Option<serde_json::Value>,
    email_verified: Option<serde_json::Value>,
}

#[derive(Debug)]
pub(crate) struct OidcVerifier {
    audience: String,
    allowed_emails: Vec<String>,
    validation: Validation,
    keys: KeyCache,
}

impl OidcVerifier {
    pub(crate) fn new(config: CheckedOidc, http: reqwest::Client) -> Self {
        // RS256 is the only algorithm accepted, whatever the token's header says.
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_audience(&[config.audience.as_str()]);
        validation.set_issuer(&config.issuers);
        // Without these in the required set, jsonwebtoken would skip a check whose claim is
        // simply absent.
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        Self {
            audience: config.audience,
            allowed_emails: config.allowed_emails,
            validation,
            keys: KeyCache::new(http, config.jwks_url),
        }
    }

    pub(crate) async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        if has_removed_signature(token) {
            return Err(AuthError::invalid("token signature was removed"));
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::invalid("token too large"));
        }
        let well_formed = looks_like_jwt(token)
            && token.split('.').all(|segment| {
                !segment.is_empty()
                    && segment
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !well_formed {
            return Err(AuthError::invalid("malformed token"));
        }

        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::invalid("malformed token header"))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::invalid("token algorithm is not RS256"));
        }
        // jsonwebtoken does not understand any `crit` extension; RFC 7515 says to refuse.
        if header.crit.is_some() {
            return Err(AuthError::invalid("token has critical header extensions"));
        }
        let kid = match header.kid.as_deref() {
            Some(kid) if !kid.is_empty() && kid.len() <= MAX_KID_LEN => kid,
            _ => return Err(AuthError::invalid("token has no usable kid")),
        };

        let key = self.keys.key(kid).await.map_err(|e| match e {
            KeyError::UnknownKid => AuthError::invalid("token signed with an unknown key"),
            KeyError::Unavailable(why) => AuthError::KeysUnavailable(why),
        })?;

        let data = jsonwebtoken::decode::<GoogleClaims>(token, &key, &self.validation)
            .map_err(|e| jwt_error(e.kind()))?;
        let claims = data.claims;

        // jsonwebtoken accepts an `aud` array that merely contains ours; Google sends a
        // single string, and anything else is not a token minted for us alone.
        if claims.aud.as_ref().and_then(|a| a.as_str()) != Some(self.audience.as_str()) {
            return Err(AuthError::invalid("wrong audience"));
        }
        check_iat(claims.iat.as_ref())?;

        let Some(email) = claims.email.as_ref().and_then(|e| e.as_str()) else {
            return Err(AuthError::Forbidden("token has no email".to_owned()));
        };
        // Only a JSON `true` counts: a string "true" or a missing claim is not a verification.
        if claims.email_verified != Some(serde_json::Value::Bool(true)) {
            return Err(AuthError::Forbidden(format!(
                "email {email} is not verified"
            )));
        }
        if !self
            .allowed_emails
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(email))
        {
            return Err(AuthError::Forbidden(format!(
                "{email} may not push to this worker"
            )));
        }
        Ok(Caller::ServiceAccount {
            email: email.to_owned(),
        })
    }
}

/// `iat` must be present, numeric, and not in the future beyond the leeway: jsonwebtoken
/// does not check it at all.
fn check_iat(iat: Option<&serde_json::Value>) -> Result<(), AuthError> {
    let Some(iat) = iat else {
        return Err(AuthError::invalid("token has no iat"));
    };
    let iat = match iat.as_u64() {
        Some(secs) => secs,
        None => match iat.as_f64() {
            Some(secs) if secs.is_finite() && secs >= 0.0 => secs as u64,
            _ => return Err(AuthError::invalid("malformed iat")),
        },
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if iat > now.saturating_add(LEEWAY_SECS) {
        return Err(AuthError::invalid("token issued in the future"));
    }
    Ok(())
}

/// A fixed description of a jsonwebtoken failure: its own messages may quote the input.
fn jwt_error(kind: &ErrorKind) -> AuthError {
    let reason = match kind {
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => "token algorithm is not RS256",
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => "token has no numeric exp",
            "iss" => "token has no iss",
            "aud" => "token has no aud",
            _ => "token misses a required claim",
        },
        ErrorKind::InvalidClaimFormat(claim) => match claim.as_str() {
            "exp" => "malformed exp",
            "nbf" => "malformed nbf",
            _ => "malformed claim",
        },
        _ => "malformed token",
    };
    AuthError::invalid(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape_is_three_segments() {
        assert!(looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("opaque-shared-token"));
    }

    #[test]
    fn removed_signature_is_detected_on_the_last_segment_only() {
        assert!(has_removed_signature("h.p.SIGNATURE_REMOVED_BY_GOOGLE"));
        assert!(!has_removed_signature("h.SIGNATURE_REMOVED_BY_GOOGLE.s"));
        assert!(!has_removed_signature("SIGNATURE_REMOVED_BY_GOOGLE"));
    }

    #[test]
    fn iat_in_the_future_beyond_leeway_is_refused() {
        let future = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 10 * LEEWAY_SECS;
        assert!(check_iat(Some(&serde_json::json!(future))).is_err());
        assert!(check_iat(Some(&serde_json::json!(1_700_000_000u64))).is_ok());
    }

    #[test]
    fn iat_missing_or_not_a_number_is_refused() {
        assert!(check_iat(None).is_err());
        assert!(check_iat(Some(&serde_json::json!("1700000000"))).is_err());
        assert!(check_iat(Some(&serde_json::json!(-5))).is_err());
    }
}
