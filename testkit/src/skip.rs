//! Why a test cannot run on this machine, and how it says so.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Says that the current test was skipped, and why, where CI and users see
/// it: libtest captures `print!`/`eprint!` of passing tests, a direct write
/// to the stderr file descriptor is not captured.
pub fn report_skip(why: &str) {
    let test = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .map(str::to_owned)
        .unwrap_or_else(|| "test".to_owned());
    let _ = writeln!(std::io::stderr(), "{test}: skipped: {why}");
}

/// Whether the effective user is root (from `/proc/self/status`).
pub fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0")
}

/// The full path of `tool` if it is an executable file on `PATH`.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Why network-namespace tests cannot run: not root, or no iproute2.
pub fn netns_unavailable() -> Option<String> {
    if !is_root() {
        return Some("not root (network namespaces need CAP_SYS_ADMIN)".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("iproute2 `ip` is not installed".into());
    }
    None
}

/// The first of `tools` that is not on `PATH`, as a reason.
pub fn tools_missing(tools: &[&str]) -> Option<String> {
    tools
        .iter()
        .find(|t| find_tool(t).is_none())
        .map(|t| format!("{t} not on PATH (scripts/install-test-deps installs the test tools)"))
}

/// Why IOAM tests cannot run: the kernel lacks IOAM6, or iproute2 cannot
/// configure it (`ip ioam`).
pub fn ioam6_unavailable() -> Option<String> {
    if !Path::new("/proc/sys/net/ipv6/ioam6_id").exists() {
        return Some("kernel without IOAM6 (no net.ipv6.ioam6_id)".into());
    }
    let ok = Command::new("ip")
        .args(["ioam", "namespace", "show"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        return Some("`ip ioam` is not available (old iproute2?)".into());
    }
    None
}
