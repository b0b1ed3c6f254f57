//! Logging and tracing.
//!
//! Logs: JSON lines for Cloud Logging in `serve` and `api` ([`cloud_json`]: `severity` on
//! every line, the request's trace on every line logged while handling it, one span per job
//! with `job.id`, `lease.epoch`, ...), plain text for people at a terminal. `RUST_LOG`
//! filters; default `info`.
//!
//! Traces: every request runs in a `request` span ([`trace_request`]) joined to the caller's
//! trace (`traceparent` or `X-Cloud-Trace-Context`). When `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set, spans are also exported over OTLP (HTTP/protobuf, batched on a thread of their own);
//! otherwise nothing is exported and no exporter is built.

pub mod cloud_json;
pub mod trace_context;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

pub use cloud_json::CloudJson;
pub use trace_context::{TraceParent, trace_request};

use crate::config::{ConfigError, Env};

/// How the process logs and traces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// JSON lines for Cloud Logging; else text for people.
    pub json: bool,
    /// `GOOGLE_CLOUD_PROJECT`: the project traces are named under in log lines.
    pub project: Option<String>,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: export spans there when set. The exporter reads it
    /// (and the other `OTEL_EXPORTER_OTLP_*` variables) itself; it is kept here to decide.
    pub otlp_endpoint: Option<String>,
    /// The exported spans' `service.name`: `OTEL_SERVICE_NAME`, else Cloud Run's
    /// `K_SERVICE`, else the command's default.
    pub service_name: String,
}

impl TelemetrySettings {
    /// Text logs, no export: for commands run by people.
    pub fn text() -> Self {
        Self {
            service_name: "video-worker".into(),
            ..Self::default()
        }
    }

    /// Reads `GOOGLE_CLOUD_PROJECT`, `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME` and
    /// `K_SERVICE`; `json` comes from the command's own settings.
    pub fn from_env(env: Env<'_>, json: bool, service: &str) -> Result<Self, ConfigError> {
        let get = |var: &str| {
            env(var)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let project = get("GOOGLE_CLOUD_PROJECT");
        if let Some(p) = &project
            && p.contains(|c: char| c == '/' || c.is_whitespace())
        {
            return Err(ConfigError {
                var: "GOOGLE_CLOUD_PROJECT",
                reason: format!("{p:?} is not a project id"),
            });
        }
        let otlp_endpoint = get("OTEL_EXPORTER_OTLP_ENDPOINT");
        if let Some(url) = &otlp_endpoint
            && (!(url.starts_with("http://") || url.starts_with("https://"))
                || url.parse::<http::Uri>().is_err())
        {
            return Err(ConfigError {
                var: "OTEL_EXPORTER_OTLP_ENDPOINT",
                reason: format!(
                    "{url:?} is not an http(s) URL (the exporter speaks OTLP over HTTP/protobuf)"
                ),
            });
        }
        let service_name = get("OTEL_SERVICE_NAME")
            .or_else(|| get("K_SERVICE"))
            .unwrap_or_else(|| service.to_owned());
        Ok(Self {
            json,
            project,
            otlp_endpoint,
            service_name,
        })
    }
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built.
    #[error("OTEL_EXPORTER_OTLP_ENDPOINT: cannot build the exporter")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The running telemetry; dropping it flushes and stops the span export.
#[derive(Debug)]
#[must_use = "dropping it stops the span export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // The last batch goes out now; the subscriber is about to go with the process.
            if let Err(e) = provider.shutdown() {
                eprintln!("OpenTelemetry export did not shut down cleanly: {e}");
            }
        }
    }
}

/// Installs the global subscriber; when one is already installed (a second call, a test),
/// that one stays.
pub fn init(settings: &TelemetrySettings) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let provider = match &settings.otlp_endpoint {
        None => None,
        Some(_) => Some(otlp_provider(&settings.service_name)?),
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("video-worker"))
            .boxed()
    });
    let fmt = if settings.json {
        tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(CloudJson::new(settings.project.clone()))
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    Ok(Telemetry { provider })
}

fn otlp_provider(service_name: &str) -> Result<SdkTracerProvider, TelemetryError> {
    // Endpoint, headers, timeout and compression from the OTEL_EXPORTER_OTLP_* variables.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service_name.to_owned());
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<TelemetrySettings, ConfigError> {
        let env = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        TelemetrySettings::from_env(&env, true, "video-worker-api")
    }

    #[test]
    fn export_is_off_unless_an_endpoint_is_set() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.otlp_endpoint, None);
        assert_eq!(s.service_name, "video-worker-api");
        assert_eq!(s.project, None);
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("GOOGLE_CLOUD_PROJECT", "my-project"),
            ("K_SERVICE", "video-api"),
        ])
        .unwrap();
        assert_eq!(s.otlp_endpoint.as_deref(), Some("http://collector:4318"));
        assert_eq!(s.project.as_deref(), Some("my-project"));
        assert_eq!(s.service_name, "video-api");
        let s = settings(&[("OTEL_SERVICE_NAME", "named"), ("K_SERVICE", "video-api")]).unwrap();
        assert_eq!(s.service_name, "named");
    }

    #[test]
    fn unusable_values_name_their_variable() {
        let e = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")]).unwrap_err();
        assert_eq!(e.var, "OTEL_EXPORTER_OTLP_ENDPOINT");
        let e = settings(&[("GOOGLE_CLOUD_PROJECT", "projects/x")]).unwrap_err();
        assert_eq!(e.var, "GOOGLE_CLOUD_PROJECT");
    }
}
