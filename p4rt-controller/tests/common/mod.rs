//! An in-process P4Runtime server with a scriptable state machine, and an
//! in-process IOAM collector, for the controller's protocol tests.
//!
//! The switch follows the P4Runtime specification where the tests rely on
//! it: arbitration by highest election id with updates to every client on a
//! change, writes only from the primary, INSERT of an existing entry fails
//! with ALREADY_EXISTS and MODIFY/DELETE of a missing one with NOT_FOUND,
//! per-update errors in the status details, VERIFY_AND_COMMIT clears the
//! tables, COOKIE_ONLY returns the cookie.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clt_controller::proto::google::rpc;
use clt_controller::proto::p4::config::v1 as cfg;
use clt_controller::proto::p4::v1 as p4;
use clt_controller::reconcile::EntryKey;
use clt_controller::write::status_with_errors;
use clt_proto::ioam_api::IoamTrace;
use clt_proto::ioam_api::ioam_service_server::{IoamService, IoamServiceServer};
use p4::p4_runtime_server::{P4Runtime, P4RuntimeServer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Code, Request, Response, Status, Streaming};

type Rejector = Box<dyn Fn(&p4::Update) -> Option<(Code, String)> + Send>;

/// The switch's state; tests read and script it through [`FakeSwitch::state`].
#[derive(Default)]
pub struct State {
    pub pipeline: Option<p4::ForwardingPipelineConfig>,
    pub tables: BTreeMap<EntryKey, p4::TableEntry>,
    pub digest_configs: HashMap<u32, p4::digest_entry::Config>,
    /// Connected stream clients: id -> (election id, sender).
    clients: BTreeMap<
        u64,
        (
            u128,
            mpsc::Sender<Result<p4::StreamMessageResponse, Status>>,
        ),
    >,
    next_client: u64,
    /// The current primary's election id.
    pub primary: Option<u128>,
    pub acks: Vec<(u32, u64)>,
    pub write_calls: usize,
    /// Updates received by Write, per call.
    pub write_sizes: Vec<usize>,
    pub set_pipeline_calls: usize,
    pub get_pipeline_calls: usize,
    pub read_calls: usize,
    /// Scripted rejections: an update the closure names fails with its code.
    pub reject: Option<Rejector>,
}

impl State {
    fn notify_arbitration(&mut self) {
        let highest = self.clients.values().map(|(e, _)| *e).max();
        self.primary = highest;
        for (election_id, tx) in self.clients.values() {
            let ok = Some(*election_id) == highest;
            let update = p4::MasterArbitrationUpdate {
                device_id: 1,
                role: None,
                election_id: highest.map(uint128),
                status: Some(rpc::Status {
                    code: if ok { 0 } else { Code::AlreadyExists as i32 },
                    message: if ok {
                        "primary".into()
                    } else {
                        "backup".into()
                    },
                    details: vec![],
                }),
            };
            let _ = tx.try_send(Ok(p4::StreamMessageResponse {
                update: Some(p4::stream_message_response::Update::Arbitration(update)),
            }));
        }
    }

    fn check_primary(&self, election_id: &Option<p4::Uint128>) -> Result<(), Status> {
        let e = election_id.as_ref().map(from_uint128);
        if e.is_some() && e == self.primary {
            Ok(())
        } else {
            Err(Status::permission_denied("not primary"))
        }
    }

