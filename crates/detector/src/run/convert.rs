//! From the kernel event model (`crate::event`) to what state tracking and field extraction
//! consume: a borrowed [`SysEvent`] laid out by Falco parameter position, and [`ExecInfo`].

use crate::event::{Event, ExecEvent, SockAddr as KSockAddr, SyscallArgs, SyscallEvent};
use crate::fields::{Creds, SockAddr, SysEvent};
use crate::state::container::{HOST_ID, container_id_from_cgroup};
use crate::state::paths::resolve_into;
use crate::state::table::ExecInfo;

/// Reusable buffers for conversions (argv joining, path resolution).
#[derive(Default)]
pub struct Converter {
    argv: Vec<u8>,
    path: String,
}

fn addr(a: &Option<KSockAddr>) -> Option<SockAddr<'_>> {
    Some(match a.as_ref()? {
        KSockAddr::Inet(sa) => SockAddr::Inet(*sa),
        KSockAddr::Unix(p) => match p.strip_prefix('@') {
            Some(abstract_name) => SockAddr::Unix(abstract_name.as_bytes(), true),
            None => SockAddr::Unix(p.as_bytes(), false),
        },
        KSockAddr::Other { family } => SockAddr::Other(*family),
    })
}

/// Credentials in the event header.
pub fn creds(ev: &Event) -> Creds {
    Creds {
        uid: ev.uid,
        gid: ev.gid,
        euid: ev.euid,
        egid: ev.egid,
        loginuid: ev.loginuid.unwrap_or(u32::MAX),
        cap_permitted: ev.cap_permitted,
        cap_effective: ev.cap_effective,
    }
}

impl Converter {
    /// The syscall exit `sc` of event `ev`, with strings placed at Falco's parameter
    /// positions (see `fields::args::params`).
    pub fn syscall<'a>(&'a mut self, ev: &'a Event, sc: &'a SyscallEvent) -> SysEvent<'a> {
        let mut s = SysEvent {
            ts_ns: ev.ts,
            num: 0,
            name: sc.name,
            pid: ev.pid,
            tid: ev.tid,
            res: sc.ret,
            args: sc.raw_args,
            strs: [&[]; 6],
            addr: None,
            local: None,
            argv: &[],
            comm: ev.comm.as_bytes(),
            // Most records leave the identity to the process table (see flags::CREDS).
            creds: ev.flags.creds.then(|| creds(ev)),
        };
        let name = sc.name;
        // Position of the first path for the *at variants, which take a dirfd first.
        let at = usize::from(name != "creat" && (name.ends_with("at") || name.ends_with("at2")));
        match &sc.args {
            SyscallArgs::Open {
                path, flags, mode, ..
            } => {
                s.strs[at] = path.as_bytes();
                if name == "openat2" {
                    // Flags and mode live in `struct open_how`; place them where openat has them.
                    s.args[2] = u64::from(*flags);
                    s.args[3] = u64::from(*mode);
                }
            }
            SyscallArgs::Execve { filename, argv, .. } => {
                s.strs[at] = filename.as_bytes();
                self.argv.clear();
                for a in argv {
                    self.argv.extend_from_slice(a.as_bytes());
                    self.argv.push(0);
                }
                s.argv = &self.argv;
            }
            SyscallArgs::Chdir { path: Some(p), .. } => s.strs[0] = p.as_bytes(),
            SyscallArgs::Link {
                symbolic,
                target,
                linkpath,
                ..
            } => {
                let (t, l) = match (symbolic, at) {
                    (true, 0) => (0, 1),
                    (true, _) => (0, 2),
                    (false, 0) => (0, 1),
                    (false, _) => (1, 3),
                };
                s.strs[t] = target.as_bytes();
                s.strs[l] = linkpath.as_bytes();
            }
            SyscallArgs::Unlink { path, .. } | SyscallArgs::Mkdir { path, .. } => {
                s.strs[at] = path.as_bytes();
            }
            SyscallArgs::Rename {
                oldpath, newpath, ..
            } => {
                let (o, n) = if at == 0 { (0, 1) } else { (1, 3) };
                s.strs[o] = oldpath.as_bytes();
                s.strs[n] = newpath.as_bytes();
            }
            SyscallArgs::Chmod { path: Some(p), .. } => s.strs[at] = p.as_bytes(),
            SyscallArgs::MemfdCreate { name, .. } => s.strs[0] = name.as_bytes(),
            SyscallArgs::Connect { addr: a, local, .. } => {
                s.addr = addr(a);
                if let Some(crate::event::SockAddr::Inet(l)) = local {
                    s.local = Some(*l);
                }
            }
            SyscallArgs::Bind { addr: a, .. } | SyscallArgs::Send { addr: a, .. } => {
                s.addr = addr(a)
            }
            SyscallArgs::Accept { peer, .. } => s.addr = addr(peer),
            SyscallArgs::Mount {
                source,
                target,
                fstype,
                ..
            } => {
                s.strs[0] = source.as_deref().unwrap_or("").as_bytes();
                s.strs[1] = target.as_bytes();
                s.strs[2] = fstype.as_deref().unwrap_or("").as_bytes();
            }
            SyscallArgs::Umount { target, .. } => s.strs[0] = target.as_bytes(),
            _ => {}
        }
        s
    }

    /// What a `sched_process_exec` tells the process table. `cwd_fallback` is the process's
    /// known cwd, used when the event carries none.
    pub fn exec<'a>(
        &'a mut self,
        ev: &'a Event,
        ex: &'a ExecEvent,
        cwd_fallback: &str,
    ) -> ExecInfo<'a> {
        self.argv.clear();
        for a in &ex.argv {
            self.argv.extend_from_slice(a.as_bytes());
            self.argv.push(0);
        }
        let cwd = ex.cwd.as_deref().unwrap_or(cwd_fallback);
        let base = if cwd.is_empty() { "/" } else { cwd };
        resolve_into(base, &ex.filename, &mut self.path);
        ExecInfo {
            exepath: &self.path,
            argv: &self.argv,
            env: ex.env.as_deref(),
            comm: comm_str(ev),
            cwd: ex.cwd.as_deref(),
            container_id: ex
                .cgroup
                .as_deref()
                .map(|c| container_id_from_cgroup(c).unwrap_or(HOST_ID)),
            uid: ev.uid,
            gid: ev.gid,
            euid: ev.euid,
            egid: ev.egid,
            loginuid: ev.loginuid.unwrap_or(u32::MAX),
            tty: ex.details.tty,
            exe_upper_layer: ex.details.exe_upper_layer,
            exe_from_memfd: ex.details.exe_from_memfd,
            exe_ino: ex.details.exe_ino,
            caps: Some((ev.cap_permitted, ev.cap_effective)),
            ids: Some((ex.details.sid, ex.details.pgid, ex.details.vpid)),
            exe_times: (ex.details.exe_ctime, ex.details.exe_mtime),
        }
    }
}

fn comm_str(ev: &Event) -> &str {
    std::str::from_utf8(ev.comm.as_bytes()).unwrap_or("")
}
