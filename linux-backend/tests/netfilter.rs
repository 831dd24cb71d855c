//! The nf_tables log rule and the nfnetlink_log socket against the kernel,
//! in two network namespaces joined by a veth: a sender (`db0f::1`) and a
//! receiver (`db0f::2`) where the rule logs what comes in on its veth.
//!
//! Datagrams with a Hop-by-Hop header are logged once each, from their IPv6
//! header, with the input interface and a receive time; datagrams without
//! are not logged. The table goes with [`LogRule::remove`], and with the
//! process that owns it (`NFT_TABLE_F_OWNER`). When the kernel has IOAM6,
//! an IOAM pre-allocated trace arrives with the receiver's own entry filled:
//! what the agent reads at a sink.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use clt_linux::netns;
use clt_linux::nl::nflog::{NflogConfig, NflogSocket};
use clt_linux::nl::nft::{self, LogRule, LogRuleSpec};
use clt_testkit::{Netns, report_skip, skip_if, veth};
use clt_wire::{HbhBuilder, PacketRepr, TraceType};
use std::net::UdpSocket;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const GROUP: u16 = 7;
const TABLE: &str = "clt_sink";
/// The receiver's veth.
const RX_IF: &str = "r0";
/// A Hop-by-Hop header holding only a 6-byte PadN option.
const HBH_PADN: [u8; 8] = [0, 0, 1, 4, 0, 0, 0, 0];

/// A sender and a receiver namespace, and the receiver veth's index.
struct Pair {
    tx: Netns,
    rx: Netns,
    ifindex: u32,
}

fn pair() -> Pair {
    let (tx, rx) = (Netns::new("cltnft"), Netns::new("cltnfr"));
    veth(&tx, "t0", &rx, RX_IF);
    for (ns, dev, addr) in [(&tx, "t0", "db0f::1/64"), (&rx, RX_IF, "db0f::2/64")] {
        ns.ip(&["addr", "add", addr, "dev", dev, "nodad"]);
        ns.ip(&["link", "set", dev, "up"]);
    }
    let line = rx.ip(&["-o", "link", "show", "dev", RX_IF]);
    let ifindex = line.split(':').next().unwrap().trim().parse().unwrap();
    Pair { tx, rx, ifindex }
}

fn spec(ifindex: u32) -> LogRuleSpec {
    LogRuleSpec {
        table: TABLE.into(),
        ifindex,
        group: GROUP,
        snaplen: 1024,
        qthreshold: 16,
    }
}

/// The rule, the socket and a UDP sink on port 4000 (so that no ICMP
/// error refuses the sender's next datagram), made in `ns`; sockets keep
/// their namespace when the thread that made them ends.
fn install(ns: &Netns, ifindex: u32) -> (LogRule, NflogSocket, UdpSocket) {
    netns::run_in(Some(ns.name()), move || {
        let rule = LogRule::install(&spec(ifindex))?;
        let cfg = NflogConfig {
            flush_timeout: Duration::from_millis(10),
            ..NflogConfig::default()
        };
        let sink = UdpSocket::bind("[::]:4000").unwrap();
        Ok((rule, NflogSocket::open(GROUP, &cfg)?, sink))
    })
    .unwrap()
}

fn tables(ns: &Netns) -> Vec<String> {
    netns::run_in(Some(ns.name()), nft::tables).unwrap()
}

/// Sends each datagram from `ns` to the receiver, with `hbh` as the sticky
/// Hop-by-Hop options when given.
fn send(ns: &Netns, hbh: Option<Vec<u8>>, datagrams: Vec<Vec<u8>>) {
    netns::run_in(Some(ns.name()), move || {
        let udp = UdpSocket::bind("[::]:0").unwrap();
        udp.connect("[db0f::2]:4000").unwrap();
        if let Some(h) = &hbh {
            clt_linux::socket::set_header(&udp, h)?;
        }
        for d in &datagrams {
            udp.send(d).unwrap();
        }
        Ok(())
    })
    .unwrap();
}

