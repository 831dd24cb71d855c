//! A real OTLP/gRPC receiver for tests (a tonic server implementing the
//! opentelemetry-proto TraceService) and helpers to start the collector.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clt_collector::Config;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio_stream::wrappers::TcpListenerStream;

/// A span as received, with its resource's service.name.
#[derive(Debug, Clone)]
pub struct Received {
    pub service: String,
    pub span: Span,
}

impl Received {
    pub fn trace_id(&self) -> u128 {
        u128::from_be_bytes(self.span.trace_id.as_slice().try_into().unwrap())
    }
    pub fn span_id(&self) -> u64 {
        u64::from_be_bytes(self.span.span_id.as_slice().try_into().unwrap())
    }
    pub fn parent_id(&self) -> u64 {
        if self.span.parent_span_id.is_empty() {
            0
        } else {
            u64::from_be_bytes(self.span.parent_span_id.as_slice().try_into().unwrap())
        }
    }
    pub fn int(&self, name: &str) -> Option<i64> {
        attr_int(&self.span.attributes, name)
    }
    pub fn str(&self, name: &str) -> Option<String> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == name)
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
    }
}

pub fn attr_int(kvs: &[KeyValue], name: &str) -> Option<i64> {
    kvs.iter()
        .find(|kv| kv.key == name)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::IntValue(i) => Some(*i),
            _ => None,
        })
}

#[derive(Debug, Clone, Default)]
pub struct Receiver {
    pub spans: Arc<Mutex<Vec<Received>>>,
    /// Requests with a span of this name are refused with INVALID_ARGUMENT.
    pub refuse_name: Option<String>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let req = request.into_inner();
        if let Some(bad) = &self.refuse_name {
            let poisoned = req
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans)
                .any(|s| &s.name == bad);
            if poisoned {
                return Err(tonic::Status::invalid_argument("refused"));
            }
        }
        let mut spans = self.spans.lock().unwrap();
        for rs in req.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push(Received {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Receiver {
    /// Serves on `addr` until the returned handle is aborted.
    pub async fn serve(&self, addr: SocketAddr) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let l = tokio::net::TcpListener::bind(addr).await.unwrap();
        let a = l.local_addr().unwrap();
        let svc = TraceServiceServer::new(self.clone());
        let h = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(TcpListenerStream::new(l))
                .await
                .unwrap();
        });
        (a, h)
    }

    pub fn snapshot(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for the received spans (or panics after `secs`).
    pub async fn wait_for(
        &self,
        secs: u64,
        what: &str,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.snapshot();
            if pred(&s) {
                return s;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}; got {} spans", s.len());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A collector config on loopback ephemeral ports.
pub fn loopback_config(downstream: Option<SocketAddr>, store: Option<&std::path::Path>) -> Config {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Config {
        otlp_grpc_listen: any,
        otlp_http_listen: any,
        ioam_listen: any,
        metrics_listen: any,
        downstream: downstream.map(|a| format!("http://{a}")),
        store_path: store.map(|p| p.to_path_buf()).unwrap_or_default(),
        max_delay_ms: 1_000,
        linger_ms: 200,
        export_timeout_ms: 1_000,
        ..Config::default()
    }
}

/// A port nothing listens on (bound then released).
pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// The OpenTelemetry SDK as an application uses it: a batch exporter over
/// OTLP/gRPC to `endpoint`, spans of service `service`.
pub fn sdk_provider(
    endpoint: SocketAddr,
    service: &str,
) -> opentelemetry_sdk::trace::SdkTracerProvider {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{endpoint}"))
        .build()
        .unwrap();
    opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder_empty()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build()
}
