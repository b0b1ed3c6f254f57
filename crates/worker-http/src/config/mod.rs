//! Settings from the environment, validated at start with errors that name the variable.
//!
//! The names are the original product's where the meaning is the same, so an existing Cloud
//! Run configuration carries over. README "Settings" documents every one.

mod api;
mod media;
mod queue;
mod worker;

use std::time::Duration;

use domain::InstanceId;
use secrecy::SecretString;

pub use api::ApiSettings;
pub use media::{DEFAULT_SCRATCH_MAX_BYTES, MediaSettings, PipelineKind};
pub use queue::QueueSettings;
pub use worker::Settings;

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

pub(crate) fn err(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        reason: reason.into(),
    }
}

/// Reads one variable; empty counts as unset.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(crate) fn get(env: Env<'_>, var: &str) -> Option<String> {
    env(var)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Reads a secret (a token, an API key): held so that no `{:?}` prints it.
pub(crate) fn secret(env: Env<'_>, var: &str) -> Option<SecretString> {
    get(env, var).map(SecretString::from)
}

pub(crate) fn number<T>(
    env: Env<'_>,
    var: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let Some(text) = get(env, var) else {
        return Ok(default);
    };
    let value: T = text
        .parse()
        .map_err(|_| err(var, format!("{text:?} is not a whole number")))?;
    if !range.contains(&value) {
        return Err(err(
            var,
            format!(
                "{value} is out of range {}..={}",
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(value)
}

pub(crate) fn seconds(
    env: Env<'_>,
    var: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    number(env, var, default, range).map(Duration::from_secs)
}

/// The default lease holder: the Cloud Run revision (or host name) plus a random suffix,
/// unique per process start.
pub fn default_instance_id(env: Env<'_>) -> InstanceId {
    let base = get(env, "K_REVISION")
        .or_else(|| get(env, "HOSTNAME"))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "video-worker".into());
    let base: String = base
        .chars()
        .filter(char::is_ascii_graphic)
        .take(100)
        .collect();
    let suffix = format!("{:08x}", fastrand::u32(..));
    InstanceId::new(format!("{base}-{suffix}")).unwrap_or_else(|_| {
        InstanceId::new(format!("video-worker-{suffix}")).unwrap_or_else(|_| unreachable!())
    })
}
