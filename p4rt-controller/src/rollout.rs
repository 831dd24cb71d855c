//! Rolling a compiled fabric out to Linux nodes and P4 devices, in the order
//! of `rollout.json`, one verified step at a time, with rollback.
//!
//! A rollout is a list of [`Step`]s: (node, stage role). Apply stages are
//! `forwarding`, `decap`, `transit`, `encap`; removal stages run in reverse
//! (`encap` first). Each step is made and then read back: for a Linux node a
//! second `clt-linux` diff must be empty, for a P4 device the read-back
//! entries must equal the compiled ones. When a step fails, every step
//! already made is undone, newest first, and the [`Outcome`] names the node,
//! the cause and what was undone.
//!
//! Linux stages are cumulative sub-plans of the node's plan (see
//! [`linux_stage_plan`]): `forwarding` has no IOAM (no namespaces, no
//! `ioam6` sysctls, routes without encapsulation), `decap`/`transit` add the
//! IOAM namespaces and sysctls, `encap` is the whole plan. A P4 device gets
//! its pipeline and all its entries at its first stage (the controller's
//! `Device::install`) and is re-verified at the later ones; in a removal it
//! loses the entries the new fabric drops at its first removal stage.
//! `docs/rollout.md` explains why this order is safe.
//!
//! Invariants:
//! - nothing is touched in a dry run, and nothing outside the step's node;
//! - a step starts only after every earlier step was verified;
//! - with `--from OLD`, nodes whose artifacts did not change are not touched.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use clt_linux::plan::{self as lplan, Change, KernelState};
use cltc::artifact::linux::LinuxPlan;
use serde::Deserialize;

use crate::config::Config;
use crate::device::{Device, DeviceSpec};
use crate::inputs::{DeviceInputs, parse_entries};
use crate::metrics::Metrics;
use crate::proto::p4::v1 as p4;
use crate::reconcile;
use crate::session::Mastership;

/// Errors of loading, planning and rolling out.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("node {node}: {message}")]
    Node { node: String, message: String },
}

fn load_err(path: &Path, message: impl fmt::Display) -> Error {
    Error::Load {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

#[derive(Debug, Clone, Deserialize)]
struct RolloutFile {
    apply: Vec<StageFile>,
    remove: Vec<StageFile>,
}

#[derive(Debug, Clone, Deserialize)]
struct StageFile {
    role: String,
    nodes: Vec<StepFile>,
}

#[derive(Debug, Clone, Deserialize)]
struct StepFile {
    node: String,
    kind: String,
    #[serde(default)]
    policies: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct ManifestFile {
    nodes: Vec<ManifestNode>,
}

#[derive(Debug, Clone, Deserialize)]
struct ManifestNode {
    name: String,
    kind: String,
}

/// A node's compiled artifacts.
#[derive(Debug, Clone, PartialEq)]
pub enum Artifact {
    Linux(LinuxPlan),
    /// A P4 node: its entries and a fingerprint of its pipeline files.
    P4 {
        entries: Vec<p4::TableEntry>,
        pipeline: Vec<u8>,
    },
}

/// A `cltc compile` output directory.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub dir: PathBuf,
    /// By node name.
    pub nodes: BTreeMap<String, Artifact>,
    rollout: RolloutFile,
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| load_err(path, e))
}

impl Compiled {
    pub fn load(dir: &Path) -> Result<Compiled, Error> {
        let manifest_path = dir.join("manifest.json");
        let manifest: ManifestFile = serde_json::from_slice(&read(&manifest_path)?)
            .map_err(|e| load_err(&manifest_path, e))?;
        let rollout_path = dir.join("rollout.json");
        let rollout: RolloutFile = serde_json::from_slice(&read(&rollout_path)?)
            .map_err(|e| load_err(&rollout_path, e))?;
        let mut nodes = BTreeMap::new();
        for n in &manifest.nodes {
            let nd = dir.join("nodes").join(&n.name);
            let art = match n.kind.as_str() {
                "linux" => {
                    let p = nd.join("plan.json");
                    Artifact::Linux(
                        serde_json::from_slice(&read(&p)?).map_err(|e| load_err(&p, e))?,
                    )
                }
                "bmv2" | "tofino" => {
                    let p = nd.join("entries.txtpb");
                    let text = String::from_utf8(read(&p)?).map_err(|e| load_err(&p, e))?;
                    let entries = parse_entries(&text, &p.display().to_string())
                        .map_err(|e| load_err(&p, e))?
                        .tables;
                    let mut pipeline = Vec::new();
                    for f in ["p4info.txtpb", "program.p4", "program.json"] {
                        // program.json (the p4c output) may be absent.
                        if let Ok(b) = std::fs::read(nd.join(f)) {
                            pipeline.extend_from_slice(&(b.len() as u64).to_be_bytes());
                            pipeline.extend(b);
                        }
                    }
                    Artifact::P4 { entries, pipeline }
                }
                other => return Err(load_err(&manifest_path, format!("unknown kind {other}"))),
            };
            nodes.insert(n.name.clone(), art);
        }
        Ok(Compiled {
            dir: dir.to_path_buf(),
            nodes,
            rollout,
        })
    }
}

/// Apply (stages in order) or remove (stages in reverse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Remove,
    Apply,
}

