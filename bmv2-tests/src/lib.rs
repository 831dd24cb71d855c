//! Tests of the generated P4 against the real P4 toolchain.
//!
//! The helpers here find the tools (`p4c-bm2-ss`, later `simple_switch_grpc`)
//! on `PATH`, compile the repository's examples with `cltc`, run p4c on the
//! v1model programs and compare p4c's P4Info with the one cltc writes. A test
//! whose tool is missing prints `skipped: <tool> not on PATH` and returns.
//!
//! For TNA, where bf-p4c is not available, [`run_p4test`] type-checks a
//! program with p4c's front end (`p4test`) against Intel's published TNA
//! headers ([`tna_p4include`]).
#![forbid(unsafe_code)]

use cltc::backend::p4::textpb::TextMessage;
use cltc::backend::p4::{self, P4Artifacts, Target};
use cltc::ir::{NodeIdx, NodeKind};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Says that a test was skipped, and why, where CI and users see it.
///
/// libtest captures `println!` and `eprintln!` of passing tests, which would
/// hide the skip; a direct write to stderr is not captured. For callers
/// that name the test themselves; `clt_testkit::skip_if!` names it from the
/// test's thread.
pub fn report_skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "bmv2-tests: {test}: skipped: {why}");
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file} does not compile:\n{diagnostics}")]
    Clt { file: String, diagnostics: String },
    #[error("{tool} failed on {program} ({status}):\n{stderr}")]
    Tool {
        tool: String,
        program: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("{what}: {message}")]
    TextFormat { what: String, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// The full path of `tool` if it is an executable file on `PATH`
/// (clt-testkit's, re-exported for this crate's callers).
pub use clt_testkit::skip::find_tool;

/// The `clt-controller` binary the switch tests run: `$CLT_CONTROLLER`, or
/// the one beside the running test's target directory (`cargo build -p
/// clt-controller`); `None` when neither exists.
pub fn controller_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CLT_CONTROLLER") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.parent()?.join("clt-controller");
    candidate.is_file().then_some(candidate)
}

/// Fits host interface `dev` in namespace `netns` to face a software switch
/// (`ethtool -K DEV tx off tso off gso off`): a veth leaves UDP/TCP
/// checksums for the receiving kernel to complete, which a switch reading
/// frames from a raw socket never does (the host behind it would drop
/// every plain datagram or segment: `Udp6InCsumErrors`, `TcpInCsumErrors`),
/// and it would hand the switch 64 kB TSO/GSO segments. Packets with a
/// Hop-by-Hop header are checksummed in software anyway.
pub fn offloads_off(netns: &str, dev: &str) -> std::result::Result<(), clt_testkit::Error> {
    clt_testkit::try_run(&[
        "ip", "netns", "exec", netns, "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off",
    ])
    .map(drop)
}

/// The repository's `examples/` directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// One P4 node of one example, compiled by cltc.
#[derive(Debug, Clone)]
pub struct Generated {
    /// `example:node`, for messages.
    pub label: String,
    /// A file-name-safe `example_node`.
    pub stem: String,
    pub target: Target,
    pub artifacts: P4Artifacts,
}

/// cltc's fixtures that compile (`cltc/tests/fixtures/ok/`).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../cltc/tests/fixtures/ok")
}

/// Compiles every `examples/*.clt` and returns the artifacts of every P4
/// node for `target` (bmv2 nodes for v1model, tofino nodes for TNA).
pub fn generate_examples(target: Target) -> Result<Vec<Generated>> {
    let wanted = match target {
        Target::V1Model => NodeKind::Bmv2,
        Target::Tna => NodeKind::Tofino,
    };
    generate_in(&examples_dir(), "", target, &[wanted])
}

