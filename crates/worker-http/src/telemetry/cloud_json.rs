//! One JSON object per log line, in the shape Cloud Logging reads from a Cloud Run
//! container's stderr: `severity` (`DEBUG`, `INFO`, `WARNING`, `ERROR`) so every line lands
//! at its level, `time`, `message` and the event's other fields at the top level, `target`,
//! `span` (the innermost span's fields and `name`), and — on every line logged while a
//! request is handled — the request's trace as `logging.googleapis.com/trace`
//! (`projects/PROJECT/traces/TRACE_ID`, so the Logs Explorer groups the lines under the
//! request and links them to Cloud Trace), `logging.googleapis.com/spanId` and
//! `logging.googleapis.com/trace_sampled`.
//!
//! The trace comes from the exported OpenTelemetry span when export is on (the ids Cloud
//! Trace shows), else from the caller's headers as [`super::trace_request`] recorded them.
//! Without a project id the trace is logged as a plain `trace_id`, which Cloud Logging does
//! not link.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Cloud Logging's field for the trace a line belongs to.
pub const TRACE: &str = "logging.googleapis.com/trace";
/// Cloud Logging's field for the span a line belongs to.
pub const SPAN_ID: &str = "logging.googleapis.com/spanId";
/// Cloud Logging's field for the trace's sampling decision.
pub const TRACE_SAMPLED: &str = "logging.googleapis.com/trace_sampled";

/// The event format; install it with [`JsonFields`] as the field format (span fields are
/// then stored as JSON, which this reads back).
#[derive(Debug, Clone, Default)]
pub struct CloudJson {
    project: Option<String>,
}

impl CloudJson {
    /// Traces are named under `project` (`GOOGLE_CLOUD_PROJECT`).
    pub fn new(project: Option<String>) -> Self {
        Self { project }
    }
}

/// Cloud Logging's `LogSeverity` name for a level. It has no TRACE: that is DEBUG.
pub fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

/// The trace a line belongs to.
struct Trace {
    trace_id: String,
    span_id: Option<String>,
    sampled: Option<bool>,
}

impl<S> FormatEvent<S, JsonFields> for CloudJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        event.record(&mut Fields(&mut line));
        // After the event's fields, so a field named like these cannot hide them.
        line.insert(
            "time".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("severity".into(), severity(meta.level()).into());
        line.insert("target".into(), meta.target().into());

        let (mut exported, mut from_headers) = (None, None);
        for (depth, span) in ctx.event_scope().into_iter().flatten().enumerate() {
            let extensions = span.extensions();
            let fields: Map<String, Value> = extensions
                .get::<FormattedFields<JsonFields>>()
                .and_then(|f| serde_json::from_str(&f.fields).ok())
                .unwrap_or_default();
            if exported.is_none() {
                exported = extensions
                    .get::<tracing_opentelemetry::OtelData>()
                    .and_then(exported_trace);
            }
            if from_headers.is_none() {
                from_headers = header_trace(&fields);
            }
            if depth == 0 {
                let mut current = fields;
                current.insert("name".into(), span.name().into());
                line.insert("span".into(), Value::Object(current));
            }
        }
        if let Some(trace) = exported.or(from_headers) {
            self.insert_trace(&mut line, trace);
        }
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

impl CloudJson {
    fn insert_trace(&self, line: &mut Map<String, Value>, trace: Trace) {
        match &self.project {
            Some(project) => line.insert(
                TRACE.into(),
                format!("projects/{project}/traces/{}", trace.trace_id).into(),
            ),
            None => line.insert("trace_id".into(), trace.trace_id.into()),
        };
        if let Some(span_id) = trace.span_id {
            line.insert(SPAN_ID.into(), span_id.into());
        }
        if let Some(sampled) = trace.sampled {
            line.insert(TRACE_SAMPLED.into(), sampled.into());
        }
    }
}

/// The ids of an exported span (valid once the span was entered).
fn exported_trace(data: &tracing_opentelemetry::OtelData) -> Option<Trace> {
    let (trace_id, span_id) = (data.trace_id()?, data.span_id()?);
    (trace_id != opentelemetry::TraceId::INVALID && span_id != opentelemetry::SpanId::INVALID).then(
        || Trace {
            trace_id: trace_id.to_string(),
            span_id: Some(span_id.to_string()),
            sampled: None,
        },
    )
}

/// The caller's trace, as the `request` span recorded it.
fn header_trace(fields: &Map<String, Value>) -> Option<Trace> {
    Some(Trace {
        trace_id: fields.get("trace_id")?.as_str()?.to_owned(),
        span_id: fields
            .get("span_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        sampled: fields.get("trace_sampled").and_then(Value::as_bool),
    })
}

/// Writes an event's fields into the line, typed where JSON has the type.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let value = serde_json::Number::from_f64(value)
            .map_or_else(|| Value::String(value.to_string()), Value::Number);
        self.0.insert(field.name().into(), value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// Captures what the layer writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines(project: Option<&str>, log: impl FnOnce()) -> Vec<Value> {
        let buffer = Buffer::default();
        let out = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(CloudJson::new(project.map(str::to_owned)))
                .with_writer(move || out.clone()),
        );
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).expect(l))
            .collect()
    }

    #[test]
    fn every_line_has_its_severity_and_fields() {
        let lines = lines(None, || {
            tracing::error!(code = 503, "store down");
            tracing::warn!(retry = true, "slow");
            tracing::info!(ratio = 0.5, "info");
            tracing::debug!("debug");
        });
        let severities: Vec<_> = lines.iter().map(|l| l["severity"].clone()).collect();
        assert_eq!(severities, ["ERROR", "WARNING", "INFO", "DEBUG"]);
        assert_eq!(lines[0]["message"], "store down");
        assert_eq!(lines[0]["code"], 503);
        assert_eq!(lines[1]["retry"], true);
        assert_eq!(lines[2]["ratio"], 0.5);
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
        assert!(lines.iter().all(|l| l.get(TRACE).is_none()));
    }

    #[test]
    fn lines_inside_a_request_carry_its_trace_and_the_innermost_span() {
        let lines = lines(Some("my-project"), || {
            let request = tracing::info_span!(
                "request",
                trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
                span_id = "00f067aa0ba902b7",
                trace_sampled = true
            );
            let _entered = request.enter();
            let push = tracing::info_span!("push", job.id = tracing::field::Empty);
            push.record("job.id", "j-1");
            push.in_scope(|| tracing::warn!("push refused"));
        });
        let line = &lines[0];
        assert_eq!(
            line[TRACE],
            "projects/my-project/traces/4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(line[SPAN_ID], "00f067aa0ba902b7");
        assert_eq!(line[TRACE_SAMPLED], true);
        assert_eq!(line["span"]["name"], "push");
        assert_eq!(line["span"]["job.id"], "j-1");
    }

    #[test]
    fn without_a_project_the_trace_id_is_plain() {
        let lines = lines(None, || {
            let request =
                tracing::info_span!("request", trace_id = "4bf92f3577b34da6a3ce929d0e0e4736");
            request.in_scope(|| tracing::info!("hello"));
        });
        assert_eq!(lines[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(lines[0].get(TRACE).is_none());
        assert!(lines[0].get(SPAN_ID).is_none());
    }
}
