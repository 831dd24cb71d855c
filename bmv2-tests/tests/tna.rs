//! Every TNA program cltc generates passes p4c's front and mid end (`p4test`)
//! against Intel's published TNA headers, without a warning about the
//! program (but unused declarations), and p4c derives the table and action ids, match fields and
//! params that cltc's P4Info declares.
//!
//! Where bf-p4c (p4lang/p4c `backends/tofino`, Tofino 1) is on PATH, every
//! Tofino program of the examples and fixtures also compiles with it, with
//! cltc's P4Info ids. Each check is skipped, with a message, without its
//! tool (`p4test`, `bf-p4c`) on PATH or without the headers
//! (`CLT_TNA_P4INCLUDE`, else /opt/open-tofino/p4include).

use clt_bmv2_tests::{
    Generated, Ids, compare, examples_dir, find_tool, fixtures_dir, generate_in, ids, run_p4test,
    tna_p4include,
};
use cltc::backend::p4::objects::{
    MAX_LEARNING_QUANTA_BYTES, learning_quanta_bytes, tna_digest_bytes,
};
use cltc::backend::p4::textpb::TextMessage;
use cltc::backend::p4::{self, Target};
use cltc::ir::{NodeIdx, NodeKind};
use std::path::Path;

/// A Tofino that decapsulates two domains, each with the largest digest
/// within bf-p4c's 48-byte learning quanta: 36 bytes (the digest type
/// included) + 12 bytes of node data, `small` as 3 x 4, `big` as 1 x 12
/// (three fields, the queue depth among them). One more hop of either (52
/// or 60 bytes) is cltc's error E0032.
const TOFINO_DECAP: &str = r#"
domain small {
    namespace 10
    trace hop_limit_node_id
    max_hops 3
    collector 127.0.0.1:7123
}

domain big {
    namespace 20
    trace hop_limit_node_id, interface_ids, queue_depth
    max_hops 1
    context w3c
    collector 127.0.0.1:7123
}

node entry linux {
    id 1
    interface eth0 { id 11 address db01::1/64 mac 02:00:00:00:01:01 }
}

node sw tofino {
    id 2
    p4runtime 127.0.0.1:9559 device 1
    port 1 { id 21 mac 02:00:00:00:02:01 }
    port 2 { id 22 mac 02:00:00:00:02:02 }
}

node server linux {
    id 3
    interface eth0 { id 31 address db02::2/64 mac 02:00:00:00:03:01 }
}

link entry.eth0 -- sw.1
link sw.2 -- server.eth0

policy to_small {
    domain small
    from entry to sw
    match dst db02::/64 proto tcp dport 443
}

policy to_big {
    domain big
    from entry to sw
    match dst db02::/64 proto tcp dport 80
}
"#;

/// The TNA program of [`TOFINO_DECAP`]'s switch.
fn tofino_decap() -> Generated {
    let compiled = cltc::compile_source("tofino_decap.clt", TOFINO_DECAP)
        .unwrap_or_else(|d| panic!("{}", d.render("tofino_decap.clt", TOFINO_DECAP)));
    let fabric = compiled.fabric;
    let sw = fabric
        .nodes
        .iter()
        .position(|n| n.name == "sw")
        .expect("the switch");
    Generated {
        label: "tofino_decap:sw".to_string(),
        stem: "tofino_decap_sw".to_string(),
        target: Target::Tna,
        artifacts: p4::compile(&fabric, NodeIdx(sw as u32), Target::Tna),
    }
}

/// The TNA program of every P4 node (tofino and bmv2: the program depends
/// only on the node's domains and ports) of every example and fixture.
fn every_tna_program() -> Vec<Generated> {
    let kinds = [NodeKind::Tofino, NodeKind::Bmv2];
    let mut all = generate_in(&examples_dir(), "", Target::Tna, &kinds).expect("examples compile");
    all.extend(
        generate_in(&fixtures_dir(), "fixture/", Target::Tna, &kinds).expect("fixtures compile"),
    );
    assert!(
        all.iter().any(|g| g.label.starts_with("leaf-spine:spine")),
        "the leaf-spine example's tofino spines are missing"
    );
    // The decapsulating path (Decap controls, digests) on TNA.
    let decap = tofino_decap();
    assert!(decap.artifacts.program.contains(".pack(meta.digest_d1)"));
    all.push(decap);
    all
}

