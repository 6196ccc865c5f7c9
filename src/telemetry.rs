//! Logs and traces: the log format, and OpenTelemetry trace export over OTLP/gRPC. Each
//! request is one span (`request`, with a request id) whose store and upstream calls are
//! its children; JSON log lines carry the request id of the span they were written in.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// Whether request spans are recorded at INFO: on with JSON logs (their lines carry the
/// request id) and with trace export. Off, they are DEBUG spans, which cost nothing at
/// the default INFO level (an enabled span is formatted on every request).
static REQUEST_SPANS: AtomicBool = AtomicBool::new(false);

/// Turns request spans on at INFO.
pub fn record_request_spans() {
    REQUEST_SPANS.store(true, Ordering::Relaxed);
}

/// Whether request spans are recorded at INFO.
pub fn request_spans() -> bool {
    REQUEST_SPANS.load(Ordering::Relaxed)
}

/// Where traces go, and which share of requests is traced.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceExport {
    /// An OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// The share of requests traced, in (0, 1]: a trace is kept or dropped whole.
    pub sample_ratio: f64,
}

/// Trace export that runs until [`Traces::shutdown`] flushes it.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Starts exporting to `endpoint` (an OTLP/gRPC collector) and returns the layer that
    /// feeds it. Must be called within the tokio runtime, where exports then run.
    pub fn start<S>(
        export: &TraceExport,
    ) -> anyhow::Result<(impl Layer<S> + Send + Sync + 'static, Traces)>
    where
        S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
    {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&export.endpoint)
            .with_timeout(Duration::from_secs(5))
            .build()?;
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                export.sample_ratio,
            ))))
            .with_batch_exporter(OnRuntime {
                inner: exporter,
                runtime: tokio::runtime::Handle::current(),
            })
            .with_resource(
                Resource::builder()
                    .with_service_name("numguard")
                    .with_attribute(opentelemetry::KeyValue::new(
                        "service.version",
                        env!("CARGO_PKG_VERSION"),
                    ))
                    .build(),
            )
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("numguard"));
        record_request_spans();
        Ok((layer, Traces { provider }))
    }

    /// Sends what is still buffered and stops. Blocks: call it off the runtime's workers.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("trace export did not shut down cleanly: {e}");
        }
    }
}

/// An exporter whose exports run on the tokio runtime: the SDK's batch processor calls
/// them from its own thread, where tonic's timers and sockets would find no runtime.
#[derive(Debug)]
struct OnRuntime<E> {
    inner: E,
    runtime: tokio::runtime::Handle,
}

impl<E: SpanExporter> SpanExporter for OnRuntime<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.runtime.block_on(self.inner.export(batch))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let _runtime = self.runtime.enter();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        let _runtime = self.runtime.enter();
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
