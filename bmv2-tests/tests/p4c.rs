//! Every generated program compiles with its target's P4 compiler
//! (p4c-bm2-ss for v1model, bf-p4c for TNA), and the compiler assigns the
//! ids cltc's P4Info declares. Skipped, with a message, where the compiler is
//! not installed.

use clt_bmv2_tests::{compare, compiler, find_tool, generate_examples, ids, run_p4c};
use cltc::backend::p4::Target;

fn check(target: Target) {
    // The generation must work everywhere, compiler or not.
    let generated = generate_examples(target).expect("examples compile");
    assert!(!generated.is_empty(), "no example has a {target:?} node");
    for g in &generated {
        ids(&g.artifacts.p4info, &g.label).expect("our p4info parses");
    }

    let name = compiler(target);
    let Some(p4c) = find_tool(name) else {
        clt_bmv2_tests::report_skip(&format!("p4c ({target:?})"), &format!("{name} not on PATH"));
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut failures = Vec::new();
    for g in &generated {
        let program = dir.path().join(format!("{}.p4", g.stem));
        std::fs::write(&program, &g.artifacts.program).expect("write program");
        match run_p4c(&p4c, target, &program, dir.path(), &g.stem) {
            Err(e) => failures.push(format!("{}: {e}", g.label)),
            Ok(out) => {
                let ours = ids(&g.artifacts.p4info, &g.label).expect("our p4info");
                let theirs = ids(&out.p4info, &g.label).expect("the compiler's p4info");
                for d in compare(&ours, &theirs) {
                    failures.push(format!("{}: {d}", g.label));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn p4c_compiles_every_v1model_program_with_our_ids() {
    check(Target::V1Model);
}

#[test]
fn bf_p4c_compiles_every_tna_program_with_our_ids() {
    check(Target::Tna);
}