    fn apply(&mut self, u: &p4::Update) -> Result<(), (Code, String)> {
        if let Some(reject) = &self.reject {
            if let Some(err) = reject(u) {
                return Err(err);
            }
        }
        let entity = u.entity.as_ref().and_then(|e| e.entity.as_ref());
        match entity {
            Some(p4::entity::Entity::TableEntry(t)) => {
                let known = self
                    .pipeline
                    .as_ref()
                    .and_then(|p| p.p4info.as_ref())
                    .is_some_and(|i| {
                        i.tables
                            .iter()
                            .any(|x| x.preamble.as_ref().is_some_and(|p| p.id == t.table_id))
                    });
                if !known {
                    return Err((Code::NotFound, format!("table {} not found", t.table_id)));
                }
                let key = EntryKey::of(t);
                match p4::update::Type::try_from(u.r#type) {
                    Ok(p4::update::Type::Insert) => {
                        if self.tables.contains_key(&key) {
                            return Err((Code::AlreadyExists, "match entry exists".into()));
                        }
                        self.tables.insert(key, t.clone());
                    }
                    Ok(p4::update::Type::Modify) => {
                        if t.is_default_action {
                            self.tables.insert(key, t.clone());
                        } else if let Some(e) = self.tables.get_mut(&key) {
                            *e = t.clone();
                        } else {
                            return Err((Code::NotFound, "cannot modify a missing entry".into()));
                        }
                    }
                    Ok(p4::update::Type::Delete) => {
                        if self.tables.remove(&key).is_none() {
                            return Err((Code::NotFound, "cannot delete a missing entry".into()));
                        }
                    }
                    _ => return Err((Code::InvalidArgument, "update type".into())),
                }
                Ok(())
            }
            Some(p4::entity::Entity::DigestEntry(d)) => {
                let exists = self.digest_configs.contains_key(&d.digest_id);
                match p4::update::Type::try_from(u.r#type) {
                    Ok(p4::update::Type::Insert) if exists => {
                        Err((Code::AlreadyExists, "digest configured".into()))
                    }
                    Ok(p4::update::Type::Modify) if !exists => {
                        Err((Code::NotFound, "digest not configured".into()))
                    }
                    _ => {
                        self.digest_configs
                            .insert(d.digest_id, d.config.unwrap_or_default());
                        Ok(())
                    }
                }
            }
            _ => Err((Code::Unimplemented, "entity".into())),
        }
    }
}

pub fn uint128(v: u128) -> p4::Uint128 {
    p4::Uint128 {
        high: (v >> 64) as u64,
        low: v as u64,
    }
}

pub fn from_uint128(v: &p4::Uint128) -> u128 {
    (u128::from(v.high) << 64) | u128::from(v.low)
}

