//! The Linux node agent (`clt-node-agent`, package `clt_node` of clt-proto)
//! and the rollout's client of it.
//!
//! A Linux node on another machine runs the agent; the rollout sends it
//! each step's plan (cut to the step by the controller, as for a local
//! node) and the agent runs exactly what the controller runs for a local
//! node (`rollout::linux_step`: diff, execute, read back, undo on a
//! mismatch) in its own kernel. The inverses of the changes made stay on
//! the agent under a token, for the rollback's `Undo`. The agent serves
//! over TLS, and with a client CA only to clients with a certificate it
//! signed (mutual TLS); the controller checks that the agent's certificate
//! names the node.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clt_linux::plan::{self as lplan, Change};
use clt_proto::clt_node::node_agent_client::NodeAgentClient;
use clt_proto::clt_node::node_agent_server::{NodeAgent, NodeAgentServer};
use clt_proto::clt_node::{ApplyReply, DiffReply, StepRequest, UndoReply, UndoRequest};
use cltc::artifact::linux::LinuxPlan;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Response, Status};

use crate::connect::{TlsOptions, connect};

/// The undo lists an agent keeps (the oldest are dropped past this).
const MAX_KEPT: usize = 1024;

/// The inverses of the steps applied, by token, and the order the tokens
/// were given in.
#[derive(Debug, Default)]
struct Kept {
    by_token: HashMap<String, Vec<Change>>,
    order: std::collections::VecDeque<String>,
}

/// The agent's service: one node, its own network namespace.
#[derive(Debug)]
pub struct Agent {
    node: String,
    next: AtomicU64,
    kept: Mutex<Kept>,
}

impl Agent {
    pub fn new(node: &str) -> Agent {
        Agent {
            node: node.to_string(),
            next: AtomicU64::new(1),
            kept: Mutex::new(Kept::default()),
        }
    }

    fn parse(&self, req: &StepRequest) -> Result<(LinuxPlan, lplan::Options), Status> {
        if req.node != self.node {
            return Err(Status::invalid_argument(format!(
                "this agent configures node {}, not {}",
                self.node, req.node
            )));
        }
        let plan: LinuxPlan = serde_json::from_str(&req.plan_json)
            .map_err(|e| Status::invalid_argument(format!("plan: {e}")))?;
        let insertion = req
            .insertion
            .parse::<clt_linux::Insertion>()
            .map_err(|e| Status::invalid_argument(format!("insertion: {e}")))?;
        Ok((plan, lplan::Options { insertion }))
    }
}

fn failed(e: impl std::fmt::Display) -> Status {
    Status::failed_precondition(e.to_string())
}

#[tonic::async_trait]
impl NodeAgent for Agent {
    async fn diff(&self, req: Request<StepRequest>) -> Result<Response<DiffReply>, Status> {
        let req = req.into_inner();
        let (plan, opts) = self.parse(&req)?;
        let teardown = req.teardown;
        let changes = tokio::task::spawn_blocking(move || {
            let nl = clt_linux::nl::Netlink::open()?;
            if teardown {
                let state = lplan::KernelState::read(&nl)?;
                lplan::teardown_against(&plan, &state)
            } else {
                lplan::diff(&nl, &plan, &opts).map(|d| d.changes)
            }
        })
        .await
        .map_err(failed)?
        .map_err(failed)?;
        Ok(Response::new(DiffReply {
            changes: changes.iter().map(|c| c.to_string()).collect(),
        }))
    }

    async fn apply(&self, req: Request<StepRequest>) -> Result<Response<ApplyReply>, Status> {
        let req = req.into_inner();
        let (plan, opts) = self.parse(&req)?;
        let teardown = req.teardown;
        let (changes, undo, cannot) = tokio::task::spawn_blocking(move || {
            crate::rollout::linux_step(None, plan, teardown, opts)
        })
        .await
        .map_err(failed)?
        .map_err(failed)?;
        let token = if changes.is_empty() {
            String::new()
        } else {
            let token = format!(
                "{}-{}",
                self.node,
                self.next.fetch_add(1, Ordering::Relaxed)
            );
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            kept.by_token.insert(token.clone(), undo);
            kept.order.push_back(token.clone());
            while kept.order.len() > MAX_KEPT {
                if let Some(old) = kept.order.pop_front() {
                    kept.by_token.remove(&old);
                }
            }
            token
        };
        tracing::info!(node = %self.node, changes = changes.len(), teardown, "step applied and read back");
        Ok(Response::new(ApplyReply {
            changes: changes.iter().map(|c| c.to_string()).collect(),
            undo_token: token,
            cannot_undo: cannot,
        }))
    }

