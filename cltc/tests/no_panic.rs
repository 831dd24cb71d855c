//! The front end never panics: arbitrary text and mutated examples only
//! produce diagnostics (or a fabric), and rendering them never panics.

use proptest::prelude::*;

const EXAMPLES: [&str; 3] = [
    include_str!("../../examples/login.clt"),
    include_str!("../../examples/leaf-spine.clt"),
    include_str!("../../examples/telemetry.clt"),
];

/// Compiles and renders; the only requirement is not panicking, and that
/// an error result carries at least one error.
fn front_end(src: &str) {
    match cltc::compile_source("fuzz.clt", src) {
        Ok(c) => {
            let _ = cltc::print::ir(&c.fabric);
            let _ = cltc::output::files("fuzz.clt", &c.fabric);
        }
        Err(d) => {
            assert!(d.has_errors());
            let _ = d.render("fuzz.clt", src);
        }
    }
}

/// Applies byte-level edits to an example at char boundaries.
fn mutate(src: &str, edits: &[(usize, u8, String)]) -> String {
    let mut s = src.to_string();
    for (pos, op, text) in edits {
        if s.is_empty() {
            s.push_str(text);
            continue;
        }
        let mut at = pos % s.len();
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        let end = (at + 1 + (*pos % 7)).min(s.len());
        let mut end2 = end;
        while !s.is_char_boundary(end2) {
            end2 -= 1;
        }
        match op % 3 {
            0 => s.insert_str(at, text),
            1 => s.replace_range(at..end2, ""),
            _ => s.replace_range(at..end2, text),
        }
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_does_not_panic(src in "\\PC{0,400}") {
        front_end(&src);
    }

    #[test]
    fn token_soup_does_not_panic(words in prop::collection::vec(prop::sample::select(vec![
        "domain", "node", "link", "policy", "{", "}", "namespace", "trace", "id", "wide",
        "interface", "port", "p4runtime", "device", "address", "mac", "mtu", "from", "to",
        "match", "dst", "sample", "1/0", "0", "65536", "x", "eth0", "a.eth0", "--", ",",
        "db01::1/64", "02:00:00:00:00:01", "127.0.0.1:1", "linux", "bmv2", "tofino", "\n", "#",
        "hop_limit_node_id", "opaque_state", "schema", "\"s\"", "context", "w3c", "max_hops",
    ]), 0..120)) {
        front_end(&words.join(" "));
    }

    #[test]
    fn mutated_examples_do_not_panic(
        which in 0usize..3,
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), "[a-z0-9:./{}#\\- \n]{0,6}"), 1..6),
    ) {
        front_end(&mutate(EXAMPLES[which], &edits));
    }
}
