//! The collector's listeners: OTLP/gRPC, OTLP/HTTP, the IOAM trace APIs and
//! the metrics endpoint, around one shared [`Core`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clt_proto::clt_api::CltTrace;
use clt_proto::clt_api::clt_ioam_service_server::{CltIoamService, CltIoamServiceServer};
use clt_proto::ioam_api::IoamTrace;
use clt_proto::ioam_api::ioam_service_server::{IoamService, IoamServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, Streaming};

use crate::Error;
use crate::config::Config;
use crate::export::{BatchPolicy, Downstream, ExportQueue, OtlpDownstream, run_exporter};
use crate::join::{JoinConfig, JoinStats, Joiner};
use crate::metrics::{Counters, Snapshot, render};
use crate::model::{AttrValue, Attributes, IoamReport, OutKind, OutSpan, SpanKey};
use crate::store::Store;

/// State shared by every listener.
#[derive(Debug)]
pub struct Core {
    joiner: Mutex<Joiner>,
    queue: Arc<ExportQueue>,
    counters: Arc<Counters>,
    epoch: Instant,
    /// The embedded store, when there is no downstream. Weak: the exporter
    /// owns it, so the file lock goes when the exporter stops even while
    /// connections still hold the core.
    store: Option<std::sync::Weak<Store>>,
}