    async fn undo(&self, req: Request<UndoRequest>) -> Result<Response<UndoReply>, Status> {
        let token = req.into_inner().undo_token;
        if token.is_empty() {
            return Ok(Response::new(UndoReply {}));
        }
        let undo = {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            kept.order.retain(|t| t != &token);
            kept.by_token.remove(&token)
        }
        .ok_or_else(|| {
            Status::not_found(format!(
                "no changes kept under {token} (agent restarted, or already undone)"
            ))
        })?;
        tokio::task::spawn_blocking(move || crate::rollout::linux_undo(None, undo))
            .await
            .map_err(failed)?
            .map_err(failed)?;
        tracing::info!(node = %self.node, %token, "step undone");
        Ok(Response::new(UndoReply {}))
    }
}

/// The agent's TLS: its certificate and key, and the CA of the clients it
/// accepts (absent: any client, TLS without client certificates).
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

fn read(path: &PathBuf) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Serves the agent for `node` on `listen` until `shutdown` resolves.
pub async fn serve(
    node: &str,
    listen: SocketAddr,
    tls: &ServerTls,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut config =
        ServerTlsConfig::new().identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?));
    if let Some(ca) = &tls.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    tonic::transport::Server::builder()
        .tls_config(config)?
        .add_service(NodeAgentServer::new(Agent::new(node)))
        .serve_with_shutdown(listen, shutdown)
        .await?;
    Ok(())
}

/// Where the rollout finds a Linux node's agent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentAddr {
    /// `host:port`.
    pub address: String,
    /// TLS to the agent (its certificate must name the node unless
    /// `domain` says otherwise).
    pub tls: TlsOptions,
}

/// How long the rollout waits for an agent's answer to one step.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

async fn client(
    node: &str,
    agent: &AgentAddr,
) -> Result<NodeAgentClient<tonic::transport::Channel>, String> {
    let mut tls = agent.tls.clone();
    if tls.domain.is_none() {
        tls.domain = Some(node.to_string());
    }
    let channel = connect(&agent.address, Some(&tls), Duration::from_secs(5))
        .await
        .map_err(|e| format!("agent unreachable: {e}"))?;
    Ok(NodeAgentClient::new(channel))
}

/// A step on a remote node: the agent applies (or tears down) `plan` and
/// reads it back. Returns the changes made, the undo token and what has no
/// inverse.
pub(crate) async fn remote_step(
    node: &str,
    agent: &AgentAddr,
    plan: &LinuxPlan,
    teardown: bool,
    insertion: clt_linux::Insertion,
) -> Result<(Vec<String>, String, Vec<String>), String> {
    let mut c = client(node, agent).await?;
    let mut req = Request::new(StepRequest {
        node: node.to_string(),
        plan_json: serde_json::to_string(plan).map_err(|e| e.to_string())?,
        teardown,
        insertion: insertion_text(insertion).to_string(),
    });
    req.set_timeout(STEP_TIMEOUT);
    let r = c
        .apply(req)
        .await
        .map_err(|s| format!("agent {}: {}", agent.address, s.message()))?
        .into_inner();
    Ok((r.changes, r.undo_token, r.cannot_undo))
}

/// Undoes a remote step (tried three times, one second apart).
pub(crate) async fn remote_undo(node: &str, agent: &AgentAddr, token: &str) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let mut c = match client(node, agent).await {
            Ok(c) => c,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let mut req = Request::new(UndoRequest {
            undo_token: token.to_string(),
        });
        req.set_timeout(STEP_TIMEOUT);
        match c.undo(req).await {
            Ok(_) => return Ok(()),
            // The agent has nothing to undo under this token: retrying
            // cannot help.
            Err(s) if s.code() == tonic::Code::NotFound => {
                return Err(format!("agent {}: {}", agent.address, s.message()));
            }
            Err(s) => last = format!("agent {}: {}", agent.address, s.message()),
        }
    }
    Err(last)
}

fn insertion_text(i: clt_linux::Insertion) -> &'static str {
    match i {
        clt_linux::Insertion::Route => "route",
        clt_linux::Insertion::Socket => "socket",
        clt_linux::Insertion::Auto => "auto",
    }
}