/// One step of a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub phase: Phase,
    pub node: String,
    pub kind: String,
    /// `forwarding`, `decap`, `transit` or `encap`.
    pub role: String,
    pub policies: Vec<String>,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.phase {
            Phase::Apply => "apply",
            Phase::Remove => "remove",
        };
        write!(f, "{verb} {} on {} ({})", self.role, self.node, self.kind)?;
        if !self.policies.is_empty() {
            write!(f, " for {}", self.policies.join(", "))?;
        }
        Ok(())
    }
}

fn is_empty_plan(p: &LinuxPlan) -> bool {
    p.sysctls.is_empty()
        && p.interfaces.is_empty()
        && p.neighbors.is_empty()
        && p.schemas.is_empty()
        && p.namespaces.is_empty()
        && p.routes.is_empty()
}

fn is_ioam_sysctl(key: &str) -> bool {
    key.contains("ioam6")
}

/// The part of `plan` a stage installs (cumulative: `decap` includes
/// `forwarding`, `encap` is the whole plan).
pub fn linux_stage_plan(plan: &LinuxPlan, role: &str) -> LinuxPlan {
    let mut p = plan.clone();
    if role == "encap" {
        return p;
    }
    for r in &mut p.routes {
        r.encap = None;
    }
    p.encap.clear();
    if role == "forwarding" {
        p.sysctls.retain(|s| !is_ioam_sysctl(&s.key));
        p.schemas.clear();
        p.namespaces.clear();
    }
    p
}

/// What a removal stage takes off a node going from `old` to `new`: a plan
/// to apply (`encap`: the old routes, with the encapsulation `new` lacks
/// stripped) or to tear down (the rest: what `new` no longer names).
fn linux_removal(old: &LinuxPlan, new: Option<&LinuxPlan>, role: &str) -> (LinuxPlan, bool) {
    let empty = LinuxPlan {
        node: old.node.clone(),
        sysctls: vec![],
        interfaces: vec![],
        neighbors: vec![],
        schemas: vec![],
        namespaces: vec![],
        routes: vec![],
        encap: vec![],
    };
    let new = new.unwrap_or(&empty);
    match role {
        "encap" => {
            let mut p = empty.clone();
            p.routes = old
                .routes
                .iter()
                // Stripped when `new` no longer inserts this namespace on
                // the route: its decap and transit nodes may be removed
                // next. A changed trace type alone is replaced in place.
                .filter(|r| {
                    r.encap.as_ref().is_some_and(|e| {
                        !new.routes.iter().any(|n| {
                            n.dst == r.dst
                                && n.encap
                                    .as_ref()
                                    .is_some_and(|ne| ne.namespace == e.namespace)
                        })
                    })
                })
                // A route `new` drops entirely loses its encapsulation
                // here, and the route itself in the forwarding stage.
                .map(|r| {
                    let mut r = r.clone();
                    r.encap = None;
                    r
                })
                .collect();
            (p, false)
        }
        "forwarding" => {
            let mut p = empty.clone();
            p.routes = old
                .routes
                .iter()
                .filter(|r| !new.routes.iter().any(|n| n.dst == r.dst))
                .cloned()
                .collect();
            p.neighbors = old
                .neighbors
                .iter()
                .filter(|n| !new.neighbors.contains(n))
                .cloned()
                .collect();
            p.interfaces = old
                .interfaces
                .iter()
                .filter(|i| !new.interfaces.iter().any(|n| n.address == i.address))
                .cloned()
                .collect();
            p.sysctls = old
                .sysctls
                .iter()
                .filter(|s| !is_ioam_sysctl(&s.key))
                .filter(|s| !new.sysctls.iter().any(|n| n.key == s.key))
                .cloned()
                .collect();
            (p, true)
        }
        _ => {
            let mut p = empty.clone();
            p.namespaces = old
                .namespaces
                .iter()
                .filter(|n| !new.namespaces.iter().any(|k| k.id == n.id))
                .cloned()
                .collect();
            p.schemas = old
                .schemas
                .iter()
                .filter(|s| !new.schemas.iter().any(|k| k.id == s.id))
                .cloned()
                .collect();
            p.sysctls = old
                .sysctls
                .iter()
                .filter(|s| is_ioam_sysctl(&s.key))
                .filter(|s| !new.sysctls.iter().any(|n| n.key == s.key))
                .cloned()
                .collect();
            (p, true)
        }
    }
}

