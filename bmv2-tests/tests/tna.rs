//! Every TNA program cltc generates passes p4c's front and mid end (`p4test`)
//! against Intel's published TNA headers, without a warning about the
//! program (but unused declarations), and p4c derives the table and action ids, match fields and
//! params that cltc's P4Info declares.
//!
//! bf-p4c is not available: this is the closest check of the Tofino output
//! (p4src/README.md, "How TNA differs", lists what only bf-p4c would
//! check). Skipped, with a message, without `p4test` on PATH or without the
//! headers (`CLT_TNA_P4INCLUDE`, else /opt/open-tofino/p4include).

use clt_bmv2_tests::{
    Generated, Ids, compare, examples_dir, find_tool, fixtures_dir, generate_in, ids, run_p4test,
    tna_p4include,
};
use cltc::backend::p4::Target;
use cltc::ir::NodeKind;
use std::path::Path;

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
    let dir = tempfile::tempdir().expect("temporary directory");

    // p4test takes about two seconds a program: one thread per core.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let chunk = generated.len().div_ceil(workers);
    let problems: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = generated
            .chunks(chunk)
            .map(|part| {
                let (p4test, include, dir) = (&p4test, &include, dir.path());
                s.spawn(move || {
                    part.iter()
                        .flat_map(|g| check(p4test, include, dir, g))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a checking thread panicked"))
            .collect()
    });
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
        "hdr.bridge.ingress_tstamp = ig_prsr_md.global_tstamp;",
        "hdr.bridge.ingress_if = ig_prsr_md.global_tstamp;",
        1,
    );
    assert!(g.artifacts.program.contains("ingress_if = ig_prsr_md"));
    let dir = tempfile::tempdir().expect("temporary directory");
    let problems = check(&p4test, &include, dir.path(), &g);
    assert!(
        problems.iter().any(|p| p.contains("p4test")),
        "no p4test error: {problems:?}"
    );
}
