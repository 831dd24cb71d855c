//! AF_PACKET capture with a TPACKET_V3 ring and a classic BPF filter.
//!
//! All of the agent's `unsafe` is in this module: the socket options, the
//! ring's `mmap`, and reading the ring's block and packet headers, which the
//! kernel writes. Every block is handed back to the kernel after its packets
//! were passed to the callback.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{Ordering, fence};

use crate::Error;

const ETH_P_IPV6: u16 = 0x86dd;
/// `enum tpacket_versions` in linux/if_packet.h.
const TPACKET_V3: i32 = 2;

/// The classic BPF program: accept IPv6 packets whose first next header is 0
/// (Hop-by-Hop), drop everything else. The socket is `SOCK_DGRAM`, so offset
/// 0 is the start of the IPv6 header (no link-layer header).
///
/// ```text
/// (0) ldb  [0]          A = first byte: version (4 bits) | traffic class high bits
/// (1) and  #0xf0        keep the version nibble
/// (2) jeq  #0x60 jt 0 jf 3   version 6? go on : drop
/// (3) ldb  [6]          A = Next Header of the fixed IPv6 header
/// (4) jeq  #0 jt 0 jf 1      Hop-by-Hop (0)? accept : drop
/// (5) ret  #262144      accept, up to 256 KiB of the packet
/// (6) ret  #0           drop
/// ```
pub fn filter_program() -> [libc::sock_filter; 7] {
    // Opcodes from linux/bpf_common.h: class | size | mode, class | op | src.
    const BPF_LD: u16 = 0x00;
    const BPF_ALU: u16 = 0x04;
    const BPF_JMP: u16 = 0x05;
    const BPF_RET: u16 = 0x06;
    const BPF_B: u16 = 0x10;
    const BPF_ABS: u16 = 0x20;
    const BPF_AND: u16 = 0x50;
    const BPF_JEQ: u16 = 0x10;
    const BPF_K: u16 = 0x00;
    let ins = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    [
        ins(BPF_LD | BPF_B | BPF_ABS, 0, 0, 0),
        ins(BPF_ALU | BPF_AND | BPF_K, 0, 0, 0xf0),
        ins(BPF_JMP | BPF_JEQ | BPF_K, 0, 3, 0x60),
        ins(BPF_LD | BPF_B | BPF_ABS, 0, 0, 6),
        ins(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0),
        ins(BPF_RET | BPF_K, 0, 0, 256 * 1024),
        ins(BPF_RET | BPF_K, 0, 0, 0),
    ]
}

/// Ring geometry.
#[derive(Debug, Clone, Copy)]
pub struct RingConfig {
    pub block_size: u32,
    pub block_count: u32,
    pub frame_size: u32,
    /// A block is handed to user space at the latest after this many ms.
    pub block_timeout_ms: u32,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            block_size: 1 << 20,
            block_count: 16,
            frame_size: 2048,
            block_timeout_ms: 20,
        }
    }
}

/// Kernel counters of a capture socket (PACKET_STATISTICS; reading resets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelStats {
    pub packets: u64,
    pub drops: u64,
}

/// One AF_PACKET socket bound to one interface, with its mapped ring.
#[derive(Debug)]
pub struct Capture {
    fd: OwnedFd,
    ring: *mut u8,
    ring_len: usize,
    cfg: RingConfig,
    next_block: u32,
}

// SAFETY: the ring is owned by this value alone; moving it to another thread
// moves the only pointer to it.
unsafe impl Send for Capture {}

fn os_err(what: &str) -> Error {
    Error::Capture(format!("{what}: {}", io::Error::last_os_error()))
}

fn setsockopt<T>(fd: i32, level: i32, name: i32, value: &T, what: &str) -> Result<(), Error> {
    // SAFETY: `value` points to a live `T` of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as u32,
        )
    };
    if r < 0 { Err(os_err(what)) } else { Ok(()) }
}

/// The index of `interface` in the calling thread's network namespace.
pub fn ifindex(interface: &str) -> Result<u32, Error> {
    let name = CString::new(interface).map_err(|_| Error::Capture("bad interface name".into()))?;
    // SAFETY: `name` is a valid C string.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(Error::Capture(format!("no interface {interface}"))),
        i => Ok(i),
    }
}