/// The steps of a rollout of `new`, or of the difference from `old`.
pub fn steps(old: Option<&Compiled>, new: &Compiled) -> Vec<Step> {
    let changed = |node: &str| match old {
        None => true,
        Some(o) => o.nodes.get(node) != new.nodes.get(node),
    };
    let mut out = Vec::new();
    if let Some(o) = old {
        for stage in &o.rollout.remove {
            for s in &stage.nodes {
                if !changed(&s.node) {
                    continue;
                }
                let needed = match o.nodes.get(&s.node) {
                    Some(Artifact::Linux(op)) => {
                        let (p, _) = linux_removal(op, linux_of(Some(new), &s.node), &stage.role);
                        !is_empty_plan(&p)
                    }
                    // A P4 node loses the entries `new` drops at its first
                    // removal stage (all of them when it leaves the
                    // fabric); additions and modifications wait for the
                    // apply phase.
                    Some(Artifact::P4 { entries, .. }) => {
                        p4_kept(o, new, &s.node).len() < entries.len()
                    }
                    None => false,
                };
                let already = out.iter().any(|x: &Step| {
                    x.node == s.node && x.phase == Phase::Remove && x.kind != "linux"
                });
                if needed && !already {
                    out.push(Step {
                        phase: Phase::Remove,
                        node: s.node.clone(),
                        kind: s.kind.clone(),
                        role: stage.role.clone(),
                        policies: s.policies.clone(),
                    });
                }
            }
        }
    }
    for stage in &new.rollout.apply {
        for s in &stage.nodes {
            if changed(&s.node) {
                out.push(Step {
                    phase: Phase::Apply,
                    node: s.node.clone(),
                    kind: s.kind.clone(),
                    role: stage.role.clone(),
                    policies: s.policies.clone(),
                });
            }
        }
    }
    out
}

/// Per-node difference between two compiled fabrics.
pub fn plan_text(old: &Compiled, new: &Compiled) -> String {
    let mut out = String::new();
    let names: std::collections::BTreeSet<&String> =
        old.nodes.keys().chain(new.nodes.keys()).collect();
    for name in names {
        let (o, n) = (old.nodes.get(name), new.nodes.get(name));
        if o == n {
            out.push_str(&format!("{name}: unchanged\n"));
            continue;
        }
        match (o, n) {
            (Some(Artifact::Linux(_)) | None, Some(Artifact::Linux(_)))
            | (Some(Artifact::Linux(_)), None) => {
                out.push_str(&format!("{name} (linux):\n"));
                for line in linux_plan_diff(linux_of(Some(old), name), linux_of(Some(new), name)) {
                    out.push_str(&format!("  {line}\n"));
                }
            }
            (_, Some(Artifact::P4 { entries, pipeline })) => {
                let (oe, op): (&[p4::TableEntry], Option<&Vec<u8>>) = match o {
                    Some(Artifact::P4 { entries, pipeline }) => (entries, Some(pipeline)),
                    _ => (&[], None),
                };
                let d = reconcile::diff(oe, entries);
                out.push_str(&format!(
                    "{name} (p4): pipeline {}, entries +{} -{} ~{} ={}\n",
                    if op == Some(pipeline) {
                        "unchanged"
                    } else {
                        "changed"
                    },
                    d.insert.len(),
                    d.delete.len(),
                    d.modify.len(),
                    d.unchanged
                ));
            }
            (Some(Artifact::P4 { entries, .. }), None) => {
                out.push_str(&format!(
                    "{name} (p4): removed from the fabric, entries -{}\n",
                    entries.len()
                ));
            }
            _ => out.push_str(&format!("{name}: kind changed\n")),
        }
    }
    out
}

