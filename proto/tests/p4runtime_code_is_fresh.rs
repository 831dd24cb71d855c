//! Regenerates the committed P4Runtime code (`p4runtime/gen/`: the Rust
//! modules and the descriptor set the controller parses text format with)
//! and fails on any difference, like `generated_code_is_fresh`.
//! `CLT_PROTO_REGEN=1 cargo test -p clt-proto --test p4runtime_code_is_fresh`
//! rewrites `p4runtime/gen/` instead.

use std::path::{Path, PathBuf};

fn generate(out: &Path) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("p4runtime");
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("vendored protoc");
    let wkt = protoc_bin_vendored::include_path().expect("vendored protoc includes");
    let mut config = prost_build::Config::new();
    config.protoc_executable(&protoc);
    tonic_prost_build::configure()
        .out_dir(out)
        .emit_rerun_if_changed(false)
        .file_descriptor_set_path(out.join("p4runtime.bin"))
        .compile_with_config(
            config,
            &[root.join("p4/v1/p4runtime.proto")],
            &[root.clone(), wkt],
        )
        .expect("compile p4runtime");
}

#[test]
fn p4runtime_code_is_fresh() {
    let committed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("p4runtime/gen");
    let tmp = tempfile::tempdir().expect("tempdir");
    generate(tmp.path());

    let mut names: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("read generated")
        .map(|e| e.expect("dir entry").file_name())
        .collect();
    names.sort();
    assert!(names.len() >= 4, "protoc generated too little: {names:?}");

    let regen = std::env::var_os("CLT_PROTO_REGEN").is_some();
    if regen {
        std::fs::create_dir_all(&committed).expect("create p4runtime/gen");
    }
    let mut stale = Vec::new();
    for name in &names {
        let fresh = std::fs::read(tmp.path().join(name)).expect("read fresh");
        let path = committed.join(name);
        let old = std::fs::read(&path).unwrap_or_default();
        if fresh != old {
            if regen {
                std::fs::write(&path, &fresh).expect("write generated");
            } else {
                stale.push(name.to_string_lossy().into_owned());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated code is stale: {stale:?}; run CLT_PROTO_REGEN=1 cargo test -p clt-proto --test p4runtime_code_is_fresh"
    );
}
