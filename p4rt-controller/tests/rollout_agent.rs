//! Remote Linux nodes through `clt-node-agent`: examples/fabric-linux.clt's
//! five nodes in network namespaces, the spine and the api host reached
//! only through an agent running in their namespace (the real binary, over
//! a management veth, mutual TLS with certificates naming the nodes), the
//! others configured in process. The rollout's result is the same; a
//! failure on a remote node rolls back every node, the remote ones through
//! their agent's undo (every kernel read back); a controller without a
//! client certificate is refused before anything changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fabric_dir;
mod netns_util;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clt_controller::connect::TlsOptions;
use clt_controller::node_agent::AgentAddr;
use clt_controller::rollout::{self, Options};
use clt_testkit::{KillOnDrop, ip};
use netns_util::{LINKS, NODES, NodeNs, compile, example_src, rt};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// The nodes reached through an agent, with their management subnet.
const REMOTE: [(&str, u16); 2] = [("spine", 1), ("api", 2)];

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn issue(dir: &Path, name: &str, ca: &CertifiedIssuer<'_, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

/// The namespaces, links, certificates and agents; removed on drop.
struct Fabric {
    ns: HashMap<String, String>,
    /// Root-namespace ends of the management veths.
    mgmt: Vec<String>,
    agents: Vec<KillOnDrop>,
    nodes: NodeNs,
    pki: tempfile::TempDir,
    /// Remote node -> its agent's address.
    addr: HashMap<String, SocketAddr>,
}

impl Drop for Fabric {
    fn drop(&mut self) {
        self.agents.clear();
        for l in &self.mgmt {
            let _ = clt_testkit::try_ip(&["link", "del", l]);
        }
    }
}

impl Fabric {
    fn new() -> Fabric {
        let nodes = NodeNs::new("clag", NODES);
        for n in NODES {
            nodes.no_dad(n);
        }
        nodes.link(&LINKS);
        let mut f = Fabric {
            ns: nodes.names(),
            mgmt: Vec::new(),
            agents: Vec::new(),
            nodes,
            pki: tempfile::tempdir().unwrap(),
            addr: HashMap::new(),
        };
        let ca = ca();
        std::fs::write(f.pki.path().join("ca.pem"), ca.pem()).unwrap();
        issue(f.pki.path(), "controller", &ca);
        let agent_bin = env!("CARGO_BIN_EXE_clt-node-agent");
        for (node, k) in REMOTE {
            issue(f.pki.path(), node, &ca);
            // A management link from this namespace to the node's.
            let host = clt_testkit::unique_ifname(&format!("clagm{k}"));
            ip(&[
                "link",
                "add",
                "name",
                &host,
                "type",
                "veth",
                "peer",
                "name",
                "mgmt0",
                "netns",
                &f.ns[node],
            ]);
            f.mgmt.push(host.clone());
            let (mine, theirs) = (format!("fd00:c17:{k}::1"), format!("fd00:c17:{k}::2"));
            ip(&["addr", "add", &format!("{mine}/64"), "dev", &host, "nodad"]);
            ip(&["link", "set", &host, "up"]);
            ip(&[
                "-n",
                &f.ns[node],
                "addr",
                "add",
                &format!("{theirs}/64"),
                "dev",
                "mgmt0",
                "nodad",
            ]);
            ip(&["-n", &f.ns[node], "link", "set", "mgmt0", "up"]);
            let addr: SocketAddr = format!("[{theirs}]:7443").parse().unwrap();
            let pem = |n: &str| f.pki.path().join(n);
            let child = f.nodes[node]
                .command(agent_bin)
                .args(["--node", node])
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--cert")
                .arg(pem(&format!("{node}.pem")))
                .arg("--key")
                .arg(pem(&format!("{node}.key")))
                .arg("--client-ca")
                .arg(pem("ca.pem"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start clt-node-agent");
            f.agents.push(KillOnDrop(child));
            f.addr.insert(node.to_string(), addr);
        }
        for (node, addr) in &f.addr {
            let t0 = Instant::now();
            while TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_err() {
                assert!(
                    t0.elapsed() < Duration::from_secs(20),
                    "{node}'s agent does not listen on {addr}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        f
    }

    /// The local nodes by namespace, the remote ones by agent; with a
    /// client certificate or without.
    fn options(&self, client_cert: bool) -> Options {
        let pem = |n: &str| self.pki.path().join(n);
        Options {
            netns: self
                .ns
                .iter()
                .filter(|(n, _)| !self.addr.contains_key(*n))
                .map(|(n, ns)| (n.clone(), ns.clone()))
                .collect(),
            agents: self
                .addr
                .iter()
                .map(|(n, a)| {
                    let tls = TlsOptions {
                        ca: pem("ca.pem"),
                        cert: client_cert.then(|| pem("controller.pem")),
                        key: client_cert.then(|| pem("controller.key")),
                        domain: None,
                    };
                    (
                        n.clone(),
                        AgentAddr {
                            address: a.to_string(),
                            tls,
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }
    }
}

#[test]
fn remote_nodes_roll_out_and_back_through_their_agents() {
    clt_testkit::skip_if!(clt_testkit::skip::netns_unavailable());
    let fabric = Fabric::new();
    let rt = rt();
    let (_d, v1) = compile(&example_src());

    // 1. Without a client certificate the agents refuse the controller:
    //    the first remote step fails and the local steps before it are
    //    undone.
    let before = fabric.nodes.snapshot();
    let out = rt.block_on(rollout::run(None, &v1, &fabric.options(false), |_| {}));
    let failure = out.failure.as_ref().expect("the agents should refuse");
    assert_eq!(failure.step.node, "spine", "{out}");
    assert!(failure.cause.contains("agent"), "{}", failure.cause);
    assert!(failure.undo_errors.is_empty(), "{out}");
    assert_eq!(
        before,
        fabric.nodes.snapshot(),
        "a refused rollout changed a node"
    );

    // 2. A failure on a remote node (api has no eth0): every node is rolled
    //    back, spine through its agent's undo.
    let api = fabric.ns["api"].clone();
    ip(&["-n", &api, "link", "set", "eth0", "name", "wrong"]);
    let before = fabric.nodes.snapshot();
    let out = rt.block_on(rollout::run(None, &v1, &fabric.options(true), |_| {}));
    eprintln!("{out}");
    let failure = out.failure.as_ref().expect("the rollout should fail");
    assert_eq!(
        (failure.step.node.as_str(), failure.step.role.as_str()),
        ("api", "forwarding"),
        "{out}"
    );
    assert!(failure.cause.contains("eth0"), "{}", failure.cause);
    let undone: Vec<&str> = failure.undone.iter().map(|s| s.node.as_str()).collect();
    assert_eq!(undone, ["leaf2", "spine", "leaf1", "web"], "{out}");
    assert!(failure.undo_errors.is_empty(), "{out}");
    assert_eq!(
        before,
        fabric.nodes.snapshot(),
        "a node was not rolled back"
    );
    ip(&["-n", &api, "link", "set", "wrong", "name", "eth0"]);

    // 3. The whole fabric, two nodes of it through their agents: the same
    //    ten verified steps as in process, every node as its plan says.
    let out = rt.block_on(rollout::run(None, &v1, &fabric.options(true), |_| {}));
    assert!(out.failure.is_none(), "{out}");
    eprintln!("{out}");
    assert_eq!(out.done.len(), 10, "{out}");
    fabric.nodes.assert_matches(&v1);
    // Again: nothing to change, remote nodes included.
    let again = rt.block_on(rollout::run(None, &v1, &fabric.options(true), |_| {}));
    assert!(again.failure.is_none(), "{again}");
    assert!(again.touched().is_empty(), "{again}");
}

#[test]
fn agents_are_reached_over_tls_only() {
    let (dir, _) = compile(&example_src());
    let out = Command::new(env!("CARGO_BIN_EXE_clt-controller"))
        .arg("rollout")
        .arg(dir.path())
        .args(["--agent", "api=[::1]:7443"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--agent-ca"), "{err}");
}