/// Plan-vs-plan change list of a Linux node, one line per item.
pub fn linux_plan_diff(old: Option<&LinuxPlan>, new: Option<&LinuxPlan>) -> Vec<String> {
    fn items(p: Option<&LinuxPlan>) -> Vec<String> {
        let Some(p) = p else { return vec![] };
        let mut v = Vec::new();
        let j = |x: &dyn erased::Ser| x.json();
        for s in &p.sysctls {
            v.push(format!("sysctl {}={}", s.key, s.value));
        }
        for i in &p.interfaces {
            v.push(format!("interface {}", j(i)));
        }
        for n in &p.neighbors {
            v.push(format!("neighbour {}", j(n)));
        }
        for s in &p.schemas {
            v.push(format!("schema {}", j(s)));
        }
        for n in &p.namespaces {
            v.push(format!("namespace {}", j(n)));
        }
        for r in &p.routes {
            v.push(format!("route {}", j(r)));
        }
        for e in &p.encap {
            v.push(format!("socket policy {}", j(e)));
        }
        v
    }
    let (o, n) = (items(old), items(new));
    let mut out: Vec<String> = o
        .iter()
        .filter(|x| !n.contains(x))
        .map(|x| format!("- {x}"))
        .collect();
    out.extend(
        n.iter()
            .filter(|x| !o.contains(x))
            .map(|x| format!("+ {x}")),
    );
    if out.is_empty() {
        out.push("no changes".into());
    }
    out
}

mod erased {
    pub trait Ser {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Ser for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}

/// Parses `node=netns` pairs.
pub fn parse_netns_map(pairs: &[String]) -> Result<HashMap<String, String>, Error> {
    pairs
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, ns)) if !n.is_empty() && !ns.is_empty() => Ok((n.to_string(), ns.to_string())),
            _ => Err(Error::Node {
                node: p.clone(),
                message: "expected node=netns".into(),
            }),
        })
        .collect()
}

/// How to run a rollout.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Linux node name -> network namespace to configure it in (absent:
    /// the current namespace).
    pub netns: HashMap<String, String>,
    /// Touch nothing: [`run`] returns at once with no step done (the
    /// listing is [`dry_run_text`]).
    pub dry_run: bool,
    pub insertion: clt_linux::Insertion,
    /// Linux node name -> its node agent (`clt-node-agent`), for nodes on
    /// other machines; takes precedence over `netns`.
    pub agents: HashMap<String, crate::node_agent::AgentAddr>,
}

/// A step made and verified.
#[derive(Debug, Clone)]
pub struct Done {
    pub step: Step,
    /// The changes made (Linux) or a summary (P4).
    pub changes: Vec<String>,
    /// The time the step took, its read-back included.
    pub elapsed: std::time::Duration,
    undo: Undo,
}

#[derive(Debug, Clone)]
enum Undo {
    /// The inverses, in the order to run them, and the changes that have
    /// none (reported if a rollback needs them).
    Linux(Vec<Change>, Vec<String>),
    /// A node reached through its agent: the token its inverses are kept
    /// under (empty: nothing changed), and the changes that have none.
    Remote(String, Vec<String>),
    P4(P4Before),
}

/// What a P4 device ran before a step: the pipeline's cookie and the
/// entries (empty when it ran no pipeline, or one neither fabric has).
#[derive(Debug, Clone)]
struct P4Before {
    cookie: Option<u64>,
    entries: Vec<p4::TableEntry>,
}

/// A failed step.
#[derive(Debug, Clone)]
pub struct Failure {
    pub step: Step,
    pub cause: String,
    /// The steps undone, newest first.
    pub undone: Vec<Step>,
    pub undo_errors: Vec<String>,
}

/// What a rollout did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Steps made and verified, in order (kept for the record even when a
    /// later failure undid them).
    pub done: Vec<Done>,
    pub failure: Option<Failure>,
}

impl Outcome {
    /// The nodes a step touched (changed something on).
    pub fn touched(&self) -> std::collections::BTreeSet<String> {
        self.done
            .iter()
            .filter(|d| !d.changes.is_empty())
            .map(|d| d.step.node.clone())
            .collect()
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.done {
            writeln!(
                f,
                "ok   {}: {} change(s), verified in {:.1} ms",
                d.step,
                d.changes.len(),
                d.elapsed.as_secs_f64() * 1e3
            )?;
            for c in &d.changes {
                writeln!(f, "       {c}")?;
            }
        }
        if let Some(fail) = &self.failure {
            writeln!(f, "FAILED {}: {}", fail.step, fail.cause)?;
            writeln!(f, "rolled back {} step(s):", fail.undone.len())?;
            for u in &fail.undone {
                writeln!(f, "  undone: {u}")?;
            }
            for e in &fail.undo_errors {
                writeln!(f, "  undo error: {e}")?;
            }
        }
        Ok(())
    }
}

