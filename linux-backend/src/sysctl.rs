//! `sysctl` keys through `/proc/sys`.
//!
//! `/proc/sys/net` shows the network namespace of the thread that opens the
//! file, so reads and writes made on a thread that joined a namespace see that
//! namespace.

use crate::Error;
use std::path::PathBuf;

/// The kernel's defaults for the global IOAM keys (`IOAM6_DEFAULT_ID` and
/// `IOAM6_DEFAULT_ID_WIDE`), used by teardown.
const GLOBAL_DEFAULTS: &[(&str, &str)] = &[
    ("net.ipv6.ioam6_id", "16777215"),
    ("net.ipv6.ioam6_id_wide", "72057594037927935"),
];

/// Maps a dotted key to its `/proc/sys` path. Interface names may contain
/// dots, so `net.ipv6.conf.<if>.<leaf>` and `net.ipv6.neigh.<if>.<leaf>` keep
/// the middle part whole.
pub fn path(key: &str) -> Result<PathBuf, Error> {
    if key.is_empty() || key.contains("..") || key.starts_with('.') || key.contains('\0') {
        return Err(Error::Plan(format!("bad sysctl key {key:?}")));
    }
    for prefix in [
        "net.ipv6.conf.",
        "net.ipv4.conf.",
        "net.ipv6.neigh.",
        "net.ipv4.neigh.",
    ] {
        if let Some(rest) = key.strip_prefix(prefix) {
            let Some((iface, leaf)) = rest.rsplit_once('.') else {
                return Err(Error::Plan(format!("bad sysctl key {key:?}")));
            };
            // sysctl(8) spells a `.` in an interface name as `/`.
            let iface = iface.replace('/', ".");
            if iface.is_empty() || leaf.contains('/') {
                return Err(Error::Plan(format!("bad sysctl key {key:?}")));
            }
            let mut p = PathBuf::from("/proc/sys");
            p.extend(prefix.trim_end_matches('.').split('.'));
            p.push(iface);
            p.push(leaf);
            return Ok(p);
        }
    }
    if key.contains('/') {
        return Err(Error::Plan(format!("bad sysctl key {key:?}")));
    }
    let mut p = PathBuf::from("/proc/sys");
    p.extend(key.split('.'));
    Ok(p)
}

/// Reads a key, trimmed.
pub fn read(key: &str) -> Result<String, Error> {
    let p = path(key)?;
    std::fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|error| Error::Sysctl {
            key: key.to_string(),
            error,
        })
}

/// Writes a key.
pub fn write(key: &str, value: &str) -> Result<(), Error> {
    let p = path(key)?;
    std::fs::write(&p, value).map_err(|error| Error::Sysctl {
        key: key.to_string(),
        error,
    })
}

/// Two sysctl values are the same setting (the kernel may print numbers
/// differently from how they were written, e.g. hex).
pub fn same(a: &str, b: &str) -> bool {
    fn num(s: &str) -> Option<u128> {
        let s = s.trim();
        match s.strip_prefix("0x") {
            Some(h) => u128::from_str_radix(h, 16).ok(),
            None => s.parse().ok(),
        }
    }
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.trim() == b.trim(),
    }
}

/// What teardown restores a key to: the kernel default of a global IOAM key,
/// or for `net.ipv6.conf.<if>.<leaf>` (and `all`) the namespace's
/// `net.ipv6.conf.default.<leaf>`, i.e. what a fresh interface gets. `None`
/// when no default is known (teardown then leaves the key alone and says so).
pub fn default_of(key: &str) -> Result<Option<String>, Error> {
    if let Some((_, v)) = GLOBAL_DEFAULTS.iter().find(|(k, _)| *k == key) {
        return Ok(Some((*v).to_string()));
    }
    for prefix in ["net.ipv6.conf.", "net.ipv4.conf."] {
        let Some((iface, leaf)) = key.strip_prefix(prefix).and_then(|r| r.rsplit_once('.')) else {
            continue;
        };
        if iface != "default" {
            return read(&format!("{prefix}default.{leaf}")).map(Some);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_with_dots_stay_whole() {
        assert_eq!(
            path("net.ipv6.conf.eth0.100.ioam6_id").unwrap(),
            PathBuf::from("/proc/sys/net/ipv6/conf/eth0.100/ioam6_id")
        );
        assert_eq!(
            path("net.ipv6.ioam6_id").unwrap(),
            PathBuf::from("/proc/sys/net/ipv6/ioam6_id")
        );
        assert_eq!(
            path("net.ipv6.conf.eth0/100.ioam6_id").unwrap(),
            PathBuf::from("/proc/sys/net/ipv6/conf/eth0.100/ioam6_id")
        );
        assert!(path("net.ipv6.conf.x/../y.z").is_err());
        assert!(path("net/ipv6/ioam6_id").is_err());
        assert!(path("net.ipv6.conf.noleaf").is_err());
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(same("0x10", "16"));
        assert!(same(" 1\n", "1"));
        assert!(!same("1", "2"));
        assert!(same("abc", "abc"));
    }
}
