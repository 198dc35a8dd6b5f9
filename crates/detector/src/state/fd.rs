//! Per-process descriptor table: what each fd refers to (file path, socket tuple, pipe...).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::hash::FastMap;

/// What kind of object a descriptor refers to, with Falco's `fd.type` / `fd.typechar` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdKind {
    File,
    Directory,
    Ipv4,
    Ipv6,
    Unix,
    Pipe,
    Event,
    Signalfd,
    Eventpoll,
    Inotify,
    Timerfd,
    Netlink,
    Bpf,
    Userfaultfd,
    IoUring,
    Memfd,
    Pidfd,
    /// A socket of another family (AF_PACKET, ...), or one whose family we did not see.
    OtherSocket,
    Unknown,
}

impl FdKind {
    /// `fd.type`.
    pub fn type_name(self) -> &'static str {
        match self {
            FdKind::File => "file",
            FdKind::Directory => "directory",
            FdKind::Ipv4 => "ipv4",
            FdKind::Ipv6 => "ipv6",
            FdKind::Unix => "unix",
            FdKind::Pipe => "pipe",
            FdKind::Event => "event",
            FdKind::Signalfd => "signalfd",
            FdKind::Eventpoll => "eventpoll",
            FdKind::Inotify => "inotify",
            FdKind::Timerfd => "timerfd",
            FdKind::Netlink => "netlink",
            FdKind::Bpf => "bpf",
            FdKind::Userfaultfd => "userfaultfd",
            FdKind::IoUring => "io_uring",
            FdKind::Memfd => "memfd",
            FdKind::Pidfd => "pidfd",
            FdKind::OtherSocket => "unknown",
            FdKind::Unknown => "unknown",
        }
    }

    /// `fd.typechar`.
    pub fn type_char(self) -> &'static str {
        match self {
            FdKind::File => "f",
            FdKind::Directory => "d",
            FdKind::Ipv4 => "4",
            FdKind::Ipv6 => "6",
            FdKind::Unix => "u",
            FdKind::Pipe => "p",
            FdKind::Event => "e",
            FdKind::Signalfd => "s",
            FdKind::Eventpoll => "l",
            FdKind::Inotify => "i",
            FdKind::Timerfd => "t",
            FdKind::Netlink => "n",
            FdKind::Bpf => "b",
            FdKind::Userfaultfd => "u",
            FdKind::IoUring => "r",
            FdKind::Memfd => "m",
            FdKind::Pidfd => "P",
            FdKind::OtherSocket | FdKind::Unknown => "o",
        }
    }

    pub fn is_ip_socket(self) -> bool {
        matches!(self, FdKind::Ipv4 | FdKind::Ipv6)
    }

    pub fn is_socket(self) -> bool {
        matches!(
            self,
            FdKind::Ipv4 | FdKind::Ipv6 | FdKind::Unix | FdKind::Netlink | FdKind::OtherSocket
        )
    }
}

/// Transport protocol of an IP socket (`fd.l4proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum L4Proto {
    #[default]
    Unknown,
    Tcp,
    Udp,
    Icmp,
    Raw,
}

impl L4Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            L4Proto::Unknown => "unknown",
            L4Proto::Tcp => "tcp",
            L4Proto::Udp => "udp",
            L4Proto::Icmp => "icmp",
            L4Proto::Raw => "raw",
        }
    }

    /// From `socket(domain, type, protocol)`.
    pub fn from_socket(sock_type: u64, protocol: u64) -> Self {
        const SOCK_STREAM: u64 = 1;
        const SOCK_DGRAM: u64 = 2;
        const SOCK_RAW: u64 = 3;
        const IPPROTO_ICMP: u64 = 1;
        const IPPROTO_TCP: u64 = 6;
        const IPPROTO_UDP: u64 = 17;
        const IPPROTO_ICMPV6: u64 = 58;
        match (sock_type & 0xf, protocol) {
            (_, IPPROTO_TCP) => L4Proto::Tcp,
            (_, IPPROTO_UDP) => L4Proto::Udp,
            (_, IPPROTO_ICMP | IPPROTO_ICMPV6) => L4Proto::Icmp,
            (SOCK_STREAM, _) => L4Proto::Tcp,
            (SOCK_DGRAM, _) => L4Proto::Udp,
            (SOCK_RAW, _) => L4Proto::Raw,
            _ => L4Proto::Unknown,
        }
    }
}

/// What one descriptor refers to.
#[derive(Debug, Clone, PartialEq)]
pub struct FdInfo {
    pub kind: FdKind,
    /// Path for files and directories, `local->remote` text for sockets, `pipe:[ino]` etc.
    pub name: String,
    /// The path as the program wrote it (before resolution against the cwd), when it differs
    /// from `name`; empty otherwise (most opens use absolute, clean paths: one allocation
    /// saved per open). Read it through [`FdInfo::raw_name`].
    pub name_raw: String,
    /// `open` flags (files) or socket type (sockets).
    pub flags: u32,
    pub l4proto: L4Proto,
    /// Local and remote address of a socket, once known.
    pub local: Option<SocketAddr>,
    pub remote: Option<SocketAddr>,
    /// Whether the socket is a server side (accepted or listening).
    pub is_server: bool,
    /// The socket has a remote peer (connect or accept completed).
    pub connected: bool,
    /// File-backed fd on the overlayfs upper layer (set by the kernel side when known).
    pub upper_layer: bool,
}