fn linux_of<'a>(c: Option<&'a Compiled>, node: &str) -> Option<&'a LinuxPlan> {
    match c?.nodes.get(node) {
        Some(Artifact::Linux(p)) => Some(p),
        _ => None,
    }
}

/// Applies `plan` (or tears it down) in the node's namespace, checks that a
/// second diff is empty, and returns the changes made with the names needed
/// to undo them.
pub(crate) fn linux_step(
    netns: Option<String>,
    plan: LinuxPlan,
    teardown: bool,
    opts: lplan::Options,
) -> Result<LinuxDone, clt_linux::Error> {
    clt_linux::netns::run_in(netns.as_deref(), move || {
        let nl = clt_linux::nl::Netlink::open()?;
        let changes = if teardown {
            let state = KernelState::read(&nl)?;
            lplan::teardown_against(&plan, &state)?
        } else {
            lplan::diff(&nl, &plan, &opts)?.changes
        };
        let before = KernelState::read(&nl)?;
        let names: HashMap<u32, String> = before
            .links
            .values()
            .map(|l| (l.index, l.name.clone()))
            .collect();
        lplan::execute(&nl, &changes)?;
        let mut undo = Vec::new();
        let mut cannot = Vec::new();
        for c in changes.iter().rev() {
            match c.inverse(&names) {
                Some(u) => undo.push(u),
                None => cannot.push(format!("cannot undo {c}")),
            }
        }
        let left = if teardown {
            let state = KernelState::read(&nl)?;
            lplan::teardown_against(&plan, &state)?
        } else {
            lplan::diff(&nl, &plan, &opts)?.changes
        };
        if !left.is_empty() {
            let _ = lplan::execute(&nl, &undo);
            return Err(clt_linux::Error::Plan(format!(
                "read back after the step: {} change(s) still missing (first: {})",
                left.len(),
                left[0]
            )));
        }
        Ok((changes, undo, cannot))
    })
}

/// The changes a Linux step made, their inverses, and what has none.
type LinuxDone = (Vec<Change>, Vec<Change>, Vec<String>);

pub(crate) fn linux_undo(netns: Option<String>, undo: Vec<Change>) -> Result<(), clt_linux::Error> {
    clt_linux::netns::run_in(netns.as_deref(), move || {
        let nl = clt_linux::nl::Netlink::open()?;
        lplan::execute(&nl, &undo)
    })
}

fn p4_dev(dir: &Path, node: &str) -> Result<Device, String> {
    let config = Config::from_compiled(dir).map_err(|e| e.to_string())?;
    let d = config
        .devices
        .iter()
        .find(|d| d.name == node)
        .ok_or_else(|| format!("no P4 device {node} in {}", dir.display()))?;
    let inputs = DeviceInputs::load(&d.inputs).map_err(|e| e.to_string())?;
    Device::new(DeviceSpec::from_config(d), inputs, None, Metrics::default())
        .map_err(|e| e.to_string())
}

async fn p4_open(dev: &Device) -> Result<crate::Session, String> {
    let session = dev.open().await.map_err(|e| format!("unreachable: {e}"))?;
    if session.mastership() != Mastership::Primary {
        return Err("another controller is primary".into());
    }
    Ok(session)
}

async fn p4_device(dir: &Path, node: &str) -> Result<(Device, crate::Session), String> {
    let dev = p4_dev(dir, node)?;
    let session = dev.open().await.map_err(|e| format!("unreachable: {e}"))?;
    if session.mastership() != Mastership::Primary {
        return Err("another controller is primary".into());
    }
    Ok((dev, session))
}

/// The entries of `old`'s P4 node `node` that `new` still has, at least
/// with another priority: what a removal step leaves on the device.
///
/// A ternary entry's priority is part of its key, and cltc numbers a
/// switch's policy entries in policy order: adding or removing one policy
/// changes the others' priorities. Such an entry is kept here and replaced
/// by the apply phase's reconcile (delete then insert, one Write each), so
/// its policy loses the switch's trace entry for a few milliseconds, not
/// for the whole rollout between the two phases.
fn p4_kept(old: &Compiled, new: &Compiled, node: &str) -> Vec<p4::TableEntry> {
    let Some(Artifact::P4 { entries, .. }) = old.nodes.get(node) else {
        return Vec::new();
    };
    let any_priority = |e: &p4::TableEntry| {
        let mut e = e.clone();
        e.priority = 0;
        reconcile::EntryKey::of(&e)
    };
    let keep: std::collections::HashSet<reconcile::EntryKey> = match new.nodes.get(node) {
        Some(Artifact::P4 { entries, .. }) => entries.iter().map(any_priority).collect(),
        _ => Default::default(),
    };
    entries
        .iter()
        .filter(|e| keep.contains(&any_priority(e)))
        .cloned()
        .collect()
}

