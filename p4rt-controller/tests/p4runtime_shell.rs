//! Interoperability with p4runtime-shell (PyPI), which speaks P4Runtime with
//! the official p4lang protobuf bindings: it pushes a pipeline from our
//! text-format P4Info and inserts routes into the in-process server (built
//! on our protos); the controller then reads them back as exactly the
//! routes it would have written. Skipped with a message when p4runtime-shell
//! is not importable by `$P4RUNTIME_SHELL_PYTHON` (default `python3`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use clt_controller::P4InfoIndex;
use common::*;

#[tokio::test]
async fn routes_inserted_by_p4runtime_shell_are_the_controllers_routes() {
    let python = common::shell_python();
    if let Some(why) = shell_missing(&python) {
        println!("skipped: {why}");
        return;
    }
    let (sw, addr) = FakeSwitch::start().await;
    let out = shell_insert_routes(&python, addr, 20).await;
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

    let mut s = session(addr, 1).await;
    let info = P4InfoIndex::new(p4info());
    let plan = s.verify(&info, &routes(20)).await.unwrap();
    assert!(
        plan.is_empty(),
        "p4runtime-shell's entries differ from ours: {plan:?}"
    );
    assert_eq!(plan.unchanged, 20);
}