/// Compiles every `*.clt` in `dir` and returns the artifacts, for `target`,
/// of every node whose kind is in `kinds` (a bmv2 node can be compiled for
/// TNA too: the program only depends on its domains and ports). Labels and
/// stems start with `prefix`.
pub fn generate_in(
    dir: &Path,
    prefix: &str,
    target: Target,
    kinds: &[NodeKind],
) -> Result<Vec<Generated>> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "clt"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let src = std::fs::read_to_string(&file).map_err(|source| Error::Io {
            path: file.clone(),
            source,
        })?;
        let name = file.display().to_string();
        let compiled = cltc::compile_source(&name, &src).map_err(|d| Error::Clt {
            file: name.clone(),
            diagnostics: d.render(&name, &src),
        })?;
        let fabric = compiled.fabric;
        let example = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (i, node) in fabric.nodes.iter().enumerate() {
            if !kinds.contains(&node.kind) {
                continue;
            }
            let idx = NodeIdx(u32::try_from(i).unwrap_or(u32::MAX));
            out.push(Generated {
                label: format!("{prefix}{example}:{}", node.name),
                stem: format!("{prefix}{example}_{}", node.name).replace(['-', '.', '/'], "_"),
                target,
                artifacts: p4::compile(&fabric, idx, target),
            });
        }
    }
    Ok(out)
}

/// The compiler of each target's programs.
pub fn compiler(target: Target) -> &'static str {
    match target {
        Target::V1Model => "p4c-bm2-ss",
        Target::Tna => "bf-p4c",
    }
}

/// What the P4 compiler wrote for one program.
#[derive(Debug, Clone)]
pub struct P4cOutput {
    /// The bmv2 JSON (`simple_switch_grpc`'s device config), or bf-p4c's
    /// output directory.
    pub output: PathBuf,
    /// The compiler's P4Info, in text format.
    pub p4info: String,
    /// What the compiler wrote to stderr: its warnings (empty when clean).
    pub stderr: String,
}