/// A P4 step: install (pipeline if needed, entries) or, for a removal,
/// reconcile to `remove_to`; then read back. Returns what the device ran
/// before, for the undo (`old_dir`: the fabric running before, whose
/// pipeline the device may run).
async fn p4_step(
    dir: &Path,
    old_dir: Option<&Path>,
    node: &str,
    remove_to: Option<Vec<p4::TableEntry>>,
) -> Result<Done0, String> {
    let (dev, mut session) = p4_device(dir, node).await?;
    // The entries are read with the P4Info of the pipeline running: this
    // step's, or the old fabric's; a device running no pipeline (a switch
    // just started) or another one has none of them, and a push clears
    // what it held.
    let running = session.pipeline_cookie().await.map_err(|e| e.to_string())?;
    let old_dev = old_dir.and_then(|d| p4_dev(d, node).ok());
    let reader = [Some(&dev), old_dev.as_ref()]
        .into_iter()
        .flatten()
        .find(|d| running == Some(d.inputs().pipeline.cookie));
    let entries = match reader {
        Some(r) => {
            let tables: Vec<u32> = r.info().writable_tables().collect();
            session
                .read_table_entries(&tables)
                .await
                .map_err(|e| e.to_string())?
        }
        None => Vec::new(),
    };
    let before = P4Before {
        cookie: running,
        entries,
    };
    let remove = remove_to.is_some();
    let desired = match remove_to {
        Some(d) => d,
        None => dev_entries(dir, node)?,
    };
    let report = if remove {
        session
            .reconcile(dev.info(), &desired, 256)
            .await
            .and_then(|r| r.into_result())
            .map_err(|e| e.to_string())?
    } else {
        dev.install(&mut session)
            .await
            .and_then(|r| r.into_result())
            .map_err(|e| e.to_string())?
    };
    let left = session
        .verify(dev.info(), &desired)
        .await
        .map_err(|e| e.to_string())?;
    if !left.is_empty() {
        return Err(format!(
            "read back after the step: {} entr(ies) differ",
            left.len()
        ));
    }
    let changes = if report.inserted + report.modified + report.deleted == 0 {
        vec![]
    } else {
        vec![format!(
            "entries +{} ~{} -{}",
            report.inserted, report.modified, report.deleted
        )]
    };
    Ok((changes, before))
}

type Done0 = (Vec<String>, P4Before);

fn dev_entries(dir: &Path, node: &str) -> Result<Vec<p4::TableEntry>, String> {
    let p = dir.join("nodes").join(node).join("entries.txtpb");
    let text = std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(parse_entries(&text, &p.display().to_string())
        .map_err(|e| e.to_string())?
        .tables)
}

