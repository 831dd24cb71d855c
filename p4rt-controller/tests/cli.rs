//! The `clt-controller` binary end to end: `check` on a `cltc compile`
//! output, then `install` (twice: the second writes nothing) and `diff`
//! against the in-process P4Runtime server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fabric_dir;

use std::process::Output;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_clt-controller");

/// Compiles examples/login.clt and writes a config for its router pointing
/// at `addr`.
fn setup(addr: std::net::SocketAddr) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    fabric_dir::write("login.clt", &fabric_dir::example("login"), dir.path());
    let config = dir.path().join("controller.toml");
    std::fs::write(
        &config,
        format!("[[device]]\nname = \"router\"\ncompiled = \".\"\naddress = \"{addr}\"\n"),
    )
    .unwrap();
    (dir, config)
}

async fn run(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::process::Command::new(BIN)
        .args(&args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn check_install_and_diff_from_the_command_line() {
    let (sw, addr) = FakeSwitch::start().await;
    let (_dir, config) = setup(addr);
    let config = config.to_str().unwrap();

    let out = run(&["check", "--config", config]).await;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.starts_with("router: "), "{text}");
    assert!(text.contains("digests [trace_digest_"), "{text}");

    let out = run(&["install", "--config", config]).await;
    assert!(out.status.success(), "{out:?}");
    let installed = sw.state().tables.len();
    assert!(installed > 0);
    assert!(
        stdout(&out).contains(&format!("inserted {installed}, modified 0, deleted 0")),
        "{}",
        stdout(&out)
    );

    let out = run(&["install", "--config", config]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains(&format!(
            "inserted 0, modified 0, deleted 0, unchanged {installed}"
        )),
        "{}",
        stdout(&out)
    );
    assert_eq!(sw.state().set_pipeline_calls, 1);

    // Someone removes an entry by hand: diff shows it, install puts it back.
    let first = sw.state().tables.keys().next().cloned().unwrap();
    sw.state().tables.remove(&first);
    let out = run(&["diff", "--config", config]).await;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("router: + ")).count(),
        1,
        "{text}"
    );
    assert!(text.contains("router: 1 to write"), "{text}");

    let out = run(&["install", "--config", config, "--device", "nope"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no device named nope"),
        "{out:?}"
    );
}

#[tokio::test]
async fn install_fails_clearly_when_the_switch_is_unreachable() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (_dir, config) = setup(addr);
    let out = run(&["install", "--config", config.to_str().unwrap()]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("device router") && err.contains("cannot connect"),
        "{err}"
    );
}
