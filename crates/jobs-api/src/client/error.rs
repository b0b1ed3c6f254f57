//! [`ClientError`]: why a call of the jobs API failed, as one line a person can act on. An
//! API that cannot be reached reads `cannot reach the jobs API at URL: connection refused`,
//! whatever the call.

use std::path::PathBuf;

/// Why a call of the jobs API (or the local file it reads or writes) failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No key to call with.
    #[error(
        "VIDEO_API_KEY is not set: the jobs API needs one of its VIDEO_API_KEYS (or pass --api-key)"
    )]
    MissingKey,
    /// `VIDEO_API_URL` is not a URL.
    #[error("VIDEO_API_URL: {url:?} is not an http(s) URL")]
    BadUrl {
        /// What was given.
        url: String,
    },
    /// Nothing answered at the API's address.
    #[error("cannot reach the jobs API at {base}: {reason}")]
    Unreachable {
        /// The API's base URL.
        base: String,
        /// The transport's reason, e.g. `connection refused`.
        reason: String,
    },
    /// The connection broke while an answer was being read.
    #[error("the connection to the jobs API at {base} failed: {reason}")]
    Transport {
        /// The API's base URL.
        base: String,
        /// The transport's reason.
        reason: String,
    },
    /// The API refused the request.
    #[error("the jobs API answered {status}: {message}{}", fields_text(.fields))]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The API's error code (`not_found`, `invalid_storyboard`, …).
        error: String,
        /// The API's message.
        message: String,
        /// Field-level problems: (field, reason).
        fields: Vec<(String, String)>,
    },
    /// `download` of a job that has no film (yet).
    #[error("job {id} has no film to download: {message}")]
    NotReady {
        /// The job.
        id: String,
        /// The API's explanation (the job's status).
        message: String,
    },
    /// An answer this client does not understand.
    #[error("unexpected answer from the jobs API: {0}")]
    Unexpected(String),
    /// The event stream closed before the `done` event.
    #[error("the event stream ended before the job did")]
    StreamEnded,
    /// A local file could not be read or written.
    #[error("{}: {cause}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The error (not a `source`: the message already says it, once).
        cause: std::io::Error,
    },
    /// A storyboard file that is not JSON.
    #[error("{} is not JSON: {cause}", path.display())]
    NotJson {
        /// The file.
        path: PathBuf,
        /// The error.
        cause: serde_json::Error,
    },
}

fn fields_text(fields: &[(String, String)]) -> String {
    fields
        .iter()
        .map(|(field, reason)| format!("\n  {field}: {reason}"))
        .collect()
}