impl FdInfo {
    pub fn new(kind: FdKind, name: impl Into<String>) -> Self {
        let name = name.into();
        FdInfo {
            kind,
            name_raw: String::new(),
            name,
            flags: 0,
            l4proto: L4Proto::Unknown,
            local: None,
            remote: None,
            is_server: false,
            connected: false,
            upper_layer: false,
        }
    }

    /// A file or directory opened with `flags`.
    pub fn file(path: &str, raw: &str, flags: u32, is_dir: bool) -> Self {
        FdInfo {
            kind: if is_dir {
                FdKind::Directory
            } else {
                FdKind::File
            },
            name: path.to_owned(),
            name_raw: if raw == path {
                String::new()
            } else {
                raw.to_owned()
            },
            flags,
            ..FdInfo::new(FdKind::File, String::new())
        }
    }

    /// A new socket from `socket(domain, type, protocol)`.
    pub fn socket(domain: u64, sock_type: u64, protocol: u64) -> Self {
        const AF_UNIX: u64 = 1;
        const AF_INET: u64 = 2;
        const AF_INET6: u64 = 10;
        const AF_NETLINK: u64 = 16;
        let kind = match domain {
            AF_UNIX => FdKind::Unix,
            AF_INET => FdKind::Ipv4,
            AF_INET6 => FdKind::Ipv6,
            AF_NETLINK => FdKind::Netlink,
            _ => FdKind::OtherSocket,
        };
        FdInfo {
            flags: sock_type as u32,
            l4proto: if kind.is_ip_socket() {
                L4Proto::from_socket(sock_type, protocol)
            } else {
                L4Proto::Unknown
            },
            ..FdInfo::new(kind, String::new())
        }
    }

    /// Record the peer of a socket (connect, accept, sendto) and refresh its name.
    pub fn set_tuple(&mut self, local: Option<SocketAddr>, remote: SocketAddr, server: bool) {
        if let Some(l) = local {
            self.local = Some(l);
        }
        if self.kind == FdKind::OtherSocket || self.kind == FdKind::Unknown {
            self.kind = if remote.is_ipv4() {
                FdKind::Ipv4
            } else {
                FdKind::Ipv6
            };
        }
        self.remote = Some(remote);
        self.is_server = server;
        self.connected = true;
        self.refresh_socket_name();
    }

    /// Record a bound local address (bind).
    pub fn set_local(&mut self, local: SocketAddr) {
        self.local = Some(local);
        self.refresh_socket_name();
    }

    /// Falco names IP sockets `client_ip:client_port->server_ip:server_port`.
    fn refresh_socket_name(&mut self) {
        use std::fmt::Write as _;
        self.name.clear();
        let unspecified = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        let (client, server) = match (self.is_server, self.local, self.remote) {
            (false, l, Some(r)) => (l.unwrap_or(unspecified), r),
            (true, Some(l), Some(r)) => (r, l),
            (_, Some(l), None) => {
                let _ = write!(self.name, "{}", fmt_addr(l));
                return;
            }
            _ => return,
        };
        let _ = write!(self.name, "{}->{}", fmt_addr(client), fmt_addr(server));
        self.name_raw.clear();
    }

    /// `fd.nameraw`: the name as the program wrote it.
    pub fn raw_name(&self) -> &str {
        if self.name_raw.is_empty() {
            &self.name
        } else {
            &self.name_raw
        }
    }

    /// Client side of the tuple (`fd.cip`, `fd.cport`).
    pub fn client(&self) -> Option<SocketAddr> {
        if self.is_server {
            self.remote
        } else {
            self.local
        }
    }

    /// Server side of the tuple (`fd.sip`, `fd.sport`).
    pub fn server(&self) -> Option<SocketAddr> {
        if self.is_server {
            self.local
        } else {
            self.remote
        }
    }

    /// Directory part of a file path (`fd.directory`), or the path itself for a directory.
    pub fn directory(&self) -> Option<&str> {
        match self.kind {
            FdKind::Directory => Some(&self.name),
            FdKind::File | FdKind::Memfd => Some(dirname(&self.name)),
            _ => None,
        }
    }

    /// Final path component (`fd.filename`).
    pub fn filename(&self) -> Option<&str> {
        match self.kind {
            FdKind::File | FdKind::Directory | FdKind::Memfd => Some(basename(&self.name)),
            _ => None,
        }
    }
}

/// `1.2.3.4:80`, `[::1]:80`.
fn fmt_addr(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => format!("{}:{}", v.ip(), v.port()),
        SocketAddr::V6(v) => match v.ip().to_ipv4_mapped() {
            Some(v4) => format!("{v4}:{}", v.port()),
            None => format!("{}:{}", v.ip(), v.port()),
        },
    }
}

