//! Regenerates the committed protobuf code into a temporary directory with the
//! vendored `protoc` and fails on any difference (linkerd2-proxy's approach).
//! `CLT_PROTO_REGEN=1 cargo test -p clt-proto --test generated_code_is_fresh`
//! rewrites `src/gen/` instead.

mod common;

use std::path::{Path, PathBuf};

fn generate(out: &Path) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("vendored protoc");
    let wkt = protoc_bin_vendored::include_path().expect("vendored protoc includes");
    let includes = [root.clone(), wkt];
    let config = || {
        let mut c = prost_build::Config::new();
        c.protoc_executable(&protoc);
        c
    };

    // The public IOAM API: its service decodes with clt_proto::codec::IoamCodec
    // so that one method accepts both message variants.
    tonic_prost_build::configure()
        .out_dir(out)
        .emit_rerun_if_changed(false)
        .codec_path("crate::codec::IoamCodec")
        .compile_with_config(
            config(),
            &[
                root.join("ioam_api/ioam_api.proto"),
                root.join("ioam_api/legacy.proto"),
            ],
            &includes,
        )
        .expect("compile ioam_api");

    // CLT's richer API, which embeds ioam_api's messages. prost-build also
    // writes the imported packages it was told are extern, so generate into a
    // scratch directory and keep only clt_api.rs.
    let scratch = tempfile::tempdir().expect("tempdir");
    tonic_prost_build::configure()
        .out_dir(scratch.path())
        .emit_rerun_if_changed(false)
        .extern_path(".ioam_api", "crate::ioam_api")
        .compile_with_config(config(), &[root.join("clt_api/clt_api.proto")], &includes)
        .expect("compile clt_api");
    std::fs::copy(scratch.path().join("clt_api.rs"), out.join("clt_api.rs")).expect("copy clt_api");

    // The Linux node agent of the controller's rollout.
    tonic_prost_build::configure()
        .out_dir(out)
        .emit_rerun_if_changed(false)
        .compile_with_config(config(), &[root.join("clt_node/clt_node.proto")], &includes)
        .expect("compile clt_node");
}

#[test]
fn generated_code_is_fresh() {
    let committed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/gen");
    let tmp = tempfile::tempdir().expect("tempdir");
    generate(tmp.path());

    common::check_fresh(tmp.path(), &committed, 1, "generated_code_is_fresh");
}
