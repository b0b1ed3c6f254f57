//! Idempotent job creation: a client's `Idempotency-Key`, the request it stands for, and
//! what a create under a key can end as.
//!
//! A client that lost the reply to a create retries it with the same key; the repository
//! answers with the job the first call made instead of making a second one. Keys belong to
//! the caller that sent them (the *scope*, a digest of its API key, so two clients never
//! see each other's keys) and to the request they were first used with (its *fingerprint*):
//! the same key with another request is refused, never silently answered with the wrong job.
//! Hashing is the caller's business; this crate only compares the digests.

use std::fmt;
use std::time::Duration;

use crate::{Job, JobId, ValidationError};

/// A client's idempotency key: 1 to 255 visible ASCII characters (`!` to `~`).
///
/// Visible ASCII only, so a key reads the same in every log, header and database collation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The longest key accepted.
    pub const MAX_LEN: usize = 255;

    /// A key from its text, refused if empty, longer than [`Self::MAX_LEN`] or holding
    /// anything but visible ASCII.
    pub fn new(text: impl Into<String>) -> Result<Self, ValidationError> {
        let text = text.into();
        if text.is_empty() {
            return Err(ValidationError::new("Idempotency-Key", "must not be empty"));
        }
        if text.len() > Self::MAX_LEN {
            return Err(ValidationError::new(
                "Idempotency-Key",
                format!("at most {} characters, got {}", Self::MAX_LEN, text.len()),
            ));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ValidationError::new(
                "Idempotency-Key",
                "only visible ASCII characters (! to ~), no spaces or control characters",
            ));
        }
        Ok(Self(text))
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A create made under an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentRequest {
    /// Whose key it is: a digest of the caller's credential (never the credential itself).
    pub scope: [u8; 32],
    /// The client's key.
    pub key: IdempotencyKey,
    /// A digest of the canonical request, telling a retry from a different request.
    pub fingerprint: [u8; 32],
    /// How long a key is remembered. An older key is forgotten: it may be purged, and a
    /// create under it starts afresh.
    pub retention: Duration,
}

/// How a create under an idempotency key ended.
#[derive(Debug, Clone, PartialEq)]
pub enum IdempotentOutcome {
    /// The key was new (or forgotten): the job was created and the key now names it.
    Created(Job),
    /// The key names a job made by the same request: that job, as it is now. Nothing was
    /// created.
    Existing(Job),
    /// The key names a job made by a different request. Nothing was created.
    KeyReused {
        /// The job the key names.
        job_id: JobId,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        assert!(IdempotencyKey::new("a").is_ok());
        assert!(IdempotencyKey::new("order-42:retry_1/~!").is_ok());
        assert!(IdempotencyKey::new("k".repeat(255)).is_ok());
        for bad in [
            String::new(),
            "k".repeat(256),
            "has space".into(),
            "tab\there".into(),
            "ünïcode".into(),
            "nul\0".into(),
        ] {
            assert!(IdempotencyKey::new(bad.clone()).is_err(), "{bad:?}");
        }
    }
}
