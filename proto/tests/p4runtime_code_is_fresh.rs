//! Regenerates the committed P4Runtime code (`p4runtime/gen/`: the Rust
//! modules and the descriptor set the controller parses text format with)
//! and fails on any difference, like `generated_code_is_fresh`.
//! `CLT_PROTO_REGEN=1 cargo test -p clt-proto --test p4runtime_code_is_fresh`
//! rewrites `p4runtime/gen/` instead.

mod common;

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

    common::check_fresh(tmp.path(), &committed, 4, "p4runtime_code_is_fresh");
}
