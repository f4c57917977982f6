//! Logging and tracing. Logs: human-readable by default, JSON lines for machines; `RUST_LOG`
//! overrides the level. Traces: with `--otlp-endpoint`, Verdict's own spans — each RPC it
//! serves, each transaction, each Prepare and decision it sends — go to an OpenTelemetry
//! collector over OTLP/gRPC, children of the caller's span when it sent a W3C `traceparent`.
//! Without it no span is built at all.

use std::collections::HashMap;
use std::io::IsTerminal;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// What spans are exported: Verdict's own, which are at debug level so that they cost nothing
/// unless an exporter wants them.
const EXPORTED: &str = "verdict=debug";

/// Keeps the trace exporter running; flushes what it holds when dropped.
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.traces.take() {
            if let Err(error) = provider.shutdown() {
                eprintln!("warning: flushing traces to the OTLP collector failed: {error}");
            }
        }
    }
}

/// Installs the global subscriber, logging to stderr, and with `otlp_endpoint` exporting spans
/// there as service `service`. Must run inside a tokio runtime.
pub fn init(
    format: LogFormat,
    default_level: &str,
    otlp_endpoint: Option<&str>,
    service: &str,
) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // openraft narrates every vote and heartbeat at info; its warnings still show. A filter
        // naming openraft itself (e.g. "info,openraft=info") overrides this.
        EnvFilter::new(format!("openraft=warn,{default_level}"))
    });
    // Colours only for a person at a terminal: not in files, pipes or container logs.
    let logs = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.json().flatten_event(true).boxed(),
    };
    let traces = otlp_endpoint
        .map(|url| exporter(url, service))
        .transpose()?;
    let spans = traces.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("verdict"))
            .with_filter(EnvFilter::new(EXPORTED))
    });
    let _ = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(spans)
        .try_init();
    Ok(Telemetry { traces })
}

/// How long one export may take.
const EXPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Spans go to the collector over a channel made as every other (so an `https://` collector is
/// reached with the process's `--tls-ca` and client certificate).
fn exporter(url: &str, service: &str) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
    crate::coordinator::validate::url("--otlp-endpoint", url)?;
    let endpoint = crate::tls::endpoint(url).map_err(|e| anyhow::anyhow!("--otlp-endpoint {e}"))?;
    let channel = crate::net::channel(endpoint.timeout(EXPORT_TIMEOUT));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_channel(channel)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| anyhow::anyhow!("cannot export traces to {url}: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service.to_owned())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// Makes `span` a child of the remote span a W3C `traceparent` names, so that it lands in the
/// caller's trace. Does nothing when no spans are exported.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let remote = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(remote);
}