/// Puts a P4 device back as it was before the rollout's first step on it:
/// the pipeline it ran (when it is one of the two fabrics': a pushed
/// program is swapped back, its digests configured again) and its entries.
async fn p4_undo(
    new_dir: &Path,
    old_dir: Option<&Path>,
    node: &str,
    before: &P4Before,
) -> Result<(), String> {
    let new_dev = p4_dev(new_dir, node)?;
    let old_dev = old_dir.and_then(|d| p4_dev(d, node).ok());
    let dev = match &old_dev {
        Some(o) if before.cookie == Some(o.inputs().pipeline.cookie) => o,
        _ => &new_dev,
    };
    let mut session = p4_open(dev).await?;
    if before.cookie == Some(dev.inputs().pipeline.cookie)
        && session.pipeline_cookie().await.map_err(|e| e.to_string())? != before.cookie
    {
        dev.install(&mut session)
            .await
            .and_then(|r| r.into_result())
            .map_err(|e| format!("putting the previous pipeline back: {e}"))?;
    }
    session
        .reconcile(dev.info(), &before.entries, 256)
        .await
        .and_then(|r| r.into_result())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Runs the steps of a rollout of `new` (or of its difference from `old`).
/// `observe` sees each step once it is verified (before the next starts).
pub async fn run(
    old: Option<&Compiled>,
    new: &Compiled,
    opts: &Options,
    mut observe: impl FnMut(&Done),
) -> Outcome {
    let mut outcome = Outcome::default();
    if opts.dry_run {
        return outcome;
    }
    let lopts = lplan::Options {
        insertion: opts.insertion,
    };
    for step in steps(old, new) {
        let started = std::time::Instant::now();
        let ns = opts.netns.get(&step.node).cloned();
        let result: Result<Done, String> = if step.kind == "linux" {
            let work = match step.phase {
                Phase::Apply => linux_of(Some(new), &step.node)
                    .map(|p| (linux_stage_plan(p, &step.role), false)),
                Phase::Remove => linux_of(old, &step.node)
                    .map(|p| linux_removal(p, linux_of(Some(new), &step.node), &step.role)),
            };
            match work {
                None => Err("no Linux plan for this node".to_string()),
                Some((plan, teardown)) if opts.agents.contains_key(&step.node) => {
                    let agent = &opts.agents[&step.node];
                    crate::node_agent::remote_step(
                        &step.node,
                        agent,
                        &plan,
                        teardown,
                        opts.insertion,
                    )
                    .await
                    .map(|(changes, token, cannot)| Done {
                        step: step.clone(),
                        changes,
                        elapsed: started.elapsed(),
                        undo: Undo::Remote(token, cannot),
                    })
                }
                Some((plan, teardown)) => {
                    let lo = lopts.clone();
                    let r = tokio::task::spawn_blocking(move || linux_step(ns, plan, teardown, lo))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| e.to_string()));
                    r.map(|(changes, undo, cannot)| Done {
                        step: step.clone(),
                        changes: changes.iter().map(|c| c.to_string()).collect(),
                        elapsed: started.elapsed(),
                        undo: Undo::Linux(undo, cannot),
                    })
                }
            }
        } else {
            let (dir, remove_to) = match (step.phase, old) {
                (Phase::Remove, Some(o)) => (&o.dir, Some(p4_kept(o, new, &step.node))),
                _ => (&new.dir, None),
            };
            p4_step(dir, old.map(|o| o.dir.as_path()), &step.node, remove_to)
                .await
                .map(|(changes, before)| Done {
                    step: step.clone(),
                    changes,
                    elapsed: started.elapsed(),
                    undo: Undo::P4(before),
                })
        };
        match result {
            Ok(done) => {
                observe(&done);
                outcome.done.push(done);
            }
            Err(cause) => {
                let (undone, undo_errors) = rollback(old, new, opts, &outcome.done).await;
                outcome.failure = Some(Failure {
                    step,
                    cause,
                    undone,
                    undo_errors,
                });
                return outcome;
            }
        }
    }
    outcome
}

async fn rollback(
    old: Option<&Compiled>,
    new: &Compiled,
    opts: &Options,
    done: &[Done],
) -> (Vec<Step>, Vec<String>) {
    let mut undone = Vec::new();
    let mut errors = Vec::new();
    // P4 devices go back to the entries they had before their first step.
    let mut p4_first: HashMap<&str, &P4Before> = HashMap::new();
    for d in done {
        if let Undo::P4(e) = &d.undo {
            p4_first.entry(d.step.node.as_str()).or_insert(e);
        }
    }
    for d in done.iter().rev() {
        let r = match &d.undo {
            Undo::Linux(undo, cannot) => {
                errors.extend(cannot.iter().map(|c| format!("{}: {c}", d.step)));
                let ns = opts.netns.get(&d.step.node).cloned();
                let undo = undo.clone();
                tokio::task::spawn_blocking(move || linux_undo(ns, undo))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
            }
            Undo::Remote(token, cannot) => {
                errors.extend(
                    cannot
                        .iter()
                        .map(|c| format!("{}: cannot undo {c}", d.step)),
                );
                match opts.agents.get(&d.step.node) {
                    Some(agent) if !token.is_empty() => {
                        crate::node_agent::remote_undo(&d.step.node, agent, token).await
                    }
                    Some(_) => Ok(()),
                    None => Err("no agent for this node any more".to_string()),
                }
            }
            Undo::P4(_) => {
                let Some(before) = p4_first.remove(d.step.node.as_str()) else {
                    undone.push(d.step.clone());
                    continue;
                };
                p4_undo(&new.dir, old.map(|o| o.dir.as_path()), &d.step.node, before).await
            }
        };
        match r {
            Ok(()) => undone.push(d.step.clone()),
            Err(e) => errors.push(format!("{}: {e}", d.step)),
        }
    }
    (undone, errors)
}

