//! Test support shared by CLT's crates (a dev-dependency only).
//!
//! - [`skip`]: why a test cannot run here (not root, a tool missing, no
//!   IOAM6 in the kernel) and [`report_skip`], which writes past libtest's
//!   output capture so that a skipped test is visible in CI logs.
//! - [`unique`] and [`unique_ifname`]: names that parallel tests (threads of
//!   one process and concurrent test processes) never share.
//! - [`ip`], [`run`] and their `try_` forms: commands with errors that name
//!   the command, its exit status and its stderr.
//! - [`Netns`]: a network namespace deleted on drop, also when the test
//!   panics; [`veth`] links two of them; [`KillOnDrop`] does the same for
//!   a child process.
//! - [`pcap`] and [`tshark`]: captures in a namespace, pcap files read and
//!   written, and tshark's dissection as field values.
//!
//! It depends on no CLT crate, so any crate (clt-wire included) can use it.

pub mod pcap;
pub mod skip;
pub mod tshark;

mod child;
mod cmd;
mod names;
mod netns;

pub use child::KillOnDrop;
pub use cmd::{Error, ip, run, run_command, try_ip, try_run, try_run_command};
pub use names::{TempFile, free_port, unique, unique_ifname};
pub use netns::{Netns, try_veth, veth};
pub use skip::report_skip;

/// Returns from the enclosing test, after [`report_skip`], when `$why` (an
/// `Option<String>`) says the test cannot run here.
///
/// ```
/// fn a_test() {
///     clt_testkit::skip_if!(clt_testkit::skip::tools_missing(&["no-such-tool-clt"]));
///     unreachable!("skipped");
/// }
/// a_test();
/// ```
#[macro_export]
macro_rules! skip_if {
    ($why:expr) => {
        if let Some(why) = $why {
            $crate::report_skip(&why);
            return;
        }
    };
}