impl Core {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn emit(&self, out: Vec<OutSpan>) {
        if out.is_empty() {
            return;
        }
        let dropped = self.queue.push(out);
        if dropped > 0 {
            self.counters
                .export_spans_dropped
                .fetch_add(dropped, Ordering::Relaxed);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Joiner> {
        self.joiner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes an OTLP request: every span passes through, and the join learns
    /// its key and times.
    pub fn ingest_otlp(&self, req: ExportTraceServiceRequest) {
        self.counters.otlp_requests.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let mut spans = Vec::new();
        for rs in req.resource_spans {
            let resource = rs
                .resource
                .map(|r| attrs(&r.attributes))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                let (scope_name, scope_version) =
                    ss.scope.map(|s| (s.name, s.version)).unwrap_or_default();
                for sp in ss.spans {
                    spans.push(OutSpan {
                        trace_id: id128(&sp.trace_id),
                        span_id: id64(&sp.span_id),
                        parent_span_id: id64(&sp.parent_span_id),
                        name: sp.name.into(),
                        kind: match sp.kind {
                            1 => OutKind::Internal,
                            2 => OutKind::Server,
                            3 => OutKind::Client,
                            4 => OutKind::Producer,
                            5 => OutKind::Consumer,
                            _ => OutKind::Unspecified,
                        },
                        start_ns: sp.start_time_unix_nano,
                        end_ns: sp.end_time_unix_nano,
                        attributes: attrs(&sp.attributes),
                        events: sp
                            .events
                            .into_iter()
                            .map(|e| crate::model::OutEvent {
                                name: e.name,
                                time_ns: e.time_unix_nano,
                                attributes: attrs(&e.attributes),
                            })
                            .collect(),
                        status_code: sp.status.as_ref().map_or(0, |s| s.code as u8),
                        status_message: sp.status.map(|s| s.message).unwrap_or_default(),
                        resource: resource.clone(),
                        scope_name: scope_name.clone().into(),
                        scope_version: scope_version.clone().into(),
                    });
                }
            }
        }
        let mut out = Vec::new();
        {
            let mut j = self.lock();
            for s in &spans {
                if let Some(key) = SpanKey::new(s.trace_id, s.span_id) {
                    j.insert_span(key, s.start_ns, s.end_ns, now, &mut out);
                }
            }
        }
        self.emit(spans);
        self.emit(out);
    }

    pub fn ingest_ioam(&self, reports: &[IoamReport]) {
        let now = self.now_ms();
        let mut out = Vec::new();
        {
            let mut j = self.lock();
            for r in reports {
                j.insert_trace(r, now, &mut out);
            }
        }
        self.emit(out);
    }

    fn tick(&self) {
        let now = self.now_ms();
        let mut out = Vec::new();
        self.lock().expire(now, &mut out);
        self.emit(out);
    }

    fn flush(&self) {
        let mut out = Vec::new();
        self.lock().flush(&mut out);
        self.emit(out);
    }

    pub fn join_stats(&self) -> JoinStats {
        self.lock().stats()
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn export_queue_len(&self) -> usize {
        self.queue.len()
    }

    pub fn metrics_text(&self) -> String {
        let (join, pending_items, pending_bytes) = {
            let j = self.lock();
            (j.stats(), j.pending(), j.pending_bytes())
        };
        render(&Snapshot {
            join,
            pending_items,
            pending_bytes,
            export_queue_spans: self.queue.len(),
            export_queue_bytes: self.queue.bytes(),
            counters: &self.counters,
        })
    }
}

fn id128(b: &[u8]) -> u128 {
    <[u8; 16]>::try_from(b).map_or(0, u128::from_be_bytes)
}

fn id64(b: &[u8]) -> u64 {
    <[u8; 8]>::try_from(b).map_or(0, u64::from_be_bytes)
}

fn value(v: &Option<AnyValue>) -> AttrValue {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => AttrValue::Str(s.clone()),
        Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(*b),
        Some(any_value::Value::IntValue(i)) => AttrValue::Int(*i),
        Some(any_value::Value::DoubleValue(d)) => AttrValue::Double(*d),
        Some(other) => AttrValue::Str(format!("{other:?}")),
        None => AttrValue::Str(String::new()),
    }
}

fn attrs(kvs: &[KeyValue]) -> Attributes {
    kvs.iter()
        .map(|kv| (kv.key.clone().into(), value(&kv.value)))
        .collect()
}

#[derive(Debug, Clone)]
struct Svc(Arc<Core>);

#[tonic::async_trait]
impl TraceService for Svc {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.0.ingest_otlp(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Reads a report stream in chunks so the join lock is taken once per chunk:
/// what is already buffered (up to 256 messages) goes in together, and a
/// lone message goes in at once.
async fn drain<T, F>(core: &Core, mut stream: Streaming<T>, convert: F) -> Result<(), Status>
where
    F: Fn(T) -> IoamReport,
{
    core.counters.ioam_streams.fetch_add(1, Ordering::Relaxed);
    let mut chunk = Vec::with_capacity(256);
    loop {
        let mut next = stream.next().await;
        loop {
            match next {
                Some(Ok(msg)) => chunk.push(convert(msg)),
                Some(Err(status)) => {
                    let status = resource_exhausted(status);
                    if status.code() == tonic::Code::InvalidArgument {
                        core.counters
                            .ioam_messages_invalid
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    core.ingest_ioam(&chunk);
                    return Err(status);
                }
                None => {
                    core.ingest_ioam(&chunk);
                    return Ok(());
                }
            }
            if chunk.len() >= 256 {
                break;
            }
            // Polls once: a message already here, or on to ingesting.
            match tokio::time::timeout(Duration::ZERO, stream.next()).await {
                Ok(n) => next = n,
                Err(_) => break,
            }
        }
        core.ingest_ioam(&chunk);
        chunk.clear();
    }
}

/// tonic reports a message over `max_decoding_message_size` as OUT_OF_RANGE;
/// gRPC's status table says RESOURCE_EXHAUSTED, which clients retry-classify
/// correctly.
fn resource_exhausted(status: Status) -> Status {
    if status.code() == tonic::Code::OutOfRange
        && status.message().contains("message length too large")
    {
        Status::resource_exhausted(status.message().to_owned())
    } else {
        status
    }
}

#[tonic::async_trait]
impl IoamService for Svc {
    async fn report(&self, request: Request<Streaming<IoamTrace>>) -> Result<Response<()>, Status> {
        drain(&self.0, request.into_inner(), IoamReport::from_ioam).await?;
        Ok(Response::new(()))
    }
}

#[tonic::async_trait]
impl CltIoamService for Svc {
    async fn report(&self, request: Request<Streaming<CltTrace>>) -> Result<Response<()>, Status> {
        drain(&self.0, request.into_inner(), IoamReport::from_clt).await?;
        Ok(Response::new(()))
    }
}

/// A running collector: its bound addresses and a handle to stop it.
#[derive(Debug)]
pub struct Running {
    pub otlp_grpc: SocketAddr,
    pub otlp_http: SocketAddr,
    pub ioam: SocketAddr,
    pub metrics: SocketAddr,
    pub core: Arc<Core>,
    stop: Arc<Notify>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    exporter: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops the listeners, emits every pending entry and waits (up to
    /// `grace`) for the export buffer to drain.
    pub async fn shutdown(self, grace: Duration) {
        for t in &self.tasks {
            t.abort();
        }
        self.core.flush();
        self.stop.notify_waiters();
        self.stop.notify_one();
        let _ = tokio::time::timeout(grace, self.exporter).await;
        // The listeners' tasks hold the core (and so the store's file lock):
        // wait until they are gone.
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Error> {
    let l = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Io(format!("bind {addr}: {e}")))?;
    let a = l.local_addr().map_err(|e| Error::Io(e.to_string()))?;
    Ok((l, a))
}

fn grpc_builder(cfg: &Config) -> Result<tonic::transport::Server, Error> {
    let mut b = tonic::transport::Server::builder();
    match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|e| Error::Config(format!("{}: {e}", p.display())))
            };
            let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
            b = b
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .map_err(|e| Error::Config(format!("tls: {e}")))?;
        }
        (None, None) => {}
        _ => return Err(Error::Config("tls_cert and tls_key go together".into())),
    }
    Ok(b)
}

/// The same mapping as [`resource_exhausted`] for unary calls, whose decode
/// errors tonic answers before the handler runs: a trailers-only response
/// with the status in its headers.
fn resource_exhausted_response(
    mut r: tonic::codegen::http::Response<tonic::body::Body>,
) -> tonic::codegen::http::Response<tonic::body::Body> {
    let h = r.headers();
    let too_large = h.get("grpc-status").is_some_and(|v| v == "11")
        && h.get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| {
                m.contains("message length too large")
                    || m.contains("message%20length%20too%20large")
            });
    if too_large {
        r.headers_mut().insert(
            "grpc-status",
            tonic::codegen::http::HeaderValue::from_static("8"),
        );
    }
    r
}

/// Binds every listener and starts serving.
pub async fn start(cfg: Config) -> Result<Running, Error> {
    let (downstream, store) = match &cfg.downstream {
        Some(ep) => {
            let timeout = Duration::from_millis(cfg.export_timeout_ms);
            (Downstream::Otlp(OtlpDownstream::new(ep, timeout)?), None)
        }
        None => {
            let st = Arc::new(Store::open_with_sync(
                &cfg.store_path,
                cfg.store_max_spans,
                Duration::from_millis(cfg.store_sync_ms),
            )?);
            let weak = Arc::downgrade(&st);
            (Downstream::Store(st), Some(weak))
        }
    };
    let join_cfg = JoinConfig {
        max_delay_ms: cfg.max_delay_ms,
        linger_ms: cfg.linger_ms,
        max_items: cfg.max_pending_items,
        max_bytes: cfg.max_pending_bytes,
        resource: vec![(
            "service.name".into(),
            cfg.network_service_name.clone().into(),
        )],
    };
    let queue = Arc::new(ExportQueue::new(
        cfg.export_queue_max_spans,
        cfg.export_queue_max_bytes,
    ));
    let counters = Arc::new(Counters::default());
    let core = Arc::new(Core {
        joiner: Mutex::new(Joiner::new(join_cfg)),
        queue: Arc::clone(&queue),
        counters: Arc::clone(&counters),
        epoch: Instant::now(),
        store,
    });
    let stop = Arc::new(Notify::new());
    let exporter = tokio::spawn(run_exporter(
        queue,
        downstream,
        BatchPolicy {
            batch_size: cfg.export_batch_size,
            delay: Duration::from_millis(cfg.export_delay_ms),
        },
        counters,
        Arc::clone(&stop),
    ));

    let (otlp_l, otlp_grpc) = bind(cfg.otlp_grpc_listen).await?;
    let (http_l, otlp_http) = bind(cfg.otlp_http_listen).await?;
    let (ioam_l, ioam) = bind(cfg.ioam_listen).await?;
    let (metrics_l, metrics) = bind(cfg.metrics_listen).await?;
    let svc = Svc(Arc::clone(&core));
    let max = cfg.max_message_bytes;
    let mut tasks = Vec::new();

    let otlp = grpc_builder(&cfg)?
        .layer(tower::util::MapResponseLayer::new(
            resource_exhausted_response,
        ))
        .add_service(TraceServiceServer::new(svc.clone()).max_decoding_message_size(max));
    tasks.push(tokio::spawn(async move {
        if let Err(e) = otlp
            .serve_with_incoming(TcpListenerStream::new(otlp_l))
            .await
        {
            tracing::error!(error = %e, "otlp grpc listener failed");
        }
    }));
    let ioam_srv = grpc_builder(&cfg)?
        .add_service(IoamServiceServer::new(svc.clone()).max_decoding_message_size(max))
        .add_service(CltIoamServiceServer::new(svc.clone()).max_decoding_message_size(max));
    tasks.push(tokio::spawn(async move {
        if let Err(e) = ioam_srv
            .serve_with_incoming(TcpListenerStream::new(ioam_l))
            .await
        {
            tracing::error!(error = %e, "ioam grpc listener failed");
        }
    }));

    let http_core = Arc::clone(&core);
    let http = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let core = Arc::clone(&http_core);
                    async move { otlp_http_request(&core, &headers, &body) }
                },
            ),
        )
        .layer(axum::extract::DefaultBodyLimit::max(max));
    tasks.push(tokio::spawn(async move {
        if let Err(e) = axum::serve(http_l, http).await {
            tracing::error!(error = %e, "otlp http listener failed");
        }
    }));
    let m_core = Arc::clone(&core);
    let q_core = Arc::clone(&core);
    let m = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let core = Arc::clone(&m_core);
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        core.metrics_text(),
                    )
                }
            }),
        )
        .route(
            "/traces",
            axum::routing::get(move |q: axum::extract::RawQuery| {
                let core = Arc::clone(&q_core);
                async move { traces_text(&core, q.0.as_deref()).await }
            }),
        );
    tasks.push(tokio::spawn(async move {
        if let Err(e) = axum::serve(metrics_l, m).await {
            tracing::error!(error = %e, "metrics listener failed");
        }
    }));
    let t_core = Arc::clone(&core);
    tasks.push(tokio::spawn(async move {
        let mut iv = tokio::time::interval(Duration::from_millis(50));
        loop {
            iv.tick().await;
            t_core.tick();
        }
    }));
    tracing::info!(%otlp_grpc, %otlp_http, %ioam, %metrics, downstream = ?cfg.downstream, "collector listening");
    Ok(Running {
        otlp_grpc,
        otlp_http,
        ioam,
        metrics,
        core,
        stop,
        tasks,
        exporter,
    })
}