/// cltc's tables and actions only: p4test's P4Runtime back end is
/// v1model's, which does not know TNA's `Register` and `Digest` externs.
fn tables_and_actions(mut ours: Ids) -> Ids {
    ours.objects
        .retain(|(kind, _), _| kind == "tables" || kind == "actions");
    ours
}

/// Checks one program; the problems found, one line each.
fn check(p4test: &Path, include: &Path, dir: &Path, g: &Generated) -> Vec<String> {
    let program = dir.join(format!("{}.p4", g.stem));
    if let Err(e) = std::fs::write(&program, &g.artifacts.program) {
        return vec![format!("{}: write {}: {e}", g.label, program.display())];
    }
    let out = match run_p4test(p4test, include, &program, dir, &g.stem) {
        Ok(out) => out,
        Err(e) => return vec![format!("{}: {e}", g.label)],
    };
    // Unused declarations are harmless: the shared library declares
    // constants that a node without domains does not use.
    let mut problems: Vec<String> = out
        .warnings
        .iter()
        .filter(|w| !w.contains("[--Wwarn=unused]"))
        .map(|w| format!("{}: {w}", g.label))
        .collect();
    let ours = ids(&g.artifacts.p4info, &g.label).expect("cltc's p4info parses");
    let theirs = ids(&out.p4info, &g.label).expect("p4test's p4info parses");
    if theirs.objects.is_empty() {
        problems.push(format!("{}: p4test's P4Info has no table", g.label));
    }
    for d in compare(&tables_and_actions(ours), &theirs) {
        problems.push(format!("{}: {d}", g.label));
    }
    problems
}

/// Runs `check` on every program, one thread per core (at most 4), each
/// thread taking the next program in order when it is done, and returns
/// every problem found.
fn check_in_parallel(
    programs: &[Generated],
    check: impl Fn(&Generated) -> Vec<String> + Sync,
) -> Vec<String> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (next, check) = (&next, &check);
                s.spawn(move || {
                    let mut found = Vec::new();
                    while let Some(g) =
                        programs.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        found.extend(check(g));
                    }
                    found
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a checking thread panicked"))
            .collect()
    })
}

#[test]
fn p4test_accepts_every_tna_program_with_our_ids() {
    // The generation must work everywhere, p4test or not.
    let generated = every_tna_program();

    let Some(p4test) = find_tool("p4test") else {
        clt_bmv2_tests::report_skip(
            "tna::p4test_accepts_every_tna_program_with_our_ids",
            "p4test (p4c's front-end test back end) not on PATH",
        );
        return;
    };
    let include = match tna_p4include() {
        Ok(dir) => dir,
        Err(why) => {
            clt_bmv2_tests::report_skip("tna::p4test_accepts_every_tna_program_with_our_ids", &why);
            return;
        }
    };
    let tmp = tempfile::tempdir().expect("temporary directory");

    // p4test takes about two seconds a program.
    let problems = check_in_parallel(&generated, |g| check(&p4test, &include, tmp.path(), g));
    assert!(
        problems.is_empty(),
        "{} of {} TNA programs:\n{}",
        problems.len(),
        generated.len(),
        problems.join("\n")
    );
}

/// The check fails on a broken program: p4test really runs and reports.
#[test]
fn p4test_rejects_a_broken_tna_program() {
    let Some(p4test) = find_tool("p4test") else {
        clt_bmv2_tests::report_skip(
            "tna::p4test_rejects_a_broken_tna_program",
            "p4test not on PATH",
        );
        return;
    };
    let include = match tna_p4include() {
        Ok(dir) => dir,
        Err(why) => {
            clt_bmv2_tests::report_skip("tna::p4test_rejects_a_broken_tna_program", &why);
            return;
        }
    };
    let mut g = every_tna_program().remove(0);
    // A 48-bit timestamp into a 32-bit field: a type error.
    g.artifacts.program = g.artifacts.program.replacen(
        "f.ingress_if = 16w0xffff;",
        "f.ingress_if = eg_prsr_md.global_tstamp;",
        1,
    );
    assert!(g.artifacts.program.contains("ingress_if = eg_prsr_md"));
    let dir = tempfile::tempdir().expect("temporary directory");
    let problems = check(&p4test, &include, dir.path(), &g);
    assert!(
        problems.iter().any(|p| p.contains("p4test")),
        "no p4test error: {problems:?}"
    );
}

