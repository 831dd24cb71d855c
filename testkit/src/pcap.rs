//! Captures in a namespace (dumpcap, as tshark uses) and classic pcap files.

use crate::names::unique;
use crate::netns::Netns;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// `LINKTYPE_ETHERNET`.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// `LINKTYPE_RAW`: each record starts at the IP header.
pub const LINKTYPE_RAW: u32 = 101;

/// A running capture on an interface of a namespace, written as classic
/// pcap to a unique file in `dir`. Dropping it kills dumpcap and removes the
/// file.
#[derive(Debug)]
pub struct Capture {
    child: Option<Child>,
    path: PathBuf,
}

impl Capture {
    /// Starts dumpcap on `iface` in `ns` (with a capture `filter` if given)
    /// and waits (at most 20 s) until it captures.
    pub fn start(ns: &Netns, iface: &str, dir: &Path, filter: Option<&str>) -> Capture {
        let path = dir.join(format!("{}.pcap", unique("cap")));
        let mut cmd = ns.command("dumpcap");
        cmd.args(["-q", "-n", "-i", iface, "-P"]);
        if let Some(f) = filter {
            cmd.args(["-f", f]);
        }
        let child = cmd
            .arg("-w")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn dumpcap in {}: {e}", ns.name()));
        let cap = Capture {
            child: Some(child),
            path,
        };
        // dumpcap writes the pcap header once it captures.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::fs::metadata(&cap.path).map_or(0, |m| m.len()) < 24 {
            assert!(
                Instant::now() < deadline,
                "dumpcap on {iface} in {} did not start capturing",
                ns.name()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        cap
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits (at most 10 s) until the IPv6 packets written so far satisfy
    /// `done`.
    pub fn wait_for(&self, done: impl Fn(&[Vec<u8>]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(&ipv6_packets(&self.path)) {
            assert!(
                Instant::now() < deadline,
                "the capture never saw the packets"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the capture (SIGINT, so the file is complete) and returns the
    /// path; the file goes when the `Capture` is dropped.
    pub fn stop(&mut self) -> PathBuf {
        if let Some(mut child) = self.child.take() {
            // `ip netns exec` execs dumpcap: same pid.
            crate::run(&["kill", "-INT", &child.id().to_string()]);
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().ok().flatten().is_none() {
                assert!(Instant::now() < deadline, "dumpcap did not stop");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.path.clone()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn u32_le(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The link type and the complete records of a classic little-endian pcap
/// file (the file may still be growing); `None` before its header is
/// written. Panics on another file format.
fn records(path: &Path) -> Option<(u32, Vec<Vec<u8>>)> {
    let b = std::fs::read(path).unwrap_or_default();
    if b.len() < 24 {
        return None;
    }
    let magic = u32_le(&b, 0).unwrap_or(0);
    assert!(
        magic == 0xa1b2c3d4 || magic == 0xa1b23c4d,
        "{}: not a little-endian pcap",
        path.display()
    );
    let linktype = u32_le(&b, 20).unwrap_or(0);
    let mut out = Vec::new();
    let mut at = 24;
    while let Some(incl) = u32_le(&b, at + 8) {
        let Some(frame) = b.get(at + 16..at + 16 + incl as usize) else {
            break;
        };
        at += 16 + incl as usize;
        out.push(frame.to_vec());
    }
    Some((linktype, out))
}

/// The Ethernet frames of a classic little-endian pcap file (complete
/// records only). Panics on another file format or link type.
pub fn ethernet_frames(path: &Path) -> Vec<Vec<u8>> {
    let Some((linktype, frames)) = records(path) else {
        return Vec::new();
    };
    assert!(
        linktype == LINKTYPE_ETHERNET,
        "{}: link type {linktype}, expected Ethernet",
        path.display()
    );
    frames
}

/// The IPv6 packets of a classic little-endian pcap file of Ethernet frames
/// or raw IP records (complete records only: the file may still be
/// growing). Panics on another file format or link type.
pub fn ipv6_packets(path: &Path) -> Vec<Vec<u8>> {
    let Some((linktype, frames)) = records(path) else {
        return Vec::new();
    };
    assert!(
        linktype == LINKTYPE_ETHERNET || linktype == LINKTYPE_RAW,
        "{}: link type {linktype}, expected Ethernet or raw IP",
        path.display()
    );
    let mut out = Vec::new();
    for frame in frames {
        if linktype == LINKTYPE_RAW {
            if frame.first().is_some_and(|v| v >> 4 == 6) {
                out.push(frame);
            }
        } else if frame.len() > 14 && frame[12..14] == [0x86, 0xdd] {
            out.push(frame[14..].to_vec());
        }
    }
    out
}

/// A classic pcap file (microseconds, little endian) of `packets` as raw IP
/// records (`LINKTYPE_RAW`), time-stamped 1 s, 2 s, ...
pub fn write_raw(packets: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic, microseconds
    out.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // timezone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&65535u32.to_le_bytes()); // snaplen
    out.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
    for (i, p) in packets.iter().enumerate() {
        out.extend_from_slice(&(i as u32 + 1).to_le_bytes()); // ts seconds
        out.extend_from_slice(&0u32.to_le_bytes()); // ts microseconds
        out.extend_from_slice(&(p.len() as u32).to_le_bytes()); // captured
        out.extend_from_slice(&(p.len() as u32).to_le_bytes()); // on the wire
        out.extend_from_slice(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_pcaps_round_trip_and_truncated_records_are_left_out() {
        let mut p = vec![0x60u8; 40];
        p[1] = 0;
        let q = vec![0x45u8; 20]; // IPv4: not listed
        let bytes = write_raw(&[&p, &q]);
        let file = crate::TempFile::new("clt-testkit-", ".pcap");
        std::fs::write(file.path(), &bytes).unwrap();
        assert_eq!(ipv6_packets(file.path()), vec![p.clone()]);
        std::fs::write(file.path(), &bytes[..bytes.len() - 30]).unwrap();
        assert_eq!(ipv6_packets(file.path()), vec![p.clone()]);
        // As Ethernet: link type 1, one frame of p behind a 14-byte header.
        let mut eth = bytes[..24].to_vec();
        eth[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x86, 0xdd]);
        frame.extend_from_slice(&p);
        eth.extend_from_slice(&bytes[24..32]);
        eth.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        eth.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        eth.extend_from_slice(&frame);
        std::fs::write(file.path(), &eth).unwrap();
        assert_eq!(ethernet_frames(file.path()), vec![frame]);
        assert_eq!(ipv6_packets(file.path()), vec![p]);
    }
}
