//! The crate's only `unsafe`: thin wrappers over the socket options and
//! system calls std does not expose. Each block states why it is sound.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

pub const IPPROTO_IPV6: libc::c_int = libc::IPPROTO_IPV6;
/// `IPV6_RECVHOPOPTS` (`include/uapi/linux/in6.h`).
pub const IPV6_RECVHOPOPTS: libc::c_int = 53;
/// `IPV6_HOPOPTS`: sticky Hop-by-Hop options on send, and the cmsg type on
/// receive.
pub const IPV6_HOPOPTS: libc::c_int = 54;
pub const IPV6_UNICAST_HOPS: libc::c_int = 16;
/// `SO_NETNS_COOKIE` (Linux 5.14): a 64-bit id of the socket's namespace.
pub const SO_NETNS_COOKIE: libc::c_int = 71;

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Sets (non-empty `data`) or clears (empty) the socket's sticky Hop-by-Hop
/// options header.
pub fn set_hopopts(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<()> {
    let ptr = if data.is_empty() {
        std::ptr::null()
    } else {
        data.as_ptr()
    };
    // SAFETY: `fd` is a live descriptor for the borrow; `ptr`/`len` describe
    // `data`, which outlives the call (or are null/0, which the kernel treats
    // as "remove the option"). The kernel copies the bytes.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            IPPROTO_IPV6,
            IPV6_HOPOPTS,
            ptr.cast(),
            data.len() as libc::socklen_t,
        )
    })
}

pub fn get_int(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for writes of the sizes passed.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(v)
}

pub fn set_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    v: i32,
) -> io::Result<()> {
    // SAFETY: `v` lives across the call and its size is passed.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
}

/// The cookie of the socket's network namespace.
pub fn netns_cookie(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut v: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for writes of the sizes passed.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut v as *mut u64).cast(),
            &mut len,
        )
    })?;
    Ok(v)
}

/// The socket's peer address, if it is a connected IPv6 socket.
pub fn peer_v6(fd: BorrowedFd<'_>) -> io::Result<Option<std::net::Ipv6Addr>> {
    // SAFETY: sockaddr_in6 is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    // SAFETY: `sa` is valid for `len` bytes of writes; the kernel writes at
    // most `len` bytes and updates `len`.
    let ret = unsafe {
        libc::getpeername(
            fd.as_raw_fd(),
            (&mut sa as *mut libc::sockaddr_in6).cast(),
            &mut len,
        )
    };
    if ret < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOTCONN) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    if sa.sin6_family as libc::c_int != libc::AF_INET6 {
        return Ok(None);
    }
    Ok(Some(std::net::Ipv6Addr::from(sa.sin6_addr.s6_addr)))
}

/// Joins the network namespace `fd` (an open `/run/netns/NAME` or
/// `/proc/PID/ns/net`) on the calling thread only.
pub fn setns_net(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns has no memory effects on this process; it changes the
    // calling thread's namespace, which the caller dedicates to that purpose.
    check(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) })
}

/// Receives one datagram and the Hop-by-Hop header that came with it (the
/// socket needs `IPV6_RECVHOPOPTS`). Returns the payload length and the raw
/// Hop-by-Hop header, if any.
pub fn recv_with_hopopts(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, Option<Vec<u8>>)> {
    let mut control = [0u64; 128]; // 1 KiB, 8-byte aligned for cmsghdr
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: every pointer in `msg` refers to live buffers of the stated
    // lengths (`buf` through `iov`, `control`), borrowed mutably for the call.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut hbh = None;
    // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR walk the control buffer the kernel
    // filled, bounded by `msg.msg_controllen`; each header they return lies
    // inside it, and CMSG_DATA with `cmsg_len` stays within that header's
    // extent, which the kernel set.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let h = &*c;
            if h.cmsg_level == IPPROTO_IPV6 && h.cmsg_type == IPV6_HOPOPTS {
                let data = libc::CMSG_DATA(c);
                let len = h.cmsg_len - (data as usize - c as usize);
                hbh = Some(std::slice::from_raw_parts(data, len).to_vec());
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, hbh))
}

/// The descriptor of a neli netlink socket, borrowed for as long as the
/// socket (neli exposes only `AsRawFd`).
pub fn nl_fd(sock: &neli::socket::NlSocket) -> BorrowedFd<'_> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: `NlSocket` owns its descriptor and closes it only on drop,
    // which the borrow of `sock` rules out for the returned lifetime.
    unsafe { BorrowedFd::borrow_raw(sock.as_raw_fd()) }
}

/// Waits up to `timeout_ms` (negative: forever) until `fd` is readable or
/// has an error pending; `Ok(false)` on timeout or interruption (`EINTR`).
pub fn poll_readable(fd: &impl AsRawFd, timeout_ms: i32) -> io::Result<bool> {
    let mut pfd = [libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: one valid pollfd, borrowed mutably for the call.
    match unsafe { libc::poll(pfd.as_mut_ptr(), 1, timeout_ms) } {
        0 => Ok(false),
        n if n > 0 => Ok(pfd[0].revents & (libc::POLLIN | libc::POLLERR) != 0),
        _ => match io::Error::last_os_error() {
            e if e.kind() == io::ErrorKind::Interrupted => Ok(false),
            e => Err(e),
        },
    }
}