/// The dry-run text: every step, and for Linux steps what it would change
/// on a node configured as `old` describes (plan-vs-plan).
pub fn dry_run_text(old: Option<&Compiled>, new: &Compiled) -> String {
    let mut out = String::new();
    for (i, s) in steps(old, new).iter().enumerate() {
        out.push_str(&format!("{:>3}. {s}\n", i + 1));
        if s.kind != "linux" {
            let entries = |c: Option<&Compiled>| match c.and_then(|c| c.nodes.get(&s.node)) {
                Some(Artifact::P4 { entries, .. }) => entries.clone(),
                _ => Vec::new(),
            };
            let (from, to) = match (s.phase, old) {
                (Phase::Remove, Some(o)) => (entries(old), p4_kept(o, new, &s.node)),
                _ => (entries(old), entries(Some(new))),
            };
            let d = reconcile::diff(&from, &to);
            out.push_str(&format!(
                "       entries +{} -{} ~{} (relative to {})\n",
                d.insert.len(),
                d.delete.len(),
                d.modify.len(),
                if old.is_some() {
                    "the old fabric"
                } else {
                    "an empty device"
                }
            ));
        }
        if s.kind == "linux" {
            let (from, to) = match s.phase {
                Phase::Apply => (
                    linux_of(old, &s.node).map(|p| linux_stage_plan(p, &s.role)),
                    linux_of(Some(new), &s.node).map(|p| linux_stage_plan(p, &s.role)),
                ),
                Phase::Remove => (
                    linux_of(old, &s.node).cloned(),
                    linux_of(old, &s.node).map(|p| {
                        let (rm, teardown) =
                            linux_removal(p, linux_of(Some(new), &s.node), &s.role);
                        subtract(p, &rm, teardown)
                    }),
                ),
            };
            // An apply step never deletes (the removal phase did): show
            // what it adds or replaces.
            let lines: Vec<String> = linux_plan_diff(from.as_ref(), to.as_ref())
                .into_iter()
                .filter(|l| s.phase == Phase::Remove || l.starts_with('+'))
                .collect();
            if lines.is_empty() {
                out.push_str("       no changes\n");
            }
            for l in lines {
                out.push_str(&format!("       {l}\n"));
            }
        }
    }
    if out.is_empty() {
        out.push_str("nothing to do: every node's artifacts are unchanged\n");
    }
    out
}

/// `p` after a removal step: `rm` torn down, or (not `teardown`) its routes
/// replacing `p`'s.
fn subtract(p: &LinuxPlan, rm: &LinuxPlan, teardown: bool) -> LinuxPlan {
    let mut p = p.clone();
    p.routes
        .retain(|r| !rm.routes.iter().any(|x| x.dst == r.dst));
    if !teardown {
        p.routes.extend(rm.routes.iter().cloned());
    }
    p.namespaces.retain(|n| !rm.namespaces.contains(n));
    p.schemas.retain(|n| !rm.schemas.contains(n));
    p.sysctls.retain(|n| !rm.sysctls.contains(n));
    p.neighbors.retain(|n| !rm.neighbors.contains(n));
    p.interfaces.retain(|n| !rm.interfaces.contains(n));
    p
}

/// The files under `dir` (relative path, absolute path), sorted; `dir`
/// itself may be a symbolic link (e.g. switched atomically to a new
/// `cltc compile` output).
fn files_under(dir: &Path) -> Result<Vec<(PathBuf, PathBuf)>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        let entries = std::fs::read_dir(&abs).map_err(|e| load_err(&abs, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| load_err(&abs, e))?;
            let path = entry.path();
            let meta = std::fs::metadata(&path).map_err(|e| load_err(&path, e))?;
            let r = rel.join(entry.file_name());
            if meta.is_dir() {
                stack.push(r);
            } else {
                out.push((r, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A fingerprint of a compiled fabric's files (names and contents): equal
/// fingerprints, equal fabrics.
pub fn fingerprint(dir: &Path) -> Result<String, Error> {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    for (rel, abs) in files_under(dir)? {
        let name = rel.to_string_lossy();
        let bytes = read(&abs)?;
        h.update((name.len() as u64).to_be_bytes());
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(&bytes);
    }
    Ok(h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Copies a compiled fabric's files into `to` (created; must not exist), so
/// that the copy stays as it is while `from` is recompiled.
pub fn snapshot(from: &Path, to: &Path) -> Result<(), Error> {
    for (rel, abs) in files_under(from)? {
        let dst = to.join(rel);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(|e| load_err(parent, e))?;
        }
        std::fs::copy(&abs, &dst).map_err(|e| load_err(&dst, e))?;
    }
    Ok(())
}
