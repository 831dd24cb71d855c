//! Every generated v1model program compiles with p4c-bm2-ss, which assigns
//! the ids and table sizes cltc's P4Info declares and prints no warning.
//! Skipped, with a message, where p4c-bm2-ss is not installed. TNA programs
//! are checked in `tests/tna.rs` (p4test; bf-p4c, ignored while it rejects
//! most of them: see p4src/README.md).

use clt_bmv2_tests::{compare, compiler, find_tool, generate_examples, ids, run_p4c};
use cltc::backend::p4::Target;
use cltc::backend::p4::textpb::TextMessage;

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
                for d in compare_sizes(&g.artifacts.p4info, &out.p4info) {
                    failures.push(format!("{}: {d}", g.label));
                }
                if out.stderr.contains("warning") {
                    failures.push(format!("{}: p4c warns:\n{}", g.label, out.stderr));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Tables whose `size` differs between cltc's P4Info and the compiler's.
fn compare_sizes(ours: &str, theirs: &str) -> Vec<String> {
    let sizes = |text: &str| -> Vec<(String, u64)> {
        let Ok(msg) = TextMessage::parse(text) else {
            return Vec::new();
        };
        msg.messages("tables")
            .filter_map(|t| {
                let name = t.message("preamble")?.string("name")?.to_string();
                Some((name, t.number("size")?))
            })
            .collect()
    };
    let theirs = sizes(theirs);
    sizes(ours)
        .into_iter()
        .filter_map(
            |(name, size)| match theirs.iter().find(|(n, _)| *n == name) {
                Some((_, s)) if *s != size => {
                    Some(format!("table {name}: cltc size {size}, p4c {s}"))
                }
                _ => None,
            },
        )
        .collect()
}

#[test]
fn p4c_compiles_every_v1model_program_with_our_ids() {
    check(Target::V1Model);
}
