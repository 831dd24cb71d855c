//! Running work inside a named network namespace.
//!
//! Namespaces are per thread: [`run_in`] spawns a thread, joins the namespace
//! there (`setns(CLONE_NEWNET)`), and runs the closure, so that netlink
//! sockets opened and `/proc/sys/net` files read by the closure belong to that
//! namespace while the rest of the process stays where it is.

use crate::Error;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;

/// Where `ip netns add NAME` keeps the namespace (or `NAME` itself when it is
/// a path, e.g. `/proc/1234/ns/net`).
pub fn path(name: &str) -> PathBuf {
    if name.contains('/') {
        PathBuf::from(name)
    } else {
        PathBuf::from("/run/netns").join(name)
    }
}

/// Joins the namespace `name` on the calling thread (and only on it).
///
/// The thread should be dedicated to work in that namespace: it stays there
/// until it ends.
pub fn enter(name: &str) -> Result<(), Error> {
    let err = |error| Error::Netns {
        name: name.to_string(),
        error,
    };
    let f = File::open(path(name)).map_err(err)?;
    crate::sys::setns_net(f.as_fd()).map_err(err)
}

/// Runs `f` on a new thread inside namespace `name`, or on a new thread in the
/// current namespace when `name` is `None`.
pub fn run_in<T, F>(name: Option<&str>, f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Error> + Send + 'static,
{
    let name = name.map(str::to_string);
    let handle = std::thread::Builder::new()
        .name("clt-netns".into())
        .spawn(move || {
            if let Some(n) = &name {
                enter(n)?;
            }
            f()
        })
        .map_err(|error| Error::Netns {
            name: "thread".into(),
            error,
        })?;
    match handle.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}