/// Runs `compiler` (p4c-bm2-ss or bf-p4c) on `program`, writing
/// `<stem>.json` (or the `<stem>` directory) and `<stem>.p4c.p4info.txtpb` into
/// `out_dir`.
pub fn run_p4c(
    compiler: &Path,
    target: Target,
    program: &Path,
    out_dir: &Path,
    stem: &str,
) -> Result<P4cOutput> {
    // `.txtpb`: p4c warns that `.txt` is deprecated.
    // Not `<stem>.p4info.txtpb`: callers keep cltc's P4Info under that name
    // in the same directory.
    let p4info_path = out_dir.join(format!("{stem}.p4c.p4info.txtpb"));
    let mut command = Command::new(compiler);
    let output_path = match target {
        Target::V1Model => {
            command.arg("--arch").arg("v1model");
            out_dir.join(format!("{stem}.json"))
        }
        Target::Tna => {
            // Standard `registers` and `digests` in the P4Info, as cltc
            // writes them (and Stratum needs), instead of Tofino `externs`.
            command
                .arg("--target")
                .arg("tofino")
                .arg("--arch")
                .arg("tna")
                .arg("--p4runtime-force-std-externs");
            out_dir.join(stem)
        }
    };
    let output = command
        .arg("--p4runtime-files")
        .arg(&p4info_path)
        .arg("-o")
        .arg(&output_path)
        .arg(program)
        .output()
        .map_err(|source| Error::Io {
            path: compiler.to_path_buf(),
            source,
        })?;
    if !output.status.success() {
        return Err(Error::Tool {
            tool: compiler.display().to_string(),
            program: program.to_path_buf(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let p4info = std::fs::read_to_string(&p4info_path).map_err(|source| Error::Io {
        path: p4info_path.clone(),
        source,
    })?;
    Ok(P4cOutput {
        output: output_path,
        p4info,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Where Intel's TNA headers (`tna.p4` and what it includes, from
/// github.com/barefootnetworks/Open-Tofino `share/p4c/p4include`) are:
/// `$CLT_TNA_P4INCLUDE`, else `/opt/open-tofino/p4include`. `Err` says what
/// is missing, for a skip message.
pub fn tna_p4include() -> std::result::Result<PathBuf, String> {
    let (dir, from) = match std::env::var_os("CLT_TNA_P4INCLUDE") {
        Some(dir) => (PathBuf::from(dir), "$CLT_TNA_P4INCLUDE"),
        None => (
            PathBuf::from("/opt/open-tofino/p4include"),
            "the default (set CLT_TNA_P4INCLUDE)",
        ),
    };
    if dir.join("tna.p4").is_file() {
        Ok(dir)
    } else {
        Err(format!(
            "no tna.p4 in {} ({from}); the TNA headers are in Open-Tofino's share/p4c/p4include",
            dir.display()
        ))
    }
}

/// What p4test said about one program.
#[derive(Debug, Clone)]
pub struct P4testOutput {
    /// The P4Info p4c's front end derives (text format). p4test has no TNA
    /// P4Runtime back end: it describes tables and actions only, named
    /// without the pipe (`CltIngress.ipv6_route`), as bf-p4c does with
    /// `--p4runtime-force-std-externs`.
    pub p4info: String,
    /// Warnings about `program` itself (not about the TNA headers), one
    /// diagnostic per entry.
    pub warnings: Vec<String>,
}

/// Type-checks a TNA `program` with p4c's front and mid end (`p4test`)
/// against the TNA headers in `include` (Tofino 1), writing
/// `<stem>.p4test.p4info.txtpb` into `out_dir`. Errors fail; warnings are
/// returned.
pub fn run_p4test(
    p4test: &Path,
    include: &Path,
    program: &Path,
    out_dir: &Path,
    stem: &str,
) -> Result<P4testOutput> {
    let p4info_path = out_dir.join(format!("{stem}.p4test.p4info.txtpb"));
    let output = Command::new(p4test)
        .arg("--std")
        .arg("p4-16")
        .arg("-D__TARGET_TOFINO__=1")
        .arg("-I")
        .arg(include)
        .arg("--p4runtime-files")
        .arg(&p4info_path)
        .arg(program)
        .output()
        .map_err(|source| Error::Io {
            path: p4test.to_path_buf(),
            source,
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Err(Error::Tool {
            tool: p4test.display().to_string(),
            program: program.to_path_buf(),
            status: output.status.to_string(),
            stderr,
        });
    }
    let p4info = std::fs::read_to_string(&p4info_path).map_err(|source| Error::Io {
        path: p4info_path.clone(),
        source,
    })?;
    Ok(P4testOutput {
        p4info,
        warnings: program_diagnostics(&stderr, program),
    })
}

/// The diagnostics of p4c's `stderr` that are located in `program`: each
/// starts with a line `<program>(<line>): ...` and runs to the next located
/// line.
fn program_diagnostics(stderr: &str, program: &Path) -> Vec<String> {
    let ours = format!("{}(", program.display());
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in stderr.lines() {
        let located = line
            .split_once("): ")
            .is_some_and(|(head, _)| head.contains('(') && !head.contains(' '));
        if located {
            out.extend(current.take());
            if line.starts_with(&ours) {
                current = Some(line.to_string());
            }
        } else if let Some(c) = current.as_mut() {
            c.push('\n');
            c.push_str(line);
        }
    }
    out.extend(current);
    out
}

/// The control-plane view of a P4Info: every object's id and, for tables
/// and actions, their match fields and params, keyed by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ids {
    /// `(kind, name) -> id`, kind being `tables`, `actions`, ...
    pub objects: std::collections::BTreeMap<(String, String), u32>,
    /// `(table, field name) -> (id, bitwidth, match type)`.
    pub match_fields: std::collections::BTreeMap<(String, String), (u64, u64, String)>,
    /// `(action, param name) -> (id, bitwidth)`.
    pub params: std::collections::BTreeMap<(String, String), (u64, u64)>,
}

/// Reads the ids of a P4Info text.
pub fn ids(p4info: &str, what: &str) -> Result<Ids> {
    let msg = TextMessage::parse(p4info).map_err(|message| Error::TextFormat {
        what: what.to_string(),
        message,
    })?;
    let mut ids = Ids::default();
    for kind in [
        "tables",
        "actions",
        "registers",
        "digests",
        "counters",
        "meters",
    ] {
        for m in msg.messages(kind) {
            let Some(p) = m.message("preamble") else {
                continue;
            };
            let (Some(name), Some(id)) = (p.string("name"), p.number("id")) else {
                continue;
            };
            let name = name.to_string();
            ids.objects.insert(
                (kind.to_string(), name.clone()),
                u32::try_from(id).unwrap_or(u32::MAX),
            );
            // A match field or param: (object, its name) -> (id, bitwidth).
            let field = |f: &TextMessage| {
                let key = (
                    name.clone(),
                    f.string("name").unwrap_or_default().to_string(),
                );
                let value = (
                    f.number("id").unwrap_or(0),
                    f.number("bitwidth").unwrap_or(0),
                );
                (key, value)
            };
            for f in m.messages("match_fields") {
                let (key, (id, width)) = field(f);
                let match_type = f.scalar("match_type").unwrap_or_default().to_string();
                ids.match_fields.insert(key, (id, width, match_type));
            }
            for f in m.messages("params") {
                let (key, value) = field(f);
                ids.params.insert(key, value);
            }
        }
    }
    Ok(ids)
}

/// Differences between cltc's P4Info and p4c's, one line each; empty when
/// every object, match field and param cltc declares is in p4c's with the
/// same id (and width).
pub fn compare(ours: &Ids, theirs: &Ids) -> Vec<String> {
    let mut diffs = Vec::new();
    for (key, id) in &ours.objects {
        match theirs.objects.get(key) {
            None => diffs.push(format!("{} {}: missing from p4c's P4Info", key.0, key.1)),
            Some(t) if t != id => diffs.push(format!(
                "{} {}: cltc {id:#010x}, p4c {t:#010x}",
                key.0, key.1
            )),
            Some(_) => {}
        }
    }
    for (key, theirs_id) in &theirs.objects {
        if !ours.objects.contains_key(key) {
            diffs.push(format!(
                "{} {}: {theirs_id:#010x} only in p4c's P4Info",
                key.0, key.1
            ));
        }
    }
    for (key, value) in &ours.match_fields {
        if theirs.match_fields.get(key) != Some(value) {
            diffs.push(format!(
                "match field {}.{}: cltc {value:?}, p4c {:?}",
                key.0,
                key.1,
                theirs.match_fields.get(key)
            ));
        }
    }
    for (key, value) in &ours.params {
        if theirs.params.get(key) != Some(value) {
            diffs.push(format!(
                "param {}.{}: cltc {value:?}, p4c {:?}",
                key.0,
                key.1,
                theirs.params.get(key)
            ));
        }
    }
    diffs
}

#[cfg(test)]
mod tests {
    use super::*;

    const P4INFO: &str = r#"
tables {
  preamble { id: 33554433 name: "CltIngress.ipv6_route" alias: "ipv6_route" }
  match_fields { id: 1 name: "dst_addr" bitwidth: 128 match_type: LPM }
}
actions {
  preamble { id: 16777218 name: "CltIngress.route" }
  params { id: 1 name: "port" bitwidth: 9 }
}
"#;

    #[test]
    fn equal_p4infos_have_no_differences() {
        let a = ids(P4INFO, "a").unwrap();
        assert_eq!(a.objects.len(), 2);
        assert!(compare(&a, &a).is_empty());
    }

    #[test]
    fn a_changed_id_or_width_is_reported() {
        let a = ids(P4INFO, "a").unwrap();
        let b = ids(&P4INFO.replace("33554433", "33554434"), "b").unwrap();
        assert_eq!(compare(&a, &b).len(), 1);
        let c = ids(&P4INFO.replace("bitwidth: 9", "bitwidth: 16"), "c").unwrap();
        assert_eq!(compare(&a, &c).len(), 1);
        let d = ids("", "d").unwrap();
        // Two objects, one match field, one param.
        assert_eq!(compare(&a, &d).len(), 4);
    }

    #[test]
    fn only_the_programs_diagnostics_are_kept() {
        let stderr = "/inc/tna.p4(3): [--Wwarn=unused] warning: 'X' is unused\n\
                      const bit<8> X = 1;\n\
                      /t/p.p4(7): [--Wwarn=unused] warning: 'Y' is unused\n\
                      const bit<8> Y = 1;\n\
                      /t/p.p4(9): [--Wwarn=shadow] warning: z\n";
        let d = program_diagnostics(stderr, Path::new("/t/p.p4"));
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains("'Y'") && d[0].ends_with("const bit<8> Y = 1;"));
        assert!(program_diagnostics(stderr, Path::new("/t/q.p4")).is_empty());
    }

    #[test]
    fn tools_are_found_only_when_executable() {
        assert!(find_tool("sh").is_some());
        assert!(find_tool("no-such-tool-for-clt").is_none());
    }
}
