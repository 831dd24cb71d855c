//! Every generated v1model program compiles with p4c-bm2-ss, and p4c assigns
//! the ids cltc's P4Info declares.

use clt_bmv2_tests::{compare, find_tool, generate_examples, ids, run_p4c};
use cltc::backend::p4::Target;

#[test]
fn p4c_compiles_every_v1model_program_with_our_ids() {
    // The generation must work everywhere, p4c or not.
    let generated = generate_examples(Target::V1Model).expect("examples compile");
    assert!(!generated.is_empty(), "no example has a bmv2 node");
    for g in &generated {
        ids(&g.artifacts.p4info, &g.label).expect("our p4info parses");
    }

    let Some(p4c) = find_tool("p4c-bm2-ss") else {
        println!("skipped: p4c-bm2-ss not on PATH");
        return;
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut failures = Vec::new();
    for g in &generated {
        let program = dir.path().join(format!("{}.p4", g.stem));
        std::fs::write(&program, &g.artifacts.program).expect("write program");
        match run_p4c(&p4c, &program, dir.path(), &g.stem) {
            Err(e) => failures.push(format!("{}: {e}", g.label)),
            Ok(out) => {
                let ours = ids(&g.artifacts.p4info, &g.label).expect("our p4info");
                let theirs = ids(&out.p4info, &g.label).expect("p4c's p4info");
                for d in compare(&ours, &theirs) {
                    failures.push(format!("{}: {d}", g.label));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
