//! Names that parallel tests never share.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Longest interface name Linux accepts (`IFNAMSIZ` - 1).
pub const IFNAMSIZ_MAX: usize = 15;

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn next() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// `prefix`, this process's id and a per-process counter: unique across the
/// threads of a test binary and across test binaries running at once.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}x{}", std::process::id(), next())
}

fn base36(mut n: u32) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(char::from_digit(n % 36, 36).unwrap_or('0'));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

/// A unique name that fits an interface name (at most 15 bytes): the pid
/// and counter in base 36. Panics if `prefix` leaves no room for them.
pub fn unique_ifname(prefix: &str) -> String {
    let name = format!("{prefix}{}x{}", base36(std::process::id()), base36(next()));
    assert!(
        name.len() <= IFNAMSIZ_MAX,
        "interface name {name:?} is longer than {IFNAMSIZ_MAX} bytes: use a shorter prefix than {prefix:?}"
    );
    name
}

/// A TCP port of 127.0.0.1 that was free a moment ago (the kernel's pick
/// for port 0), for a server the test starts next. Another process may take
/// it in between: use it only where the server cannot be handed a bound
/// socket.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("a bound address").port()
}

/// A path in the temporary directory, unique like [`unique`], removed (file
/// or directory) on drop.
#[derive(Debug)]
pub struct TempFile(PathBuf);

impl TempFile {
    /// `$TMPDIR/{prefix}{pid}x{n}{suffix}`; nothing is created.
    pub fn new(prefix: &str, suffix: &str) -> TempFile {
        TempFile(std::env::temp_dir().join(format!("{}{suffix}", unique(prefix))))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.0.is_dir() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_interface_names_fit() {
        let a = unique_ifname("veth");
        let b = unique_ifname("veth");
        assert_ne!(a, b);
        assert!(a.len() <= IFNAMSIZ_MAX && a.starts_with("veth"), "{a}");
        assert_ne!(unique("ns"), unique("ns"));
        assert_eq!(base36(0), "0");
        assert_eq!(base36(4_194_304), "2hwcg");
        let port = free_port();
        assert_ne!(port, 0);
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    }

    #[test]
    #[should_panic(expected = "longer than 15 bytes")]
    fn a_long_prefix_is_refused() {
        unique_ifname("averyverylongpre");
    }

    #[test]
    fn temp_files_go_on_drop() {
        let t = TempFile::new("clt-testkit-", ".txt");
        std::fs::write(t.path(), b"x").unwrap();
        let p = t.path().to_path_buf();
        drop(t);
        assert!(!p.exists());
    }
}