impl Capture {
    /// Opens a capture on `interface` in the calling thread's network namespace.
    pub fn open(interface: &str, cfg: RingConfig) -> Result<Capture, Error> {
        let ifindex = ifindex(interface)?;
        // SAFETY: plain socket(2) call; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_IPV6.to_be()),
            )
        };
        if raw < 0 {
            return Err(os_err("af_packet socket (needs CAP_NET_RAW)"));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let prog = filter_program();
        let fprog = libc::sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_ptr().cast_mut(),
        };
        setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            &fprog,
            "attach bpf filter",
        )?;
        let version: i32 = TPACKET_V3;
        setsockopt(
            raw,
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            &version,
            "tpacket v3",
        )?;
        let req = libc::tpacket_req3 {
            tp_block_size: cfg.block_size,
            tp_block_nr: cfg.block_count,
            tp_frame_size: cfg.frame_size,
            tp_frame_nr: cfg.block_size / cfg.frame_size * cfg.block_count,
            tp_retire_blk_tov: cfg.block_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(raw, libc::SOL_PACKET, libc::PACKET_RX_RING, &req, "rx ring")?;
        let ring_len = cfg.block_size as usize * cfg.block_count as usize;
        // SAFETY: maps the ring the kernel just allocated for this socket.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                raw,
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(os_err("mmap ring"));
        }
        let cap = Capture {
            fd,
            ring: ring.cast(),
            ring_len,
            cfg,
            next_block: 0,
        };
        // SAFETY: an all-zero sockaddr_ll is valid; the fields are set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_IPV6.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll of the size passed.
        let r = unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            return Err(os_err("bind"));
        }
        Ok(cap)
    }

    /// Waits up to `timeout_ms` for a filled block, then passes each of its
    /// packets (from the IPv6 header, capture time in ns) to `f`. Outgoing
    /// packets (seen on loopback twice) are skipped. Returns the packet count.
    pub fn poll(&mut self, timeout_ms: i32, mut f: impl FnMut(&[u8], u64)) -> Result<usize, Error> {
        let mut n = 0;
        if !self.block_ready() {
            clt_linux::poll_readable(&self.fd, timeout_ms)
                .map_err(|e| Error::Capture(format!("poll: {e}")))?;
        }
        while self.block_ready() {
            n += self.read_block(&mut f);
            self.next_block = (self.next_block + 1) % self.cfg.block_count;
        }
        Ok(n)
    }

    fn block(&self) -> *mut libc::tpacket_block_desc {
        // SAFETY (of the arithmetic): next_block < block_count, so the offset
        // stays inside the mapping.
        self.ring
            .wrapping_add(self.next_block as usize * self.cfg.block_size as usize)
            .cast()
    }

    fn block_ready(&self) -> bool {
        let b = self.block();
        // SAFETY: `b` is the start of a block of the live mapping; the status
        // word is read volatile because the kernel writes it.
        let status = unsafe { std::ptr::addr_of!((*b).hdr.bh1.block_status).read_volatile() };
        fence(Ordering::Acquire);
        status & libc::TP_STATUS_USER != 0
    }

    fn read_block(&mut self, f: &mut impl FnMut(&[u8], u64)) -> usize {
        let b = self.block();
        let base = b.cast::<u8>();
        let bs = self.cfg.block_size as usize;
        // SAFETY: the kernel handed this block to user space (TP_STATUS_USER)
        // and does not touch it until the status is reset below. Offsets are
        // checked against the block size before use.
        unsafe {
            let h = std::ptr::addr_of!((*b).hdr.bh1).read();
            let mut off = h.offset_to_first_pkt as usize;
            let mut n = 0;
            for _ in 0..h.num_pkts {
                if off + std::mem::size_of::<libc::tpacket3_hdr>() > bs {
                    break;
                }
                let p = base.add(off).cast::<libc::tpacket3_hdr>().read_unaligned();
                let sll_off = off + tpacket_align(std::mem::size_of::<libc::tpacket3_hdr>());
                let outgoing = sll_off + std::mem::size_of::<libc::sockaddr_ll>() <= bs
                    && base
                        .add(sll_off)
                        .cast::<libc::sockaddr_ll>()
                        .read_unaligned()
                        .sll_pkttype
                        == libc::PACKET_OUTGOING;
                let start = off + usize::from(p.tp_net);
                let len = p.tp_snaplen as usize;
                if !outgoing && start + len <= bs {
                    let data = std::slice::from_raw_parts(base.add(start), len);
                    f(
                        data,
                        u64::from(p.tp_sec) * 1_000_000_000 + u64::from(p.tp_nsec),
                    );
                    n += 1;
                }
                if p.tp_next_offset == 0 {
                    break;
                }
                off += p.tp_next_offset as usize;
            }
            fence(Ordering::Release);
            std::ptr::addr_of_mut!((*b).hdr.bh1.block_status)
                .write_volatile(libc::TP_STATUS_KERNEL);
            n
        }
    }

    /// Packets the kernel counted and dropped for lack of ring space since the
    /// last call.
    pub fn kernel_stats(&self) -> Result<KernelStats, Error> {
        // SAFETY: an all-zero tpacket_stats_v3 is valid.
        let mut st: libc::tpacket_stats_v3 = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as u32;
        // SAFETY: `st` and `len` are valid for the kernel to write.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats_v3).cast(),
                &mut len,
            )
        };
        if r < 0 {
            return Err(os_err("packet statistics"));
        }
        Ok(KernelStats {
            packets: u64::from(st.tp_packets),
            drops: u64::from(st.tp_drops),
        })
    }
}

const fn tpacket_align(x: usize) -> usize {
    (x + 15) & !15
}

impl Drop for Capture {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `open`, once.
        unsafe {
            libc::munmap(self.ring.cast(), self.ring_len);
        }
    }
}

/// Moves the calling thread into the network namespace `name`
/// (`/var/run/netns/NAME`, as `ip netns` makes them, or a path).
pub fn enter_netns(name: &str) -> Result<(), Error> {
    let path = if name.contains('/') {
        name.to_owned()
    } else {
        format!("/var/run/netns/{name}")
    };
    let file = std::fs::File::open(&path).map_err(|e| Error::Capture(format!("{path}: {e}")))?;
    // SAFETY: setns on a valid namespace descriptor; affects this thread only.
    let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if r < 0 { Err(os_err("setns")) } else { Ok(()) }
}

/// Sets `fd`'s receive buffer to `bytes` regardless of
/// `net.core.rmem_max` (SO_RCVBUFFORCE, needs CAP_NET_ADMIN).
pub fn force_recv_buffer(fd: &impl AsRawFd, bytes: usize) -> Result<(), Error> {
    let v = i32::try_from(bytes).unwrap_or(i32::MAX);
    setsockopt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        &v,
        "SO_RCVBUFFORCE",
    )
}