/// `GET /traces[?trace=<32 hex digits>]`: the embedded store as
/// `clt-collector traces` prints it (the CLI asks here while the collector
/// holds the store open).
async fn traces_text(core: &Core, query: Option<&str>) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    let Some(weak) = &core.store else {
        return (
            StatusCode::NOT_FOUND,
            "no embedded store: spans go downstream\n".into(),
        );
    };
    let Some(store) = weak.upgrade() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the collector is stopping\n".into(),
        );
    };
    let trace = match query.and_then(|q| q.strip_prefix("trace=")) {
        Some(t) => match u128::from_str_radix(t, 16) {
            Ok(id) => Some(id),
            Err(_) => return (StatusCode::BAD_REQUEST, "trace is 32 hex digits\n".into()),
        },
        None => None,
    };
    let spans = tokio::task::spawn_blocking(move || store.spans(trace)).await;
    match spans {
        Ok(Ok(spans)) => {
            let mut out = Vec::new();
            let _ = crate::store::print_traces(&spans, &mut out);
            (StatusCode::OK, String::from_utf8_lossy(&out).into_owned())
        }
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

fn otlp_http_request(
    core: &Core,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> (
    axum::http::StatusCode,
    [(axum::http::HeaderName, &'static str); 1],
    Vec<u8>,
) {
    use axum::http::{StatusCode, header::CONTENT_TYPE};
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/x-protobuf") {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            [(CONTENT_TYPE, "text/plain")],
            b"only application/x-protobuf is supported".to_vec(),
        );
    }
    match ExportTraceServiceRequest::decode(body) {
        Ok(req) => {
            core.ingest_otlp(req);
            let resp = ExportTraceServiceResponse {
                partial_success: None,
            };
            (
                StatusCode::OK,
                [(CONTENT_TYPE, "application/x-protobuf")],
                resp.encode_to_vec(),
            )
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            [(CONTENT_TYPE, "text/plain")],
            format!("invalid ExportTraceServiceRequest: {e}").into_bytes(),
        ),
    }
}