/// The learning quanta of each digest of a P4Info, as bf-p4c counts it
/// (cltc's `learning_quanta_bytes`, the count cltc's E0032 uses), from the
/// digest structs the P4Info declares.
fn learning_quanta(p4info: &str) -> Vec<(String, u32)> {
    let info = TextMessage::parse(p4info).expect("cltc's p4info parses");
    let Some(types) = info.message("type_info") else {
        return Vec::new();
    };
    types
        .messages("structs")
        .filter_map(|s| {
            let name = s.string("key")?.to_string();
            let widths: Vec<u32> = s
                .message("value")?
                .messages("members")
                .filter_map(|m| {
                    m.message("type_spec")?
                        .message("bitstring")?
                        .message("bit")?
                        .number("bitwidth")
                })
                .map(|bits| u32::try_from(bits).expect("a member width fits u32"))
                .collect();
            Some((name, learning_quanta_bytes(widths)))
        })
        .collect()
}

/// Every digest of a Tofino node of the examples and fixtures fits bf-p4c's
/// learning-quanta limit (a Tofino node has a digest only for the domains it
/// decapsulates). Reasoned from bf-p4c's sources, not compiled: where this
/// fails, bf-p4c would reject the program.
#[test]
fn tofino_digests_fit_a_learning_quanta() {
    let kinds = [NodeKind::Tofino];
    let mut tofinos =
        generate_in(&examples_dir(), "", Target::Tna, &kinds).expect("examples compile");
    tofinos.extend(
        generate_in(&fixtures_dir(), "fixture/", Target::Tna, &kinds).expect("fixtures compile"),
    );
    assert!(!tofinos.is_empty(), "no tofino node");
    let too_big: Vec<String> = tofinos
        .iter()
        .flat_map(|g| {
            learning_quanta(&g.artifacts.p4info)
                .into_iter()
                .filter(|(_, bytes)| *bytes > MAX_LEARNING_QUANTA_BYTES)
                .map(move |(name, bytes)| format!("{}: {name}: {bytes} bytes", g.label))
        })
        .collect();
    assert!(
        too_big.is_empty(),
        "digests over bf-p4c's {MAX_LEARNING_QUANTA_BYTES} bytes:\n{}",
        too_big.join("\n")
    );

    // The count itself, on a switch that decapsulates two traces with the
    // most node data a digest can hold (12 bytes: node data comes in
    // 4-byte units and 36 + 16 > 48), the same as cltc's count.
    let quanta = learning_quanta(&tofino_decap().artifacts.p4info);
    assert_eq!(
        quanta,
        vec![
            ("trace_digest_d0_t".to_string(), 36 + 12),
            ("trace_digest_d1_t".to_string(), 36 + 12)
        ]
    );
    assert_eq!(quanta[0].1, tna_digest_bytes(12));
    assert!(tna_digest_bytes(12 + 4) > MAX_LEARNING_QUANTA_BYTES);
}

/// One more hop of either domain of [`TOFINO_DECAP`] and cltc refuses the
/// switch (E0032): what bf-p4c would reject never reaches it.
#[test]
fn cltc_refuses_a_tofino_digest_over_the_learning_quanta() {
    for (from, to) in [
        ("max_hops 3", "max_hops 4"),
        ("max_hops 1\n    context w3c", "max_hops 2\n    context w3c"),
    ] {
        let src = TOFINO_DECAP.replacen(from, to, 1);
        assert_ne!(src, TOFINO_DECAP, "{from} not in the source");
        let diags = match cltc::compile_source("tofino_decap.clt", &src) {
            Ok(_) => panic!("{to}: compiles"),
            Err(d) => d,
        };
        let codes: Vec<&str> = diags.errors().map(|d| d.code.as_str()).collect();
        assert_eq!(
            codes,
            ["E0032"],
            "{to}: {}",
            diags.render("tofino_decap.clt", &src)
        );
    }
}