/// One logged packet, copied out of the receive buffer.
#[derive(Debug)]
struct Logged {
    hw_protocol: u16,
    hook: u8,
    indev: Option<u32>,
    timestamp_ns: Option<u64>,
    payload: Vec<u8>,
}

impl Logged {
    /// The UDP payload of the logged IPv6 packet.
    fn udp_data(&self) -> Vec<u8> {
        let p = PacketRepr::parse(&self.payload).unwrap();
        self.payload[40 + p.upper.offset + 8..].to_vec()
    }
}

/// Drains until `want` packets came (or 5 s passed), then for 300 ms more
/// to catch any that should not have come.
fn logged(nflog: &mut NflogSocket, want: usize) -> Vec<Logged> {
    let mut out = Vec::new();
    let start = Instant::now();
    let mut quiet_until = None;
    loop {
        let now = Instant::now();
        match quiet_until {
            Some(t) if now >= t => break,
            None if out.len() >= want || now - start > Duration::from_secs(5) => {
                quiet_until = Some(now + Duration::from_millis(300));
            }
            _ => {}
        }
        nflog.wait(50).unwrap();
        let stats = nflog
            .drain(|p| {
                out.push(Logged {
                    hw_protocol: p.hw_protocol,
                    hook: p.hook,
                    indev: p.indev,
                    timestamp_ns: p.timestamp_ns,
                    payload: p.payload.to_vec(),
                })
            })
            .unwrap();
        assert_eq!((stats.malformed, stats.overruns), (0, 0), "{stats:?}");
    }
    out
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[test]
fn hop_by_hop_packets_are_logged_once_and_others_not() {
    skip_if!(clt_testkit::skip::netns_unavailable());
    let Pair { tx, rx, ifindex } = pair();
    let (rule, mut nflog, _sink) = install(&rx, ifindex);
    assert_eq!(tables(&rx), vec![TABLE.to_string()]);
    // The name is taken by a table another socket owns: the kernel
    // refuses (EPERM), and the error says why.
    let again = netns::run_in(Some(rx.name()), move || LogRule::install(&spec(ifindex)));
    match again {
        Err(e @ clt_linux::Error::Kernel { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(TABLE) && text.contains("owned by another netlink socket"),
                "{text}"
            );
        }
        other => panic!("a second table of the same name: {other:?}"),
    }
    // The group is taken: EBUSY, as the agent's search for a free one
    // expects.
    let taken = netns::run_in(Some(rx.name()), || {
        NflogSocket::open(GROUP, &NflogConfig::default()).map(drop)
    });
    match taken {
        Err(clt_linux::Error::Kernel { error, detail, .. }) => {
            assert_eq!(error.raw_os_error(), Some(libc::EBUSY), "{detail:?}");
        }
        other => panic!("a second socket on group {GROUP}: {other:?}"),
    }
    if let Some(nft) = clt_testkit::skip::find_tool("nft") {
        // A second opinion: nft reads the rule back as we meant it.
        let listed = rx.exec(&[nft.to_str().unwrap(), "list", "ruleset"]);
        assert!(
            listed.contains(&format!(
                "iif \"{RX_IF}\" ip6 nexthdr ip log group {GROUP} snaplen 1024 queue-threshold 16"
            )) && listed.contains("type filter hook input priority filter; policy accept;"),
            "{listed}"
        );
    }

    let with: Vec<Vec<u8>> = (0..40).map(|i| format!("hbh-{i}").into_bytes()).collect();
    let without: Vec<Vec<u8>> = (0..40).map(|i| format!("plain-{i}").into_bytes()).collect();
    let sent_at = now_ns();
    // Interleaved, so that the rule sees both kinds in one stream.
    for (w, wo) in with.chunks(10).zip(without.chunks(10)) {
        send(&tx, None, wo.to_vec());
        send(&tx, Some(HBH_PADN.to_vec()), w.to_vec());
    }
    let got = logged(&mut nflog, with.len());

    let mut data: Vec<Vec<u8>> = got.iter().map(Logged::udp_data).collect();
    data.sort();
    let mut want = with.clone();
    want.sort();
    assert_eq!(data, want, "every hop-by-hop datagram once, nothing else");
    for p in &got {
        assert_eq!((p.hw_protocol, p.hook), (0x86dd, 1), "{p:?}");
        assert_eq!(p.payload[0] >> 4, 6, "{p:?}");
        assert_eq!(p.payload[6], 0, "next header hop-by-hop: {p:?}");
        assert_eq!(p.indev, Some(ifindex));
        let ts = p.timestamp_ns.expect("a receive timestamp");
        assert!(
            ts.abs_diff(sent_at) < 5_000_000_000,
            "timestamp {ts} vs sent {sent_at}"
        );
    }

    rule.remove().unwrap();
    assert!(tables(&rx).is_empty());
    // Nothing is logged once the rule is gone.
    send(&tx, Some(HBH_PADN.to_vec()), vec![b"late".to_vec()]);
    assert!(logged(&mut nflog, 0).is_empty());
}

/// The child half of [`the_table_goes_with_the_process_that_owns_it`]:
/// with `CLT_NFT_OWNER_NETNS` set, installs the rule there and exits without
/// deleting anything; otherwise does nothing.
#[test]
fn owner_child() {
    let Ok(ns) = std::env::var("CLT_NFT_OWNER_NETNS") else {
        return;
    };
    let ifindex = std::env::var("CLT_NFT_OWNER_IFINDEX")
        .unwrap()
        .parse()
        .unwrap();
    netns::enter(&ns).unwrap();
    let rule = LogRule::install(&spec(ifindex)).unwrap();
    assert_eq!(nft::tables().unwrap(), vec![TABLE.to_string()]);
    println!("installed {}", rule.table());
    // Dies like a killed agent: no destructor runs.
    std::process::exit(0);
}

#[test]
fn the_table_goes_with_the_process_that_owns_it() {
    skip_if!(clt_testkit::skip::netns_unavailable());
    let Pair { rx, ifindex, .. } = pair();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "owner_child", "--nocapture", "--test-threads=1"])
        .env("CLT_NFT_OWNER_NETNS", rx.name())
        .env("CLT_NFT_OWNER_IFINDEX", ifindex.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("installed {TABLE}")),
        "child: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        tables(&rx).is_empty(),
        "the owned table outlived its process"
    );
    // And the name is free again.
    let (rule, _nflog, _sink) = install(&rx, ifindex);
    drop(rule);
    assert!(tables(&rx).is_empty(), "drop deletes the table");
}

