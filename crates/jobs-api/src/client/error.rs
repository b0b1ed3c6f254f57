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

impl ClientError {
    /// A transport failure talking to the API at `base`.
    pub(crate) fn of_transport(base: &str, error: &reqwest::Error) -> Self {
        let base = base.to_owned();
        let reason = reason(error);
        if error.is_connect() || error.is_timeout() {
            Self::Unreachable { base, reason }
        } else if error.is_builder() {
            Self::BadUrl { url: base }
        } else {
            Self::Transport { base, reason }
        }
    }

    /// The refusal in a non-2xx answer (`{error, message, fields}` when the API sent JSON).
    pub(crate) async fn of_refusal(base: &str, response: reqwest::Response) -> Self {
        let status = response.status();
        let text = match response.text().await {
            Ok(text) => text,
            Err(e) => return Self::of_transport(base, &e),
        };
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let message = body["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| first_line(&text, status));
        let fields = body["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                let text = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
                (text("field"), text("reason"))
            })
            .collect();
        Self::Refused {
            status: status.as_u16(),
            error: body["error"].as_str().unwrap_or_default().to_owned(),
            message,
            fields,
        }
    }
}

/// The innermost cause of a transport error, in a few words (`connection refused`).
fn reason(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".into();
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut last = error.to_string();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            // The kind reads better than the OS's text ("connection refused", not
            // "Connection refused (os error 111)"); others (DNS) say more in their text.
            return match io.kind() {
                kind @ (K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::TimedOut
                | K::HostUnreachable
                | K::NetworkUnreachable
                | K::AddrNotAvailable) => kind.to_string(),
                _ => io.to_string(),
            };
        }
        last = e.to_string();
        source = e.source();
    }
    last
}

fn first_line(text: &str, status: reqwest::StatusCode) -> String {
    match text.lines().next().map(str::trim) {
        Some(line) if !line.is_empty() => line.chars().take(200).collect(),
        _ => status.canonical_reason().unwrap_or("no message").to_owned(),
    }
}
