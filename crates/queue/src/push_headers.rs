//! The receiving side of a push: the headers Cloud Tasks sends with it, read leniently (names in any case; a value
//! that does not parse is kept as absent, never an error).

use reqwest::header::HeaderMap;

/// What the queue says about this delivery.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskHeaders {
    /// `X-CloudTasks-QueueName`.
    pub queue: Option<String>,
    /// `X-CloudTasks-TaskName`.
    pub task: Option<String>,
    /// `X-CloudTasks-TaskRetryCount`: how many times this task was retried.
    pub retry_count: Option<u64>,
    /// `X-CloudTasks-TaskExecutionCount`: how many times it got a response.
    pub execution_count: Option<u64>,
    /// `X-CloudTasks-TaskETA`: scheduled time, seconds since the epoch.
    pub eta: Option<f64>,
    /// `X-CloudTasks-TaskPreviousResponse`: the HTTP code of the previous attempt.
    pub previous_response: Option<u16>,
}

fn text(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    // Bounded: these go into logs.
    (!value.is_empty()).then(|| value.chars().take(500).collect())
}

impl TaskHeaders {
    /// Reads the headers (`HeaderMap` lookups ignore case).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self {
            queue: text(headers, "x-cloudtasks-queuename"),
            task: text(headers, "x-cloudtasks-taskname"),
            retry_count: text(headers, "x-cloudtasks-taskretrycount").and_then(|v| v.parse().ok()),
            execution_count: text(headers, "x-cloudtasks-taskexecutioncount")
                .and_then(|v| v.parse().ok()),
            eta: text(headers, "x-cloudtasks-tasketa")
                .and_then(|v| v.parse().ok())
                .filter(|v: &f64| v.is_finite()),
            previous_response: text(headers, "x-cloudtasks-taskpreviousresponse")
                .and_then(|v| v.parse().ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_read_in_any_case_and_bad_values_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert("X-CLOUDTASKS-QUEUENAME", "video".parse().unwrap());
        h.insert("x-CloudTasks-TaskName", "t-1".parse().unwrap());
        h.insert("X-CloudTasks-TaskRetryCount", "3".parse().unwrap());
        h.insert("X-CloudTasks-TaskExecutionCount", "nope".parse().unwrap());
        h.insert("X-CloudTasks-TaskETA", "1764300000.25".parse().unwrap());
        h.insert("X-CloudTasks-TaskPreviousResponse", "409".parse().unwrap());
        let t = TaskHeaders::from_headers(&h);
        assert_eq!(t.queue.as_deref(), Some("video"));
        assert_eq!(t.task.as_deref(), Some("t-1"));
        assert_eq!(t.retry_count, Some(3));
        assert_eq!(t.execution_count, None);
        assert_eq!(t.eta, Some(1_764_300_000.25));
        assert_eq!(t.previous_response, Some(409));
    }
}
