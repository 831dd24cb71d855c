//! Interoperability with p4runtime-shell (PyPI), which speaks P4Runtime with
//! the official p4lang protobuf bindings: it pushes a pipeline from our
//! text-format P4Info and inserts routes into the in-process server (built
//! on our protos); the controller then reads them back as exactly the
//! routes it would have written. Skipped with a message when p4runtime-shell
//! is not importable by `$P4RUNTIME_SHELL_PYTHON` (default `python3`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use clt_controller::connect::connect;
use clt_controller::inputs::to_text;
use clt_controller::{P4InfoIndex, Session, SessionOptions};
use common::*;

#[tokio::test]
async fn routes_inserted_by_p4runtime_shell_are_the_controllers_routes() {
    let python = common::shell_python();
    let importable = std::process::Command::new(&python)
        .args(["-c", "import p4runtime_sh.shell"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !importable {
        println!(
            "skipped: `{python}` cannot import p4runtime_sh (pip install p4runtime-shell, or set P4RUNTIME_SHELL_PYTHON)"
        );
        return;
    }
    let (sw, addr) = FakeSwitch::start().await;
    let dir = tempfile::tempdir().unwrap();
    let p4info_path = dir.path().join("p4info.txtpb");
    let config_path = dir.path().join("program.json");
    std::fs::write(
        &p4info_path,
        to_text("p4.config.v1.P4Info", &p4info()).unwrap(),
    )
    .unwrap();
    std::fs::write(&config_path, b"{}").unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/p4runtime_shell_routes.py"
    );
    let out = tokio::process::Command::new(&python)
        .args([
            script,
            &addr.to_string(),
            p4info_path.to_str().unwrap(),
            config_path.to_str().unwrap(),
            "20",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "p4runtime-shell failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sw.state().tables.len(), 20);
    // p4runtime-shell pushed the pipeline from our P4Info text.
    assert_eq!(
        sw.state().pipeline.as_ref().unwrap().p4info.as_ref(),
        Some(&p4info())
    );

    let channel = connect(&addr.to_string(), None, Duration::from_secs(5))
        .await
        .unwrap();
    let mut s = Session::open(channel, SessionOptions::new(1, 1))
        .await
        .unwrap();
    let info = P4InfoIndex::new(p4info());
    let plan = s.verify(&info, &routes(20)).await.unwrap();
    assert!(
        plan.is_empty(),
        "p4runtime-shell's entries differ from ours: {plan:?}"
    );
    assert_eq!(plan.unchanged, 20);
}