#[test]
fn the_sinks_own_ioam_entry_is_in_the_logged_packet() {
    skip_if!(clt_testkit::skip::netns_unavailable());
    let Pair { tx, rx, ifindex } = pair();
    const NODE_ID: u32 = 77;
    const NAMESPACE: u16 = 123;
    let configured = netns::run_in(Some(rx.name()), move || {
        use clt_linux::nl::{Netlink, ioam6::NamespaceRepr};
        use clt_linux::sysctl::write;
        write("net.ipv6.ioam6_id", &NODE_ID.to_string())?;
        write(&format!("net.ipv6.conf.{RX_IF}.ioam6_enabled"), "1")?;
        write(&format!("net.ipv6.conf.{RX_IF}.ioam6_id"), "5")?;
        Netlink::open()?.add_namespace(&NamespaceRepr {
            id: NAMESPACE,
            data: None,
            data_wide: None,
            schema: None,
        })
    });
    if let Err(e) = configured {
        report_skip(&format!("IOAM6 cannot be configured here: {e}"));
        return;
    }
    let (_rule, mut nflog, _sink) = install(&rx, ifindex);

    // A pre-allocated trace: hop limit + node id, room for two nodes.
    let mut hbh = [0u8; 64];
    let len = HbhBuilder::new()
        .trace(NAMESPACE, TraceType::from_bits(0x80_0000), 8)
        .build_into(&mut hbh)
        .unwrap();
    send(&tx, Some(hbh[..len].to_vec()), vec![b"ioam".to_vec()]);
    let got = logged(&mut nflog, 1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].udp_data(), b"ioam");
    let pkt = PacketRepr::parse(&got[0].payload).unwrap();
    let trace = pkt
        .hbh
        .as_ref()
        .unwrap()
        .ioam_trace()
        .expect("an ioam trace");
    let nodes: Vec<_> = trace
        .nodes()
        .map(|n| n.hop_limit_node_id.unwrap().node_id)
        .collect();
    assert_eq!(nodes, vec![NODE_ID], "the receiver's own entry, filled");
}