/// `/a/b/c` → `/a/b`, `/a` → `/`, `x` → `.`.
pub fn dirname(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => ".",
    }
}

/// `/a/b/c` → `c`.
pub fn basename(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// Descriptors of one process, bounded in size.
#[derive(Debug, Clone, Default)]
pub struct FdTable {
    fds: FastMap<i32, FdInfo>,
}

impl FdTable {
    pub fn get(&self, fd: i32) -> Option<&FdInfo> {
        self.fds.get(&fd)
    }

    pub fn get_mut(&mut self, fd: i32) -> Option<&mut FdInfo> {
        self.fds.get_mut(&fd)
    }

    /// Insert (replacing whatever had that number). Beyond `cap` entries the new fd is not
    /// remembered — its events will show `<NA>` fd fields instead of growing without bound.
    pub fn insert(&mut self, fd: i32, info: FdInfo, cap: usize) -> bool {
        if fd < 0 {
            return false;
        }
        if self.fds.len() >= cap && !self.fds.contains_key(&fd) {
            return false;
        }
        self.fds.insert(fd, info);
        true
    }

    pub fn remove(&mut self, fd: i32) -> Option<FdInfo> {
        self.fds.remove(&fd)
    }

    /// `dup2(old, new)`: new becomes a copy of old (closing what new was).
    pub fn dup(&mut self, old: i32, new: i32, cap: usize) {
        if old == new {
            return;
        }
        match self.fds.get(&old).cloned() {
            Some(info) => {
                self.insert(new, info, cap);
            }
            None => {
                self.fds.remove(&new);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.fds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (i32, &FdInfo)> {
        self.fds.iter().map(|(k, v)| (*k, v))
    }

    /// Forget every descriptor with close-on-exec set (O_CLOEXEC = 0o2000000), at exec.
    pub fn close_on_exec(&mut self) {
        const O_CLOEXEC: u32 = 0o2_000_000;
        // SOCK_CLOEXEC has the same value, so sockets are covered by the same test.
        self.fds.retain(|_, f| f.flags & O_CLOEXEC == 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_names_follow_falco_client_server_order() {
        let mut s = FdInfo::socket(2, 1, 0);
        assert_eq!(s.kind, FdKind::Ipv4);
        assert_eq!(s.l4proto, L4Proto::Tcp);
        s.set_tuple(
            Some("127.0.0.1:40000".parse().unwrap()),
            "127.0.0.1:22".parse().unwrap(),
            false,
        );
        assert_eq!(s.name, "127.0.0.1:40000->127.0.0.1:22");
        assert_eq!(s.server().unwrap().port(), 22);
        assert_eq!(s.client().unwrap().port(), 40000);

        let mut a = FdInfo::socket(10, 1, 6);
        a.set_tuple(
            Some("[::1]:8080".parse().unwrap()),
            "[::1]:5555".parse().unwrap(),
            true,
        );
        assert_eq!(a.name, "::1:5555->::1:8080");
        assert_eq!(a.server().unwrap().port(), 8080);
    }

    #[test]
    fn udp_and_packet_sockets() {
        let u = FdInfo::socket(2, 2, 0);
        assert_eq!(u.l4proto, L4Proto::Udp);
        let p = FdInfo::socket(17, 3, 0x300);
        assert_eq!(p.kind, FdKind::OtherSocket);
        assert_eq!(p.kind.type_char(), "o");
    }

    #[test]
    fn dup_copies_and_is_bounded() {
        let mut t = FdTable::default();
        assert!(t.insert(3, FdInfo::file("/etc/shadow", "/etc/shadow", 0, false), 2));
        t.dup(3, 1, 2);
        assert_eq!(t.get(1).unwrap().name, "/etc/shadow");
        assert!(!t.insert(7, FdInfo::file("/x", "/x", 0, false), 2));
        assert!(t.insert(1, FdInfo::file("/y", "/y", 0, false), 2));
        t.dup(9, 3, 2); // dup of an unknown fd: the target is no longer known
        assert!(t.get(3).is_none());
    }

    #[test]
    fn path_parts() {
        let f = FdInfo::file("/etc/ssh/sshd_config", "sshd_config", 0, false);
        assert_eq!(f.directory(), Some("/etc/ssh"));
        assert_eq!(f.filename(), Some("sshd_config"));
        assert_eq!(dirname("/etc"), "/");
        let d = FdInfo::file("/etc", "/etc", 0, true);
        assert_eq!(d.directory(), Some("/etc"));
        assert_eq!(d.kind.type_char(), "d");
    }

    #[test]
    fn cloexec_files_are_forgotten_at_exec() {
        let mut t = FdTable::default();
        t.insert(3, FdInfo::file("/a", "/a", 0o2_000_000, false), 8);
        t.insert(4, FdInfo::file("/b", "/b", 0, false), 8);
        t.close_on_exec();
        assert!(t.get(3).is_none());
        assert!(t.get(4).is_some());
    }
}
