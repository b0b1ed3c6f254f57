//! The shared-token path: a secret the pusher and the worker both know.
//!
//! Only a SHA-256 digest of the configured token is kept. Comparing digests of equal, fixed
//! length with [`subtle::ConstantTimeEq`] means the time taken reveals neither how many
//! leading bytes of a guess were right nor the length of the real token — a plain `==` on
//! the strings would leak both.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The configured shared token, held as a digest.
pub(crate) struct SharedToken {
    digest: [u8; 32],
}

impl SharedToken {
    pub(crate) fn new(token: &str) -> Self {
        Self {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Whether `presented` is the configured token, in time independent of both values.
    pub(crate) fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        presented.ct_eq(&self.digest).into()
    }
}

impl fmt::Debug for SharedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedToken([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_exact_token() {
        let token = SharedToken::new("correct-horse");
        assert!(token.matches("correct-horse"));
        assert!(!token.matches("correct-hors"));
        assert!(!token.matches("correct-horsee"));
        assert!(!token.matches("Correct-horse"));
        assert!(!token.matches(""));
    }

    #[test]
    fn debug_output_does_not_reveal_the_digest() {
        assert_eq!(
            format!("{:?}", SharedToken::new("x")),
            "SharedToken([redacted])"
        );
    }
}