/// The P4Runtime service over shared state.
#[derive(Clone, Default)]
pub struct FakeSwitch {
    pub state: Arc<Mutex<State>>,
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl P4Runtime for FakeSwitch {
    async fn write(
        &self,
        request: Request<p4::WriteRequest>,
    ) -> Result<Response<p4::WriteResponse>, Status> {
        let req = request.into_inner();
        let mut st = self.state.lock().unwrap();
        st.write_calls += 1;
        st.write_sizes.push(req.updates.len());
        st.check_primary(&req.election_id)?;
        let mut errors = Vec::with_capacity(req.updates.len());
        let mut failed = false;
        for u in &req.updates {
            match st.apply(u) {
                Ok(()) => errors.push(p4::Error::default()),
                Err((code, message)) => {
                    failed = true;
                    errors.push(p4::Error {
                        canonical_code: code as i32,
                        message,
                        ..Default::default()
                    });
                }
            }
        }
        if failed {
            return Err(status_with_errors(Code::Unknown, "write failed", &errors));
        }
        Ok(Response::new(p4::WriteResponse {}))
    }

    type ReadStream = ResponseStream<p4::ReadResponse>;

    async fn read(
        &self,
        request: Request<p4::ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let req = request.into_inner();
        let mut st = self.state.lock().unwrap();
        st.read_calls += 1;
        let mut out = Vec::new();
        for e in &req.entities {
            if let Some(p4::entity::Entity::TableEntry(want)) = &e.entity {
                for t in st.tables.values() {
                    if (want.table_id == 0 || want.table_id == t.table_id)
                        && t.is_default_action == want.is_default_action
                    {
                        out.push(p4::Entity {
                            entity: Some(p4::entity::Entity::TableEntry(t.clone())),
                        });
                    }
                }
            }
        }
        // Several responses, as servers do for large reads.
        let chunks: Vec<Result<p4::ReadResponse, Status>> = out
            .chunks(500)
            .map(|c| {
                Ok(p4::ReadResponse {
                    entities: c.to_vec(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn set_forwarding_pipeline_config(
        &self,
        request: Request<p4::SetForwardingPipelineConfigRequest>,
    ) -> Result<Response<p4::SetForwardingPipelineConfigResponse>, Status> {
        let req = request.into_inner();
        let mut st = self.state.lock().unwrap();
        st.set_pipeline_calls += 1;
        st.check_primary(&req.election_id)?;
        if req.action != p4::set_forwarding_pipeline_config_request::Action::VerifyAndCommit as i32
        {
            return Err(Status::unimplemented("only VERIFY_AND_COMMIT"));
        }
        let config = req
            .config
            .ok_or_else(|| Status::invalid_argument("no config"))?;
        st.pipeline = Some(config);
        st.tables.clear();
        st.digest_configs.clear();
        Ok(Response::new(p4::SetForwardingPipelineConfigResponse {}))
    }

    async fn get_forwarding_pipeline_config(
        &self,
        request: Request<p4::GetForwardingPipelineConfigRequest>,
    ) -> Result<Response<p4::GetForwardingPipelineConfigResponse>, Status> {
        let req = request.into_inner();
        let mut st = self.state.lock().unwrap();
        st.get_pipeline_calls += 1;
        let Some(p) = &st.pipeline else {
            return Err(Status::failed_precondition(
                "no forwarding pipeline config set",
            ));
        };
        let config = if req.response_type
            == p4::get_forwarding_pipeline_config_request::ResponseType::CookieOnly as i32
        {
            p4::ForwardingPipelineConfig {
                cookie: p.cookie,
                ..Default::default()
            }
        } else {
            p.clone()
        };
        Ok(Response::new(p4::GetForwardingPipelineConfigResponse {
            config: Some(config),
        }))
    }

    type StreamChannelStream = ResponseStream<p4::StreamMessageResponse>;

    async fn stream_channel(
        &self,
        request: Request<Streaming<p4::StreamMessageRequest>>,
    ) -> Result<Response<Self::StreamChannelStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(1024);
        let state = self.state.clone();
        let id = {
            let mut st = state.lock().unwrap();
            st.next_client += 1;
            st.next_client
        };
        tokio::spawn(async move {
            let mut tx = Some(tx);
            while let Some(Ok(msg)) = inbound.next().await {
                let mut st = state.lock().unwrap();
                match msg.update {
                    Some(p4::stream_message_request::Update::Arbitration(a)) => {
                        let e = a.election_id.as_ref().map_or(0, from_uint128);
                        if let Some(tx) = tx.take() {
                            st.clients.insert(id, (e, tx));
                        } else if let Some(c) = st.clients.get_mut(&id) {
                            c.0 = e;
                        }
                        st.notify_arbitration();
                    }
                    Some(p4::stream_message_request::Update::DigestAck(ack)) => {
                        st.acks.push((ack.digest_id, ack.list_id));
                    }
                    _ => {}
                }
            }
            let mut st = state.lock().unwrap();
            if st.clients.remove(&id).is_some() {
                st.notify_arbitration();
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn capabilities(
        &self,
        _request: Request<p4::CapabilitiesRequest>,
    ) -> Result<Response<p4::CapabilitiesResponse>, Status> {
        Ok(Response::new(p4::CapabilitiesResponse {
            p4runtime_api_version: "1.4.0".into(),
        }))
    }
}

impl FakeSwitch {
    /// Serves on 127.0.0.1 with an ephemeral port.
    pub async fn start() -> (FakeSwitch, SocketAddr) {
        FakeSwitch::start_with(None).await
    }

    /// Serves with TLS (mutual when the config has a client CA).
    pub async fn start_with(
        tls: Option<tonic::transport::ServerTlsConfig>,
    ) -> (FakeSwitch, SocketAddr) {
        let sw = FakeSwitch::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = P4RuntimeServer::new(sw.clone())
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20);
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).unwrap();
        }
        tokio::spawn(
            builder
                .add_service(svc)
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        (sw, addr)
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Sends a DigestList to the primary client.
    pub fn send_digest(&self, list: p4::DigestList) {
        let st = self.state();
        let primary = st.primary;
        for (e, tx) in st.clients.values() {
            if Some(*e) == primary {
                tx.try_send(Ok(p4::StreamMessageResponse {
                    update: Some(p4::stream_message_response::Update::Digest(list.clone())),
                }))
                .unwrap();
            }
        }
    }

    /// A switch restart: every stream breaks, pipeline and tables are gone.
    pub fn restart(&self) {
        let mut st = self.state();
        for (_, (_, tx)) in std::mem::take(&mut st.clients) {
            let _ = tx.try_send(Err(Status::unavailable("switch restarting")));
        }
        st.primary = None;
        st.pipeline = None;
        st.tables.clear();
        st.digest_configs.clear();
    }
}

/// Waits (bounded) until `f` holds.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The IOAM collector side: records what it receives.
#[derive(Clone, Default)]
pub struct Collector(pub Arc<Mutex<Vec<IoamTrace>>>);

#[tonic::async_trait]
impl IoamService for Collector {
    async fn report(
        &self,
        request: tonic::Request<tonic::Streaming<IoamTrace>>,
    ) -> Result<tonic::Response<()>, tonic::Status> {
        let mut s = request.into_inner();
        while let Some(t) = s.message().await? {
            self.0.lock().unwrap().push(t);
        }
        Ok(tonic::Response::new(()))
    }
}

pub async fn start_collector_at(at: SocketAddr) -> (Collector, std::net::SocketAddr) {
    let c = Collector::default();
    let listener = tokio::net::TcpListener::bind(at).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(IoamServiceServer::new(c.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (c, addr)
}

pub async fn start_collector() -> (Collector, std::net::SocketAddr) {
    start_collector_at("127.0.0.1:0".parse().unwrap()).await
}

// ---------------------------------------------------------------------------
// A small program's P4Info: an IPv6 LPM table and the IOAM digest.

pub const TABLE_LPM: u32 = 0x0200_0001;
pub const FIELD_DST: u32 = 1;
pub const ACTION_NEXTHOP: u32 = 0x0100_0001;
pub const PARAM_PORT: u32 = 1;
pub const PARAM_DMAC: u32 = 2;
pub const DIGEST_ID: u32 = 0x1700_0001;

fn preamble(id: u32, name: &str) -> Option<cfg::Preamble> {
    Some(cfg::Preamble {
        id,
        name: name.into(),
        alias: name.rsplit('.').next().unwrap_or(name).into(),
        ..Default::default()
    })
}

fn bits(w: i32) -> Option<cfg::P4DataTypeSpec> {
    Some(cfg::P4DataTypeSpec {
        type_spec: Some(cfg::p4_data_type_spec::TypeSpec::Bitstring(
            cfg::P4BitstringLikeTypeSpec {
                type_spec: Some(cfg::p4_bitstring_like_type_spec::TypeSpec::Bit(
                    cfg::P4BitTypeSpec { bitwidth: w },
                )),
                ..Default::default()
            },
        )),
    })
}

/// The digest struct's members and widths (node data for 4 hops of 8 bytes).
pub const DIGEST_MEMBERS: [(&str, i32); 7] = [
    ("namespace_id", 16),
    ("trace_type", 24),
    ("rem_len", 7),
    ("flags", 4),
    ("node_data", 256),
    ("trace_id", 128),
    ("span_id", 64),
];

pub fn p4info() -> cfg::P4Info {
    let mut type_info = cfg::P4TypeInfo::default();
    type_info.structs.insert(
        "clt_digest_t".into(),
        cfg::P4StructTypeSpec {
            members: DIGEST_MEMBERS
                .iter()
                .map(|(n, w)| cfg::p4_struct_type_spec::Member {
                    name: (*n).into(),
                    type_spec: bits(*w),
                })
                .collect(),
            ..Default::default()
        },
    );
    cfg::P4Info {
        pkg_info: Some(cfg::PkgInfo {
            arch: "v1model".into(),
            ..Default::default()
        }),
        tables: vec![cfg::Table {
            preamble: preamble(TABLE_LPM, "ingress.ipv6_lpm"),
            match_fields: vec![cfg::MatchField {
                id: FIELD_DST,
                name: "hdr.ipv6.dst_addr".into(),
                bitwidth: 128,
                r#match: Some(cfg::match_field::Match::MatchType(
                    cfg::match_field::MatchType::Lpm as i32,
                )),
                ..Default::default()
            }],
            action_refs: vec![cfg::ActionRef {
                id: ACTION_NEXTHOP,
                ..Default::default()
            }],
            size: 65536,
            ..Default::default()
        }],
        actions: vec![cfg::Action {
            preamble: preamble(ACTION_NEXTHOP, "ingress.set_nexthop"),
            params: vec![
                cfg::action::Param {
                    id: PARAM_PORT,
                    name: "port".into(),
                    bitwidth: 9,
                    ..Default::default()
                },
                cfg::action::Param {
                    id: PARAM_DMAC,
                    name: "dmac".into(),
                    bitwidth: 48,
                    ..Default::default()
                },
            ],
        }],
        digests: vec![cfg::Digest {
            preamble: preamble(DIGEST_ID, "clt_digest_t"),
            type_spec: Some(cfg::P4DataTypeSpec {
                type_spec: Some(cfg::p4_data_type_spec::TypeSpec::Struct(cfg::P4NamedType {
                    name: "clt_digest_t".into(),
                })),
            }),
        }],
        type_info: Some(type_info),
        ..Default::default()
    }
}

/// Shortest big-endian form, as P4Runtime wants bytestrings.
pub fn canonical(bytes: &[u8]) -> Vec<u8> {
    let first = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    bytes[first..].to_vec()
}

/// A route: `prefix/len -> port, dmac`.
pub fn route(prefix: std::net::Ipv6Addr, len: i32, port: u16, dmac: [u8; 6]) -> p4::TableEntry {
    p4::TableEntry {
        table_id: TABLE_LPM,
        r#match: vec![p4::FieldMatch {
            field_id: FIELD_DST,
            field_match_type: Some(p4::field_match::FieldMatchType::Lpm(p4::field_match::Lpm {
                value: canonical(&prefix.octets()),
                prefix_len: len,
            })),
        }],
        action: Some(p4::TableAction {
            r#type: Some(p4::table_action::Type::Action(p4::Action {
                action_id: ACTION_NEXTHOP,
                params: vec![
                    p4::action::Param {
                        param_id: PARAM_PORT,
                        value: canonical(&port.to_be_bytes()),
                    },
                    p4::action::Param {
                        param_id: PARAM_DMAC,
                        value: canonical(&dmac),
                    },
                ],
            })),
        }),
        ..Default::default()
    }
}

/// `n` distinct /64 routes under 2001:db8::/32.
pub fn routes(n: usize) -> Vec<p4::TableEntry> {
    (0..n)
        .map(|i| {
            let i = i as u32;
            let addr =
                std::net::Ipv6Addr::new(0x2001, 0xdb8, (i >> 16) as u16, i as u16, 0, 0, 0, 0);
            route(
                addr,
                64,
                (i % 8) as u16 + 1,
                [0x02, 0, 0, 0, 0, (i % 200) as u8 + 1],
            )
        })
        .collect()
}

/// The Python that runs p4runtime-shell and the official P4Runtime bindings:
/// `$P4RUNTIME_SHELL_PYTHON`, else the venv `scripts/install-test-deps`
/// makes, else `python3`.
pub fn shell_python() -> String {
    std::env::var("P4RUNTIME_SHELL_PYTHON").unwrap_or_else(|_| {
        let venv = "/opt/clt-test-venv/bin/python";
        if std::path::Path::new(venv).exists() {
            venv
        } else {
            "python3"
        }
        .into()
    })
}

/// A session to device 1 of the switch at `addr` with `election_id`
/// (primary unless a higher one is connected).
pub async fn session(addr: SocketAddr, election_id: u128) -> clt_controller::Session {
    let channel = clt_controller::connect::connect(&addr.to_string(), None, Duration::from_secs(5))
        .await
        .unwrap();
    let mut opts = clt_controller::SessionOptions::new(1, election_id);
    opts.arbitration_timeout = Duration::from_secs(5);
    clt_controller::Session::open(channel, opts).await.unwrap()
}

/// The test program's pipeline, its cookie from `tag`, with a stand-in
/// device config.
pub fn pipeline(tag: &[u8]) -> clt_controller::inputs::Pipeline {
    let p4info = p4info();
    let device_config = b"{\"bmv2\": \"json\"}".to_vec();
    clt_controller::inputs::Pipeline {
        cookie: clt_controller::inputs::cookie(tag, &p4info, &device_config),
        p4info,
        device_config,
    }
}

/// The response (status line, headers, body) to a plain HTTP/1.1 GET of
/// `path` at `addr`, e.g. the daemon's metrics endpoint.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Why p4runtime-shell cannot run here, if `python` cannot import it.
pub fn shell_missing(python: &str) -> Option<String> {
    let importable = std::process::Command::new(python)
        .args(["-c", "import p4runtime_sh.shell"])
        .output()
        .is_ok_and(|o| o.status.success());
    (!importable).then(|| {
        format!(
            "`{python} -c 'import p4runtime_sh.shell'` fails (pip install p4runtime-shell, or set P4RUNTIME_SHELL_PYTHON)"
        )
    })
}

/// p4runtime-shell (`benches/p4runtime_shell_routes.py`) pushes a pipeline
/// of [`p4info`], as text, and an empty device config to the switch at
/// `addr`, then inserts [`routes`]`(n)`, one Write each. The script's
/// output: its last line is the seconds the inserts took.
pub async fn shell_insert_routes(python: &str, addr: SocketAddr, n: usize) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let p4info_path = dir.path().join("p4info.txtpb");
    let config_path = dir.path().join("program.json");
    std::fs::write(
        &p4info_path,
        clt_controller::inputs::to_text("p4.config.v1.P4Info", &p4info()).unwrap(),
    )
    .unwrap();
    std::fs::write(&config_path, b"{}").unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/p4runtime_shell_routes.py"
    );
    tokio::process::Command::new(python)
        .args([
            script,
            &addr.to_string(),
            p4info_path.to_str().unwrap(),
            config_path.to_str().unwrap(),
            &n.to_string(),
        ])
        .output()
        .await
        .unwrap()
}

/// A device on the in-process switch at `addr`: device id 1, election id
/// 1, short timeouts and backoff.
pub fn spec(addr: std::net::SocketAddr, name: &str) -> clt_controller::device::DeviceSpec {
    let mut session = clt_controller::SessionOptions::new(1, 1);
    session.arbitration_timeout = Duration::from_secs(5);
    clt_controller::device::DeviceSpec {
        name: name.into(),
        address: addr.to_string(),
        tls: None,
        session,
        batch_size: 8,
        digest: clt_controller::config::DigestConfig::default(),
        connect_timeout: Duration::from_secs(2),
        backoff: (Duration::from_millis(20), Duration::from_millis(200)),
        resync: None,
    }
}

/// A device running its control loop (`Device::run`) on a task, as the
/// daemon runs it.
pub struct Running {
    pub device: Arc<clt_controller::device::Device>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn spawn(device: clt_controller::device::Device) -> Running {
        let device = Arc::new(device);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn({
            let d = device.clone();
            async move { d.run(stop_rx).await }
        });
        Running { device, stop, task }
    }

    /// Asks the loop to stop and waits for it, `within` at most.
    pub async fn stop_within(self, within: Duration) {
        self.stop.send_replace(true);
        tokio::time::timeout(within, self.task)
            .await
            .expect("the device stops in time")
            .unwrap();
    }

    pub async fn stop(self) {
        self.stop_within(Duration::from_secs(10)).await;
    }
}
