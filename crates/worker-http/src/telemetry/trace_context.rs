//! The caller's trace, from the headers Cloud Run and OpenTelemetry clients send: W3C
//! `traceparent` (`00-<32 hex trace>-<16 hex span>-<2 hex flags>`) or Google's older
//! `X-Cloud-Trace-Context` (`<32 hex trace>/<decimal span>;o=<0|1>`). `traceparent` wins when
//! both are present and valid. A malformed header is ignored: a request is never refused
//! for its tracing headers.
//!
//! [`trace_request`] opens the `request` span that every line logged while handling the
//! request is inside; the JSON log format reads the trace from it ([`super::cloud_json`]).

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderMap;
use tracing::Instrument;

/// A trace and span id, as lower-case hex, and whether the caller sampled the trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 hex digits, not all zero.
    pub trace_id: String,
    /// 16 hex digits, not all zero: the caller's span, the parent of this request's.
    /// `X-Cloud-Trace-Context` may carry none.
    pub span_id: Option<String>,
    /// The caller's sampling decision.
    pub sampled: bool,
}

impl TraceParent {
    /// From `traceparent`, else `X-Cloud-Trace-Context`; `None` when neither is usable.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        header("traceparent")
            .and_then(Self::from_traceparent)
            .or_else(|| header("x-cloud-trace-context").and_then(Self::from_cloud_trace_context))
    }

    /// Parses a W3C `traceparent` value (version `00`; a later version is read by the same
    /// rules for its first four fields, as the spec asks).
    pub fn from_traceparent(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let version = parts.next()?;
        let (trace_id, span_id, flags) = (parts.next()?, parts.next()?, parts.next()?);
        let extra = parts.next();
        if !is_hex(version, 2) || version == "ff" || (version == "00" && extra.is_some()) {
            return None;
        }
        if !is_id(trace_id, 32) || !is_id(span_id, 16) || !is_hex(flags, 2) {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self {
            trace_id: trace_id.to_ascii_lowercase(),
            span_id: Some(span_id.to_ascii_lowercase()),
            sampled: flags & 1 == 1,
        })
    }

    /// Parses `X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=OPTIONS`, the span id in decimal
    /// (made hex here, as Cloud Logging's `spanId` is). The span and options are optional.
    pub fn from_cloud_trace_context(value: &str) -> Option<Self> {
        let (ids, options) = match value.trim().split_once(';') {
            Some((ids, options)) => (ids, Some(options)),
            None => (value.trim(), None),
        };
        let (trace_id, span) = match ids.split_once('/') {
            Some((trace, span)) => (trace, Some(span)),
            None => (ids, None),
        };
        if !is_id(trace_id, 32) {
            return None;
        }
        // A trace without a usable span still correlates the lines.
        let span_id = match span.map(str::parse::<u64>) {
            Some(Ok(n)) if n != 0 => Some(format!("{n:016x}")),
            _ => None,
        };
        Some(Self {
            trace_id: trace_id.to_ascii_lowercase(),
            span_id,
            sampled: options.is_some_and(|o| o.trim() == "o=1"),
        })
    }

    /// The caller's context, as the parent of an OpenTelemetry span.
    pub(crate) fn otel_context(&self) -> Option<opentelemetry::Context> {
        use opentelemetry::trace::{
            SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
        };
        let trace_id = TraceId::from_hex(&self.trace_id).ok()?;
        let span_id = SpanId::from_hex(self.span_id.as_deref()?).ok()?;
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let remote = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
        remote
            .is_valid()
            .then(|| opentelemetry::Context::new().with_remote_span_context(remote))
    }
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Hex of the length, and not all zeros (the spec's invalid id).
fn is_id(text: &str, len: usize) -> bool {
    is_hex(text, len) && text.bytes().any(|b| b != b'0')
}

/// Axum middleware: runs the request inside a `request` span carrying the caller's trace
/// (`trace_id`, `span_id`, `trace_sampled`), and makes that trace the parent of the span
/// OpenTelemetry exports (when export is on). Logs `request handled` (status, latency) at
/// DEBUG when it ends.
pub async fn trace_request(request: Request, next: Next) -> Response {
    let parent = TraceParent::from_headers(request.headers());
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{} {}", request.method(), request.uri().path()),
        otel.kind = "server",
        http.method = %request.method(),
        http.path = %request.uri().path(),
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        trace_sampled = tracing::field::Empty,
    );
    if let Some(parent) = &parent {
        span.record("trace_id", parent.trace_id.as_str());
        if let Some(span_id) = &parent.span_id {
            span.record("span_id", span_id.as_str());
        }
        span.record("trace_sampled", parent.sampled);
        if let Some(cx) = parent.otel_context() {
            use tracing_opentelemetry::OpenTelemetrySpanExt as _;
            // Fails only when no OpenTelemetry layer is installed: nothing to join then.
            let _ = span.set_parent(cx);
        }
    }
    async move {
        let started = std::time::Instant::now();
        let response = next.run(request).await;
        // DEBUG: Cloud Run's own request log already has every request at INFO.
        tracing::debug!(
            status = response.status().as_u16(),
            latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "request handled"
        );
        response
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn traceparent_is_read_and_garbage_is_ignored() {
        let p = TraceParent::from_traceparent(
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        )
        .unwrap();
        assert_eq!(p.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(p.sampled);
        let unsampled = TraceParent::from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        )
        .unwrap();
        assert!(!unsampled.sampled);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::from_traceparent(bad), None, "{bad}");
        }
    }

    #[test]
    fn cloud_trace_context_is_read_with_its_decimal_span() {
        let p = TraceParent::from_cloud_trace_context("105445aa7843bc8bf206b12000100000/1;o=1")
            .unwrap();
        assert_eq!(p.trace_id, "105445aa7843bc8bf206b12000100000");
        assert_eq!(p.span_id.as_deref(), Some("0000000000000001"));
        assert!(p.sampled);
        let p = TraceParent::from_cloud_trace_context(
            "105445aa7843bc8bf206b12000100000/18446744073709551615",
        )
        .unwrap();
        assert_eq!(p.span_id.as_deref(), Some("ffffffffffffffff"));
        assert!(!p.sampled);
        let p = TraceParent::from_cloud_trace_context("105445aa7843bc8bf206b12000100000").unwrap();
        assert_eq!(p.span_id, None);
        assert!(TraceParent::from_cloud_trace_context("not-a-trace/1;o=1").is_none());
    }

    #[test]
    fn traceparent_wins_over_the_cloud_header() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b12000100000/1;o=1".parse().unwrap(),
        );
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let p = TraceParent::from_headers(&headers).unwrap();
        assert_eq!(p.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        headers.insert("traceparent", "garbage".parse().unwrap());
        let p = TraceParent::from_headers(&headers).unwrap();
        assert_eq!(p.trace_id, "105445aa7843bc8bf206b12000100000");
    }
}