#[test]
fn a_full_receive_buffer_is_counted_not_fatal() {
    skip_if!(clt_testkit::skip::netns_unavailable());
    let Pair { tx, rx, ifindex } = pair();
    let (_rule, mut nflog, _sink) = netns::run_in(Some(rx.name()), move || {
        let rule = LogRule::install(&LogRuleSpec {
            qthreshold: 4,
            ..spec(ifindex)
        })?;
        // The smallest buffer the kernel allows: room for about one batch.
        let cfg = NflogConfig {
            flush_timeout: Duration::from_millis(10),
            recv_buffer: 0,
            ..NflogConfig::default()
        };
        let sink = UdpSocket::bind("[::]:4000").unwrap();
        Ok((rule, NflogSocket::open(GROUP, &cfg)?, sink))
    })
    .unwrap();
    let n = 200;
    send(&tx, Some(HBH_PADN.to_vec()), vec![vec![0; 512]; n]);
    std::thread::sleep(Duration::from_millis(200));
    let mut packets = 0;
    let stats = nflog.drain(|_| packets += 1).unwrap();
    assert!(stats.overruns >= 1, "{stats:?}");
    assert!(packets >= 1 && packets < n as u64, "{stats:?}");
    assert_eq!((stats.packets, stats.malformed), (packets, 0));
    // The socket still works.
    send(&tx, Some(HBH_PADN.to_vec()), vec![b"after".to_vec()]);
    let got = logged(&mut nflog, 1);
    assert_eq!(
        got.iter().map(Logged::udp_data).collect::<Vec<_>>(),
        vec![b"after".to_vec()]
    );
}

/// Drops `CAP_NET_ADMIN` from the calling thread's effective set
/// (capabilities are per thread).
fn drop_net_admin() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_NET_ADMIN: u32 = 12;
    let mut h = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: the header and two data structs of capability version 3, as
    // capget(2) and capset(2) expect; both outlive the calls.
    unsafe {
        assert_eq!(libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()), 0);
        d[0].effective &= !(1 << CAP_NET_ADMIN);
        assert_eq!(libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()), 0);
    }
}

#[test]
fn without_cap_net_admin_the_errors_say_so() {
    skip_if!(clt_testkit::skip::netns_unavailable());
    let Pair { rx, ifindex, .. } = pair();
    let (rule, nflog) = netns::run_in(Some(rx.name()), move || {
        drop_net_admin();
        Ok((
            LogRule::install(&spec(ifindex)).map(drop),
            NflogSocket::open(GROUP, &NflogConfig::default()).map(drop),
        ))
    })
    .unwrap();
    for r in [rule, nflog] {
        let text = r.unwrap_err().to_string();
        assert!(
            text.contains("Operation not permitted") && text.contains("CAP_NET_ADMIN is needed"),
            "{text}"
        );
    }
    assert!(tables(&rx).is_empty());
}