/// Runs bf-p4c on one program as docs/policy-language.md tells operators
/// to; the problems found, one line each (its errors, then P4Info ids that
/// differ from cltc's).
fn check_bf_p4c(bf_p4c: &Path, dir: &Path, g: &Generated) -> Vec<String> {
    let program = dir.join(format!("{}.p4", g.stem));
    let p4info = dir.join(format!("{}.bf-p4c.p4info.txtpb", g.stem));
    if let Err(e) = std::fs::write(&program, &g.artifacts.program) {
        return vec![format!("{}: write {}: {e}", g.label, program.display())];
    }
    let out = match std::process::Command::new(bf_p4c)
        .args([
            "--target",
            "tofino",
            "--arch",
            "tna",
            "--p4runtime-force-std-externs",
        ])
        .arg("--p4runtime-files")
        .arg(&p4info)
        .arg("-o")
        .arg(dir.join(format!("{}.out", g.stem)))
        .arg(&program)
        .output()
    {
        Ok(out) => out,
        Err(e) => return vec![format!("{}: run {}: {e}", g.label, bf_p4c.display())],
    };
    if !out.status.success() {
        return vec![format!(
            "{}: bf-p4c failed ({}):\n{}",
            g.label,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )];
    }
    let theirs = match std::fs::read_to_string(&p4info) {
        Ok(text) => ids(&text, &g.label).expect("bf-p4c's p4info parses"),
        Err(e) => return vec![format!("{}: read {}: {e}", g.label, p4info.display())],
    };
    let ours = ids(&g.artifacts.p4info, &g.label).expect("cltc's p4info parses");
    compare(&ours, &theirs)
        .into_iter()
        .map(|d| format!("{}: {d}", g.label))
        .collect()
}

/// The Tofino programs bf-p4c compiles by default, the slowest first
/// (p4c-barefoot 9.13.4 built -O0, alone on two cores: 132, 90, 83 and 32 s;
/// two at a time, about three minutes in all). Between them every role and
/// part of the program: 7 domains, transit filled in ingress and the 7th
/// decapsulated with digest type 7 (fixture tofino_seventh_domain.clt);
/// decapsulation with the largest digests, two of 48 bytes, and egress
/// completing the queue depth in both layouts ([`TOFINO_DECAP`]: `big` has
/// `context w3c`); encapsulation with the queue depth and transit delay (the
/// bridged timestamp) written by egress (fixture tofino_encap.clt);
/// forwarding only (leaf-spine spine2). `CLT_BF_P4C_ALL=1`: every Tofino
/// program of the examples and fixtures (leaf-spine spine1: 184 s, fixtures
/// tofino.clt, tofino_decap.clt, tofino_egress_reach.clt; about seven
/// minutes).
const BF_P4C_SET: [&str; 4] = [
    "fixture/tofino_seventh_domain:s1",
    "tofino_decap:sw",
    "fixture/tofino_encap:s1",
    "leaf-spine:spine2",
];

/// bf-p4c (where installed) compiles the Tofino programs cltc generates
/// (parser, PHV allocation, table placement; p4c-barefoot has no assembler
/// here) and its P4Info has cltc's ids, registers and digests included:
/// [`BF_P4C_SET`], or all of them with `CLT_BF_P4C_ALL=1`.
#[test]
fn bf_p4c_compiles_every_tofino_program_with_our_ids() {
    let Some(bf_p4c) = find_tool("bf-p4c") else {
        clt_bmv2_tests::report_skip(
            "tna::bf_p4c_compiles_every_tofino_program_with_our_ids",
            "bf-p4c (p4lang/p4c backends/tofino) not on PATH",
        );
        return;
    };
    let kinds = [NodeKind::Tofino];
    let mut tofinos =
        generate_in(&examples_dir(), "", Target::Tna, &kinds).expect("examples compile");
    tofinos.extend(
        generate_in(&fixtures_dir(), "fixture/", Target::Tna, &kinds).expect("fixtures compile"),
    );
    tofinos.push(tofino_decap());
    for label in BF_P4C_SET {
        assert!(
            tofinos.iter().any(|g| g.label == label),
            "{label}: no such Tofino program"
        );
    }
    if std::env::var_os("CLT_BF_P4C_ALL").is_none() {
        tofinos.retain(|g| BF_P4C_SET.contains(&g.label.as_str()));
    }
    // The slowest first, each thread taking the next program when done.
    tofinos.sort_by_key(|g| BF_P4C_SET.iter().position(|l| *l == g.label).unwrap_or(0));
    let tmp = tempfile::tempdir().expect("temporary directory");
    let problems = check_in_parallel(&tofinos, |g| check_bf_p4c(&bf_p4c, tmp.path(), g));
    assert!(
        problems.is_empty(),
        "{} problems in {} Tofino programs:\n{}",
        problems.len(),
        tofinos.len(),
        problems.join("\n")
    );
}
