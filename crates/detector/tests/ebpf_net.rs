//! Root-only: network syscalls made by this test thread decode their socket addresses
//! (captured at entry for connect/bind/sendto/sendmsg, at exit for accept).

mod ebpf_support;

use std::{
    io::Write,
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::unix::net::UnixStream,
};

use aerie_detector::event::{SockAddr, SyscallArgs};
use ebpf_support::{first, gettid, root_or_skip, start, syscalls_of};

#[tokio::test]
async fn tcp_udp_unix_addresses() {
    if !root_or_skip("tcp_udp_unix_addresses") {
        return;
    }
    let names = [
        "socket", "bind", "listen", "connect", "accept", "accept4", "sendto", "sendmsg",
    ];
    let mut cap = start(&names);
    let tid = gettid();

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let server: SocketAddr = listener.local_addr().expect("addr");
    let mut client = TcpStream::connect(server).expect("connect");
    let client_addr = client.local_addr().expect("client addr");
    let (accepted, peer) = listener.accept().expect("accept");
    assert_eq!(peer, client_addr);
    client.write_all(b"x").expect("write");

    let v6 = TcpListener::bind("[::1]:0").ok();
    let v6_addr = v6.as_ref().map(|l| l.local_addr().expect("v6 addr"));
    let v6_client = v6_addr.map(TcpStream::connect);

    let udp = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    let udp_addr = udp.local_addr().expect("udp addr");
    udp.send_to(b"ping", udp_addr).expect("send_to");

    // sendmsg with an explicit destination
    let mut iov_data = *b"pong";
    // SAFETY: plain msghdr pointing at stack data that outlives the call.
    let sent = unsafe {
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        sin.sin_family = libc::AF_INET as u16;
        sin.sin_port = udp_addr.port().to_be();
        sin.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let mut iov = libc::iovec {
            iov_base: iov_data.as_mut_ptr().cast(),
            iov_len: 4,
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut sin as *mut libc::sockaddr_in).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        libc::sendmsg(std::os::fd::AsRawFd::as_raw_fd(&udp), &msg, 0)
    };
    assert_eq!(sent, 4);

    let sock_path = format!("/tmp/aerie-missing-{}.sock", std::process::id());
    assert!(UnixStream::connect(&sock_path).is_err());

    let evs = syscalls_of(
        &mut cap,
        tid,
        &[
            "socket", "bind", "listen", "connect", "accept4", "sendto", "sendmsg",
        ],
    )
    .await;
    drop(accepted);

    let connects: Vec<_> = evs
        .iter()
        .filter(|(_, s)| s.name == "connect")
        .map(|(_, s)| s)
        .collect();
    let tcp = connects
        .iter()
        .find(|s| matches!(&s.args, SyscallArgs::Connect { addr: Some(SockAddr::Inet(a)), .. } if *a == server))
        .unwrap_or_else(|| panic!("no connect to {server}: {connects:#?}"));
    assert_eq!(tcp.ret, 0);
    // The kernel also reports the local address it picked, as Falco's tuple shows it.
    assert!(
        matches!(&tcp.args, SyscallArgs::Connect { local: Some(SockAddr::Inet(l)), .. } if *l == client_addr),
        "connect's local address is {client_addr}: {tcp:#?}"
    );
    if let (Some(v6_addr), Some(Ok(v6_client))) = (v6_addr, v6_client.as_ref()) {
        let v6_local = v6_client.local_addr().expect("v6 local addr");
        assert!(
            connects.iter().any(|s| matches!(&s.args, SyscallArgs::Connect { addr: Some(SockAddr::Inet(a)), local: Some(SockAddr::Inet(l)), .. } if *a == v6_addr && *l == v6_local)),
            "no connect from {v6_local} to {v6_addr}: {connects:#?}"
        );
    }
    let unix = connects
        .iter()
        .find(|s| matches!(&s.args, SyscallArgs::Connect { addr: Some(SockAddr::Unix(p)), .. } if *p == sock_path))
        .unwrap_or_else(|| panic!("no unix connect: {connects:#?}"));
    assert_eq!(unix.ret, -i64::from(libc::ENOENT));

    let binds: Vec<_> = evs
        .iter()
        .filter(|(_, s)| s.name == "bind")
        .map(|(_, s)| &s.args)
        .collect();
    assert!(binds.iter().any(|a| matches!(a, SyscallArgs::Bind { addr: Some(SockAddr::Inet(x)), .. } if x.ip().is_loopback() && x.port() == 0)), "{binds:#?}");
    assert!(
        matches!(first(&evs, "listen").args, SyscallArgs::Listen { backlog, .. } if backlog > 0)
    );
    let acc = first(&evs, "accept4");
    assert!(acc.ret >= 0);
    assert!(
        matches!(&acc.args, SyscallArgs::Accept { peer: Some(SockAddr::Inet(p)), .. } if *p == client_addr),
        "{acc:#?}"
    );
    let sock = first(&evs, "socket");
    assert!(
        matches!(sock.args, SyscallArgs::Socket { domain, .. } if domain == libc::AF_INET || domain == libc::AF_INET6)
    );
    // TcpStream::write is send(2), i.e. sendto without an address: look for ours.
    assert!(
        evs.iter().any(|(_, s)| s.name == "sendto"
            && matches!(&s.args, SyscallArgs::Send { addr: Some(SockAddr::Inet(a)), .. } if *a == udp_addr)),
        "no sendto to {udp_addr}"
    );
    assert!(
        evs.iter()
            .any(|(_, s)| s.name == "sendto"
                && matches!(&s.args, SyscallArgs::Send { addr: None, .. })),
        "send(2) on the TCP stream has no address"
    );
    assert!(
        matches!(&first(&evs, "sendmsg").args, SyscallArgs::Send { addr: Some(SockAddr::Inet(a)), .. } if *a == udp_addr)
    );
    assert_eq!(first(&evs, "sendmsg").ret, 4);
}
