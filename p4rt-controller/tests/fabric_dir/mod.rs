//! Fabrics compiled by cltc into a directory, as `cltc compile -o` writes
//! them, for the tests that read compiled output (rollout, `--compiled`
//! devices, the CLI). p4c's output is not built here: each P4 program gets
//! a stand-in device config beside it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use clt_controller::config::DEVICE_CONFIG_FILE;
use clt_controller::rollout::Compiled;

/// What the stand-in device configs hold.
pub const STAND_IN: &[u8] = b"{\"stand-in\": true}";

/// `examples/NAME.clt`.
pub fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/{name}.clt"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compiles `src` (`name` in diagnostics) and writes cltc's output, with
/// the stand-in device configs, into `dir`; returns cltc's fabric.
pub fn write(name: &str, src: &str, dir: &Path) -> cltc::ir::Fabric {
    let compiled = match cltc::compile_source(name, src) {
        Ok(c) => c,
        Err(d) => panic!("cltc rejected {name}:\n{}", d.render(name, src)),
    };
    for f in cltc::output::files(name, &compiled.fabric) {
        let path = dir.join(&f.path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &f.contents).unwrap();
        if path.file_name().is_some_and(|n| n == "program.p4") {
            std::fs::write(path.with_file_name(DEVICE_CONFIG_FILE), STAND_IN).unwrap();
        }
    }
    compiled.fabric
}

/// `src` written by [`write`] into a fresh directory, and loaded as a
/// rollout input.
pub fn compile(name: &str, src: &str) -> (tempfile::TempDir, Compiled) {
    let dir = tempfile::tempdir().unwrap();
    write(name, src, dir.path());
    let c = Compiled::load(dir.path()).unwrap();
    (dir, c)
}
