//! Identifier and quantity newtypes, each with a fallible constructor (parse, don't validate).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// The id of a video job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(uuid::Uuid);

impl JobId {
    /// A fresh id; time-ordered (UUIDv7) so new rows land at the end of the primary index.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }

    /// Wraps an existing uuid.
    pub const fn from_uuid(id: uuid::Uuid) -> Self {
        Self(id)
    }

    /// The uuid inside.
    pub const fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|e| ValidationError::new("job_id", format!("not a uuid: {e}")))
    }
}

/// The fencing token of a lease: +1 on every acquisition or takeover of a job.
///
/// `0` means the job was never leased. A write carries the epoch it was leased at and is
/// refused once the job's epoch has moved on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseEpoch(i64);

impl LeaseEpoch {
    /// The epoch of a job that was never leased.
    pub const NEVER: Self = Self(0);

    /// An epoch read from storage; negative values are refused.
    pub fn new(value: i64) -> Result<Self, ValidationError> {
        if value < 0 {
            return Err(ValidationError::new("lease_epoch", "must not be negative"));
        }
        Ok(Self(value))
    }

    /// The next epoch.
    pub fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }

    /// The number inside.
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for LeaseEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The id of one worker process start; it names the lease holder.
///
/// 1–128 printable ASCII characters without spaces, so it can go into logs and headers as is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceId(String);

impl InstanceId {
    /// The longest id accepted.
    pub const MAX_LEN: usize = 128;

    /// Validates an instance id.
    pub fn new(value: impl Into<String>) -> Result<Self, ValidationError> {
        let value = value.into();
        if value.is_empty() || value.len() > Self::MAX_LEN {
            return Err(ValidationError::new(
                "instance_id",
                format!("must be 1 to {} characters", Self::MAX_LEN),
            ));
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ValidationError::new(
                "instance_id",
                "must be printable ASCII without spaces",
            ));
        }
        Ok(Self(value))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InstanceId {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<InstanceId> for String {
    fn from(id: InstanceId) -> Self {
        id.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user-facing progress percentage, 0–100.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(try_from = "u8", into = "u8")]
pub struct Percent(u8);

impl Percent {
    /// Nothing done.
    pub const ZERO: Self = Self(0);
    /// All done.
    pub const FULL: Self = Self(100);

    /// Validates a percentage.
    pub fn new(value: u8) -> Result<Self, ValidationError> {
        if value > 100 {
            return Err(ValidationError::new("percent", "must be between 0 and 100"));
        }
        Ok(Self(value))
    }

    /// The percentage nearest to `fraction` of the whole, clamped to 0–100.
    pub fn from_fraction(fraction: f64) -> Self {
        if fraction.is_nan() {
            return Self::ZERO;
        }
        // Clamped to [0, 100] first, so the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Self((fraction.clamp(0.0, 1.0) * 100.0).round() as u8)
    }

    /// The number inside.
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Percent {
    type Error = ValidationError;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Percent> for u8 {
    fn from(p: Percent) -> Self {
        p.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_refuses_values_above_one_hundred() {
        assert!(Percent::new(100).is_ok());
        assert_eq!(Percent::new(101).unwrap_err().field, "percent");
    }

    #[test]
    fn percent_from_fraction_clamps_and_rounds() {
        assert_eq!(Percent::from_fraction(-1.0), Percent::ZERO);
        assert_eq!(Percent::from_fraction(0.505).get(), 51);
        assert_eq!(Percent::from_fraction(7.0), Percent::FULL);
        assert_eq!(Percent::from_fraction(f64::NAN), Percent::ZERO);
    }

    #[test]
    fn instance_id_refuses_empty_long_and_unprintable() {
        assert!(InstanceId::new("rev-1-abc").is_ok());
        assert!(InstanceId::new("").is_err());
        assert!(InstanceId::new("a".repeat(129)).is_err());
        assert!(InstanceId::new("has space").is_err());
        assert!(InstanceId::new("tab\t").is_err());
    }

    #[test]
    fn job_id_parses_uuid_and_names_the_field_otherwise() {
        let id = JobId::new();
        assert_eq!(id.to_string().parse::<JobId>().unwrap(), id);
        assert_eq!("nope".parse::<JobId>().unwrap_err().field, "job_id");
    }

    #[test]
    fn lease_epoch_refuses_negative_and_counts_up() {
        assert!(LeaseEpoch::new(-1).is_err());
        assert_eq!(LeaseEpoch::NEVER.next().get(), 1);
    }
}
