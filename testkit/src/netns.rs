//! Network namespaces that go away with the test.

use crate::cmd::{Error, run_command, try_ip, try_run_command};
use crate::names::unique;
use std::process::Command;

/// A network namespace, deleted on drop (also when the test panics, since
/// unwinding drops it). Its loopback is up.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// A new namespace named [`unique`]`(prefix)`.
    pub fn try_new(prefix: &str) -> Result<Netns, Error> {
        let name = unique(prefix);
        try_ip(&["netns", "add", &name])?;
        // The guard first: if bringing `lo` up fails, Drop still deletes it.
        let ns = Netns { name };
        ns.try_ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// [`Netns::try_new`], panicking with the error.
    pub fn new(prefix: &str) -> Netns {
        Netns::try_new(prefix).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS...`.
    pub fn try_ip(&self, args: &[&str]) -> Result<String, Error> {
        try_run_command(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// [`Netns::try_ip`], panicking with the error.
    pub fn ip(&self, args: &[&str]) -> String {
        self.try_ip(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A command that runs `program` inside the namespace
    /// (`ip netns exec NAME program`); `ip` execs it, so the child's pid is
    /// the program's.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `args` inside the namespace; their stdout.
    pub fn try_exec(&self, args: &[&str]) -> Result<String, Error> {
        let (program, rest) = args.split_first().ok_or_else(|| Error::Spawn {
            cmd: format!("ip netns exec {}", self.name),
            source: std::io::Error::other("empty command line"),
        })?;
        try_run_command(self.command(program).args(rest))
    }

    /// [`Netns::try_exec`], panicking with the error.
    pub fn exec(&self, args: &[&str]) -> String {
        let (program, rest) = args.split_first().expect("a command line");
        run_command(self.command(program).args(rest))
    }

    /// Sets a sysctl inside the namespace (`sysctl -qw key=value`).
    pub fn try_sysctl(&self, key: &str, value: &str) -> Result<(), Error> {
        self.try_exec(&["sysctl", "-qw", &format!("{key}={value}")])
            .map(drop)
    }

    /// [`Netns::try_sysctl`], panicking with the error.
    pub fn sysctl(&self, key: &str, value: &str) {
        self.try_sysctl(key, value)
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = try_ip(&["netns", "del", &self.name]) {
            // Not a panic (we may be unwinding already), but visible.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "clt-testkit: {e}");
        }
    }
}

/// A veth pair from `a`'s `a_if` to `b`'s `b_if`, created directly in the
/// namespaces (so the names need only be unique per namespace), both ends
/// down.
pub fn try_veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<(), Error> {
    // `name` spelled out: an interface called `up` or `down` would
    // otherwise be read as a flag.
    a.try_ip(&[
        "link", "add", "name", a_if, "type", "veth", "peer", "name", b_if, "netns", &b.name,
    ])
    .map(drop)
}

/// [`try_veth`], panicking with the error.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    try_veth(a, a_if, b, b_if).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str) -> bool {
        crate::ip(&["netns", "list"])
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name))
    }

    #[test]
    fn a_namespace_is_deleted_even_when_the_test_panics() {
        crate::skip_if!(crate::skip::netns_unavailable());
        let (tx, rx) = std::sync::mpsc::channel();
        let panicked = std::thread::spawn(move || {
            let (a, b) = (Netns::new("cltkita"), Netns::new("cltkitb"));
            veth(&a, "x0", &b, "y0");
            assert!(b.ip(&["link", "show", "y0"]).contains("y0"));
            veth(&a, "up", &b, "down");
            assert!(a.ip(&["link", "show", "dev", "up"]).contains("up@"));
            a.sysctl("net.ipv6.conf.all.forwarding", "1");
            assert_eq!(
                a.exec(&["cat", "/proc/sys/net/ipv6/conf/all/forwarding"]),
                "1\n"
            );
            tx.send((a.name().to_owned(), b.name().to_owned())).unwrap();
            assert!(listed(a.name()));
            panic!("on purpose");
        })
        .join()
        .is_err();
        assert!(panicked);
        let (a, b) = rx.recv().unwrap();
        assert!(!listed(&a) && !listed(&b), "{a} or {b} left behind");
        let e = Netns::new("cltkitc")
            .try_ip(&["link", "show", "nosuch0"])
            .unwrap_err();
        assert!(e.to_string().contains("nosuch0"), "{e}");
    }
}
