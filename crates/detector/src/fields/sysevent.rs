//! One syscall exit as field extraction and state tracking see it, independent of the kernel
//! transport: raw arguments, entry-captured strings/addresses, return value and credentials.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Credentials of the calling task at syscall exit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub loginuid: u32,
    /// Capability sets after the event (bit N = capability N).
    pub cap_permitted: u64,
    pub cap_effective: u64,
}

/// A decoded syscall exit.
#[derive(Debug, Clone, Copy, Default)]
pub struct SysEvent<'a> {
    /// Unix epoch ns.
    pub ts_ns: u64,
    /// Sequence number (`evt.num`).
    pub num: u64,
    /// Falco event type (`openat`, `execve`).
    pub name: &'static str,
    pub pid: u32,
    pub tid: u32,
    pub res: i64,
    pub args: [u64; 6],
    /// Entry-captured strings per argument position (paths, names); empty when absent.
    pub strs: [&'a [u8]; 6],
    /// The socket address of connect/bind/sendto/sendmsg, or accept's peer.
    pub addr: Option<SockAddr<'a>>,
    /// connect: the socket's local address once connected (the port the kernel picked).
    pub local: Option<std::net::SocketAddr>,
    /// NUL-separated argv (execve/execveat).
    pub argv: &'a [u8],
    /// `task->comm` at exit.
    pub comm: &'a [u8],
    pub creds: Option<Creds>,
}

impl<'a> SysEvent<'a> {
    /// Argument `i` as a string (trailing NULs removed).
    pub fn str_arg(&self, i: usize) -> &'a [u8] {
        trim_nul(self.strs.get(i).copied().unwrap_or(&[]))
    }

    /// Argument `i` as a signed int (fds, pids: the kernel passes them in 64-bit registers).
    pub fn int_arg(&self, i: usize) -> i64 {
        self.args.get(i).copied().unwrap_or(0) as i64
    }

    /// A 32-bit int argument (fd, dirfd), sign-extended.
    pub fn fd_arg(&self, i: usize) -> i32 {
        self.args.get(i).copied().unwrap_or(0) as u32 as i32
    }

    pub fn comm_str(&self) -> &'a [u8] {
        trim_nul(self.comm)
    }
}

/// Remove a trailing NUL (and anything after the first NUL).
pub fn trim_nul(b: &[u8]) -> &[u8] {
    match b.iter().position(|c| *c == 0) {
        Some(i) => &b[..i],
        None => b,
    }
}

/// A decoded `struct sockaddr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockAddr<'a> {
    Inet(SocketAddr),
    /// AF_UNIX path; abstract names start with `@`.
    Unix(&'a [u8], bool),
    Other(u16),
}

/// Decode a sockaddr as the kernel laid it out (little-endian family, big-endian port).
pub fn parse_sockaddr(b: &[u8]) -> Option<SockAddr<'_>> {
    if b.len() < 2 {
        return None;
    }
    let family = u16::from_le_bytes([b[0], b[1]]);
    match family {
        2 if b.len() >= 8 => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            Some(SockAddr::Inet(SocketAddr::new(IpAddr::V4(ip), port)))
        }
        10 if b.len() >= 24 => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[8..24]);
            let ip = Ipv6Addr::from(a);
            let ip = match ip.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(ip),
            };
            Some(SockAddr::Inet(SocketAddr::new(ip, port)))
        }
        1 => {
            let path = &b[2..];
            if path.first() == Some(&0) {
                Some(SockAddr::Unix(trim_nul(&path[1..]), true))
            } else {
                Some(SockAddr::Unix(trim_nul(path), false))
            }
        }
        2 | 10 => None,
        f => Some(SockAddr::Other(f)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddrs_decode() {
        let v4 = [2, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            parse_sockaddr(&v4),
            Some(SockAddr::Inet("127.0.0.1:8080".parse().unwrap()))
        );
        let mut v6 = [0u8; 28];
        v6[0] = 10;
        v6[3] = 22;
        v6[23] = 1;
        assert_eq!(
            parse_sockaddr(&v6),
            Some(SockAddr::Inet("[::1]:22".parse().unwrap()))
        );
        let mut un = vec![1, 0];
        un.extend_from_slice(b"/run/docker.sock\0");
        assert_eq!(
            parse_sockaddr(&un),
            Some(SockAddr::Unix(b"/run/docker.sock", false))
        );
        assert_eq!(parse_sockaddr(&[17, 0, 0, 0]), Some(SockAddr::Other(17)));
        assert_eq!(parse_sockaddr(&[2]), None);
        assert_eq!(parse_sockaddr(&[2, 0, 1]), None);
    }

    #[test]
    fn string_args_stop_at_nul() {
        let mut e = SysEvent::default();
        e.strs[1] = b"/etc/shadow\0junk";
        assert_eq!(e.str_arg(1), b"/etc/shadow");
        assert_eq!(e.str_arg(0), b"");
        e.args[0] = (-100i32) as u32 as u64;
        assert_eq!(e.fd_arg(0), -100);
    }
}
