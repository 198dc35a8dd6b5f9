//! The rules engine's [`Event`] over a syscall exit plus the detector's state.
//!
//! Field dispatch goes through a table indexed by [`aerie_rules::FieldId`], built once from
//! the syscall field registry: a compiled rule's field costs one array read and one `match`.
//! Text that must be formatted (flags, capability lists) is written into a reused scratch
//! buffer, so extraction does not allocate.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use aerie_alert::Timestamp;
use aerie_rules::{Event, FieldArg, FieldRef, Value, syscall_fields};

use super::args::{self, Src};
use super::flags;
use super::sysevent::{SockAddr, SysEvent};
use crate::container::{ContainerDb, ContainerInfo, MountKey, PodInfo};
use crate::state::apply::EventFd;
use crate::state::container::HOST_ID;
use crate::state::fd::{FdInfo, FdKind};
use crate::state::paths::resolve_into;
use crate::state::process::{NO_LOGINUID, Process};
use crate::state::table::ProcessTable;
use crate::state::users::UserDb;

/// Nanoseconds per second.
const NS: u64 = 1_000_000_000;

/// Every field the detector can extract. Fields of the registry that map to none of these
/// cannot be extracted (conditions on them are false; outputs print `<NA>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fx {
    Unsupported,
    // evt.*
    EvtType,
    EvtDir,
    EvtNum,
    EvtTime,
    EvtTimeS,
    EvtIso8601,
    EvtRawTime,
    EvtRawTimeS,
    EvtRawTimeNs,
    EvtRes,
    EvtRawRes,
    EvtFailed,
    EvtArg,
    EvtRawArg,
    EvtArgs,
    EvtIsOpenRead,
    EvtIsOpenWrite,
    EvtIsOpenExec,
    EvtIsOpenCreate,
    EvtHostname,
    EvtSource,
    EvtAbsPath,
    EvtCount,
    // proc.* / thread.*
    ProcPid,
    ProcPpid,
    ProcVpid,
    ProcApid,
    ProcName,
    ProcPname,
    ProcAname,
    ProcEnv,
    ProcExe,
    ProcPexe,
    ProcAexe,
    ProcExepath,
    ProcPexepath,
    ProcAexepath,
    ProcArgs,
    ProcAargs,
    ProcCmdline,
    ProcPcmdline,
    ProcAcmdline,
    ProcCmdnargs,
    ProcExeline,
    ProcCwd,
    ProcTty,
    ProcSid,
    ProcSname,
    ProcSidExe,
    ProcSidExepath,
    ProcVpgid,
    ProcVpgidName,
    ProcVpgidExe,
    ProcVpgidExepath,
    ProcIsSidLeader,
    ProcIsVpgidLeader,
    ProcDuration,
    ProcPpidDuration,
    ProcPidTs,
    ProcPpidTs,
    ProcIsExeUpperLayer,
    ProcIsExeLowerLayer,
    ProcIsExeFromMemfd,
    ProcExeIno,
    ProcExeInoCtime,
    ProcExeInoMtime,
    ProcExeInoCtimeDurationProcStart,
    ProcFdOpenCount,
    ProcStdType(i32),
    ProcStdName(i32),
    ProcIsHealthcheck,
    ThreadTid,
    ThreadVtid,
    ThreadIsMain,
    CapEffective,
    CapPermitted,
    CapInheritable,
    // user.* / group.*
    UserUid,
    UserName,
    UserHomedir,
    UserLoginuid,
    UserLoginname,
    GroupGid,
    GroupName,
    // fd.*
    FdNum,
    FdName,
    FdNameRaw,
    FdDirectory,
    FdFilename,
    FdType,
    FdTypechar,
    FdTypes,
    FdL4proto,
    FdSockfamily,
    FdIsServer,
    FdConnected,
    FdNameChanged,
    FdIsUpperLayer,
    FdIp,
    FdCip,
    FdSip,
    FdLip,
    FdRip,
    FdPort,
    FdCport,
    FdSport,
    FdLport,
    FdRport,
    FdNet,
    FdCnet,
    FdSnet,
    FdLnet,
    FdRnet,
    // fs.path.*
    FsPathName,
    FsPathNameRaw,
    FsPathSource,
    FsPathSourceRaw,
    FsPathTarget,
    FsPathTargetRaw,
    // container.*
    ContainerId,
    ContainerName,
    ContainerType,
    ContainerImage,
    ContainerImageRepository,
    ContainerImageTag,
    ContainerImageDigest,
    ContainerImageId,
    ContainerPrivileged,
    ContainerFullId,
    ContainerMounts,
    ContainerMount(MountPart),
    ContainerStartTs,
    ContainerDuration,
    // k8s.* (from the CRI pod sandbox)
    K8sPodName,
    K8sNsName,
    K8sPodUid,
    K8sPodSandboxId,
    K8sPodFullSandboxId,
    K8sPodLabel,
    K8sPodLabels,
    K8sPodIp,
}

/// Which part of a `container.mount*[...]` mount a field prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MountPart {
    All,
    Source,
    Dest,
    Mode,
    Rdwr,
    Propagation,
}

fn fx_for(name: &str) -> Fx {
    use Fx::*;
    match name {
        "evt.type" | "syscall.type" => EvtType,
        "evt.dir" => EvtDir,
        "evt.num" => EvtNum,
        "evt.time" | "evt.outputtime" => EvtTime,
        "evt.time.s" => EvtTimeS,
        "evt.time.iso8601" | "evt.datetime" => EvtIso8601,
        "evt.rawtime" => EvtRawTime,
        "evt.rawtime.s" => EvtRawTimeS,
        "evt.rawtime.ns" => EvtRawTimeNs,
        "evt.res" => EvtRes,
        "evt.rawres" => EvtRawRes,
        "evt.failed" => EvtFailed,
        "evt.arg" => EvtArg,
        "evt.rawarg" => EvtRawArg,
        "evt.args" => EvtArgs,
        "evt.is_open_read" => EvtIsOpenRead,
        "evt.is_open_write" => EvtIsOpenWrite,
        "evt.is_open_exec" => EvtIsOpenExec,
        "evt.is_open_create" => EvtIsOpenCreate,
        "evt.hostname" => EvtHostname,
        "evt.source" => EvtSource,
        "evt.abspath" => EvtAbsPath,
        "evt.count" => EvtCount,
        "proc.pid" => ProcPid,
        "proc.ppid" => ProcPpid,
        "proc.vpid" => ProcVpid,
        "proc.apid" => ProcApid,
        "proc.name" => ProcName,
        "proc.pname" => ProcPname,
        "proc.aname" => ProcAname,
        "proc.env" => ProcEnv,
        "proc.exe" => ProcExe,
        "proc.pexe" => ProcPexe,
        "proc.aexe" => ProcAexe,
        "proc.exepath" => ProcExepath,
        "proc.pexepath" => ProcPexepath,
        "proc.aexepath" => ProcAexepath,
        "proc.args" => ProcArgs,
        "proc.aargs" => ProcAargs,
        "proc.cmdline" => ProcCmdline,
        "proc.pcmdline" => ProcPcmdline,
        "proc.acmdline" => ProcAcmdline,
        "proc.cmdnargs" => ProcCmdnargs,
        "proc.exeline" => ProcExeline,
        "proc.cwd" => ProcCwd,
        "proc.tty" => ProcTty,
        "proc.sid" => ProcSid,
        "proc.sname" => ProcSname,
        "proc.sid.exe" => ProcSidExe,
        "proc.sid.exepath" => ProcSidExepath,
        "proc.vpgid" | "proc.pgid" => ProcVpgid,
        "proc.vpgid.name" | "proc.pgid.name" => ProcVpgidName,
        "proc.vpgid.exe" | "proc.pgid.exe" => ProcVpgidExe,
        "proc.vpgid.exepath" | "proc.pgid.exepath" => ProcVpgidExepath,
        "proc.is_sid_leader" => ProcIsSidLeader,
        "proc.is_vpgid_leader" | "proc.is_pgid_leader" => ProcIsVpgidLeader,
        "proc.duration" => ProcDuration,
        "proc.ppid.duration" => ProcPpidDuration,
        "proc.pid.ts" => ProcPidTs,
        "proc.ppid.ts" => ProcPpidTs,
        "proc.is_exe_upper_layer" => ProcIsExeUpperLayer,
        "proc.is_exe_lower_layer" => ProcIsExeLowerLayer,
        "proc.is_exe_from_memfd" => ProcIsExeFromMemfd,
        "proc.exe_ino" => ProcExeIno,
        "proc.exe_ino.ctime" => ProcExeInoCtime,
        "proc.exe_ino.mtime" => ProcExeInoMtime,
        "proc.exe_ino.ctime_duration_proc_start" => ProcExeInoCtimeDurationProcStart,
        "proc.fdopencount" => ProcFdOpenCount,
        "proc.stdin.type" => ProcStdType(0),
        "proc.stdout.type" => ProcStdType(1),
        "proc.stderr.type" => ProcStdType(2),
        "proc.stdin.name" => ProcStdName(0),
        "proc.stdout.name" => ProcStdName(1),
        "proc.stderr.name" => ProcStdName(2),
        "proc.is_container_healthcheck"
        | "proc.is_container_liveness_probe"
        | "proc.is_container_readiness_probe" => ProcIsHealthcheck,
        "thread.tid" => ThreadTid,
        "thread.vtid" => ThreadVtid,
        "thread.ismain" => ThreadIsMain,
        "thread.cap_effective" => CapEffective,
        "thread.cap_permitted" => CapPermitted,
        "thread.cap_inheritable" => CapInheritable,
        "user.uid" => UserUid,
        "user.name" => UserName,
        "user.homedir" => UserHomedir,
        "user.loginuid" => UserLoginuid,
        "user.loginname" => UserLoginname,
        "group.gid" => GroupGid,
        "group.name" => GroupName,
        "fd.num" => FdNum,
        "fd.name" => FdName,
        "fd.nameraw" => FdNameRaw,
        "fd.directory" => FdDirectory,
        "fd.filename" => FdFilename,
        "fd.type" => FdType,
        "fd.typechar" => FdTypechar,
        "fd.types" => FdTypes,
        "fd.l4proto" => FdL4proto,
        "fd.sockfamily" => FdSockfamily,
        "fd.is_server" => FdIsServer,
        "fd.connected" => FdConnected,
        "fd.name_changed" => FdNameChanged,
        "fd.is_upper_layer" => FdIsUpperLayer,
        "fd.ip" => FdIp,
        "fd.cip" => FdCip,
        "fd.sip" => FdSip,
        "fd.lip" => FdLip,
        "fd.rip" => FdRip,
        "fd.port" => FdPort,
        "fd.cport" => FdCport,
        "fd.sport" => FdSport,
        "fd.lport" => FdLport,
        "fd.rport" => FdRport,
        "fd.net" => FdNet,
        "fd.cnet" => FdCnet,
        "fd.snet" => FdSnet,
        "fd.lnet" => FdLnet,
        "fd.rnet" => FdRnet,
        "fs.path.name" => FsPathName,
        "fs.path.nameraw" => FsPathNameRaw,
        "fs.path.source" => FsPathSource,
        "fs.path.sourceraw" => FsPathSourceRaw,
        "fs.path.target" => FsPathTarget,
        "fs.path.targetraw" => FsPathTargetRaw,
        "container.id" => ContainerId,
        "container.name" => ContainerName,
        "container.type" => ContainerType,
        "container.image" => ContainerImage,
        "container.image.repository" => ContainerImageRepository,
        "container.image.tag" => ContainerImageTag,
        "container.privileged" => ContainerPrivileged,
        "container.image.digest" => ContainerImageDigest,
        "container.image.id" => ContainerImageId,
        "container.full_id" => ContainerFullId,
        "container.mounts" => ContainerMounts,
        "container.mount" => ContainerMount(MountPart::All),
        "container.mount.source" => ContainerMount(MountPart::Source),
        "container.mount.dest" => ContainerMount(MountPart::Dest),
        "container.mount.mode" => ContainerMount(MountPart::Mode),
        "container.mount.rdwr" => ContainerMount(MountPart::Rdwr),
        "container.mount.propagation" => ContainerMount(MountPart::Propagation),
        "container.start_ts" => ContainerStartTs,
        "container.duration" => ContainerDuration,
        "k8s.pod.name" => K8sPodName,
        "k8s.ns.name" => K8sNsName,
        "k8s.pod.uid" | "k8s.pod.id" => K8sPodUid,
        "k8s.pod.sandbox_id" => K8sPodSandboxId,
        "k8s.pod.full_sandbox_id" => K8sPodFullSandboxId,
        "k8s.pod.label" => K8sPodLabel,
        "k8s.pod.labels" => K8sPodLabels,
        "k8s.pod.ip" => K8sPodIp,
        _ => Unsupported,
    }
}

/// `FieldId` → extractor, built once.
fn table() -> &'static [Fx] {
    static TABLE: OnceLock<Vec<Fx>> = OnceLock::new();
    TABLE.get_or_init(|| {
        syscall_fields()
            .fields()
            .iter()
            .map(|f| fx_for(f.name))
            .collect()
    })
}

/// Whether `name` is filled from a container runtime's answer (`<NA>` without one), for
/// `list-fields`.
pub fn needs_runtime(name: &str) -> bool {
    use Fx::*;
    matches!(
        fx_for(name),
        ContainerName
            | ContainerType
            | ContainerImage
            | ContainerImageRepository
            | ContainerImageTag
            | ContainerImageDigest
            | ContainerImageId
            | ContainerPrivileged
            | ContainerFullId
            | ContainerMounts
            | ContainerMount(_)
            | ContainerStartTs
            | ContainerDuration
            | K8sPodName
            | K8sNsName
            | K8sPodUid
            | K8sPodSandboxId
            | K8sPodFullSandboxId
            | K8sPodLabel
            | K8sPodLabels
            | K8sPodIp
    )
}

/// Names of the registry fields this extractor supports (for `list-fields` and tests).
pub fn supported_fields() -> impl Iterator<Item = &'static str> {
    syscall_fields()
        .fields()
        .iter()
        .filter(|f| fx_for(f.name) != Fx::Unsupported)
        .map(|f| f.name)
}

/// One syscall exit with everything needed to extract its fields.
pub struct EventCtx<'a> {
    pub ev: &'a SysEvent<'a>,
    pub table: &'a ProcessTable,
    pub proc: Option<&'a Process>,
    /// The event's descriptor number and what it refers to (when known).
    pub fd_num: Option<i64>,
    pub fd: Option<&'a FdInfo>,
    pub users: &'a UserDb,
    /// Runtime metadata of containers (name, image), when a runtime answered.
    pub containers: &'a ContainerDb,
    pub hostname: &'a str,
    /// Reused text buffer, owned by the caller so that building a context allocates nothing.
    scratch: &'a RefCell<String>,
}

impl<'a> EventCtx<'a> {
    /// Build the context after [`crate::state::apply::Tracker::before`] returned `evfd`.
    // Each argument is a separate borrow of the pipeline's state; bundling them would only
    // move the same list into a struct literal at the single call site.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ev: &'a SysEvent<'a>,
        table: &'a ProcessTable,
        transient: &'a FdInfo,
        evfd: EventFd,
        users: &'a UserDb,
        containers: &'a ContainerDb,
        hostname: &'a str,
        scratch: &'a RefCell<String>,
    ) -> Self {
        let proc = table.get(ev.pid);
        let (fd_num, fd) = match evfd {
            EventFd::None => (None, None),
            EventFd::Num(n) => (Some(i64::from(n)), proc.and_then(|p| p.fds.get(n))),
            EventFd::Transient => (Some(-1), Some(transient)),
        };
        EventCtx {
            ev,
            table,
            proc,
            fd_num,
            fd,
            users,
            containers,
            hostname,
            scratch,
        }
    }

    /// Format with `f` into the scratch buffer and hand the text to `out`.
    fn text(&self, out: &mut dyn FnMut(Value<'_>), f: impl FnOnce(&mut String)) {
        match self.scratch.try_borrow_mut() {
            Ok(mut s) => {
                s.clear();
                f(&mut s);
                out(Value::Str(&s));
            }
            Err(_) => {
                let mut s = String::new();
                f(&mut s);
                out(Value::Str(&s));
            }
        }
    }

    fn ancestor(&self, n: usize) -> Option<&'a Process> {
        let p = self.proc?;
        self.table.ancestor(p, n)
    }

    /// `proc.aname[N]`-style fields: index N, or every ancestor when no index.
    fn ancestors(
        &self,
        arg: FieldArg<'_>,
        out: &mut dyn FnMut(Value<'_>),
        get: impl Fn(&Process, &mut dyn FnMut(Value<'_>)),
    ) -> bool {
        let Some(p) = self.proc else { return false };
        match arg {
            FieldArg::Index(n) => match self.table.ancestor(p, n as usize) {
                Some(a) => {
                    get(a, out);
                    true
                }
                None => false,
            },
            _ => {
                for a in self.table.ancestors(p) {
                    get(a, out);
                }
                true
            }
        }
    }

    fn open_flags(&self) -> Option<u64> {
        match self.ev.name {
            "open" => Some(self.ev.args[1]),
            // openat2's `struct open_how` flags are placed where openat has them.
            "openat" | "openat2" => Some(self.ev.args[2]),
            "creat" => Some(0o1 | flags::O_CREAT | flags::O_TRUNC),
            _ => None,
        }
    }

    fn open_mode(&self) -> u64 {
        match self.ev.name {
            "open" => self.ev.args[2],
            "openat" | "openat2" => self.ev.args[3],
            "creat" => self.ev.args[1],
            _ => 0,
        }
    }

    fn arg(&self, src: Src, raw: bool, out: &mut dyn FnMut(Value<'_>)) -> bool {
        let ev = self.ev;
        let num = |i: usize| ev.args.get(i).copied().unwrap_or(0);
        match src {
            Src::Res => out(Value::Int(ev.res)),
            Src::Raw(i) => out(Value::Uint(num(i))),
            Src::Fd(i) => out(Value::Int(i64::from(ev.fd_arg(i)))),
            Src::Str(i) => out(Value::Bytes(ev.str_arg(i))),
            Src::Addr => return self.sockaddr(ev.addr, out),
            Src::Octal(i) if !raw => self.text(out, |s| flags::octal(num(i), s)),
            Src::ChmodMode(i) if !raw => self.text(out, |s| {
                flags::chmod_mode(num(i), s);
                if s.is_empty() {
                    flags::octal(num(i), s);
                }
            }),
            Src::Octal(i) | Src::ChmodMode(i) => out(Value::Uint(num(i))),
            _ if raw => match src {
                Src::OpenFlags(i)
                | Src::CloneFlags(i)
                | Src::MemfdFlags(i)
                | Src::MountFlags(i)
                | Src::Ptrace(i)
                | Src::SockDomain(i)
                | Src::SockType(i)
                | Src::BpfCmd(i)
                | Src::Uid(i)
                | Src::Gid(i) => out(Value::Uint(num(i))),
                _ => return self.arg(src, false, out),
            },
            Src::OpenFlags(i) => self.text(out, |s| flags::open_flags(num(i), s)),
            Src::CloneFlags(i) => self.text(out, |s| flags::clone_flags(num(i), s)),
            Src::MemfdFlags(i) => self.text(out, |s| flags::memfd_flags(num(i), s)),
            Src::MountFlags(i) => self.text(out, |s| flags::mount_flags(num(i), s)),
            Src::Ptrace(i) => match flags::ptrace_request(num(i)) {
                Some(n) => out(Value::Str(n)),
                None => out(Value::Uint(num(i))),
            },
            Src::SockDomain(i) => match flags::socket_domain(num(i)) {
                Some(n) => out(Value::Str(n)),
                None => out(Value::Uint(num(i))),
            },
            Src::SockType(i) => self.text(out, |s| flags::socket_type(num(i), s)),
            Src::BpfCmd(i) => match flags::bpf_cmd(num(i)) {
                Some(n) => out(Value::Str(n)),
                None => out(Value::Uint(num(i))),
            },
            Src::Uid(i) => {
                let id = num(i) as u32;
                match self.users.user_name(id) {
                    Some(n) => out(Value::Str(n)),
                    None => out(Value::Uint(u64::from(id))),
                }
            }
            Src::Gid(i) => {
                let id = num(i) as u32;
                match self.users.group_name(id) {
                    Some(n) => out(Value::Str(n)),
                    None => out(Value::Uint(u64::from(id))),
                }
            }
            Src::ExecExe => match self.proc {
                Some(p) => out(Value::Str(&p.exe)),
                None => return false,
            },
            Src::ExecArgs => match self.proc {
                Some(p) => out(Value::Str(&p.args)),
                None => return false,
            },
            Src::ExecFlags => {
                let Some(p) = self.proc else { return false };
                self.text(out, |s| {
                    flags::exe_flags(false, p.exe_upper_layer, p.exe_from_memfd, s)
                })
            }
            Src::ExecFilename(i) => {
                let f = ev.str_arg(i);
                if f.is_empty() {
                    match self.proc {
                        Some(p) => out(Value::Str(&p.exepath)),
                        None => return false,
                    }
                } else {
                    out(Value::Bytes(f))
                }
            }
            Src::ProcPid => out(Value::Int(i64::from(ev.pid))),
            Src::ProcPtid => match self.proc {
                Some(p) => out(Value::Int(i64::from(p.ppid))),
                None => return false,
            },
            Src::ProcCwd => match self.proc {
                Some(p) => dir_with_slash(&p.cwd, out),
                None => return false,
            },
            Src::ProcComm => match self.proc {
                Some(p) => out(Value::Str(&p.comm)),
                None => return false,
            },
        }
        true
    }

    fn sockaddr(&self, a: Option<SockAddr<'_>>, out: &mut dyn FnMut(Value<'_>)) -> bool {
        match a {
            Some(SockAddr::Inet(a)) => self.text(out, |s| {
                let _ = write!(s, "{}:{}", a.ip(), a.port());
            }),
            Some(SockAddr::Unix(p, abstract_ns)) => {
                if abstract_ns {
                    self.text(out, |s| {
                        s.push('@');
                        s.push_str(&String::from_utf8_lossy(p));
                    })
                } else {
                    out(Value::Bytes(p))
                }
            }
            _ => return false,
        }
        true
    }

    /// `evt.args`: `name=value` pairs.
    fn all_args(&self, out: &mut dyn FnMut(Value<'_>)) {
        let mut text = String::with_capacity(128);
        for (i, (name, src)) in args::params(self.ev.name).iter().enumerate() {
            if i > 0 {
                text.push(' ');
            }
            text.push_str(name);
            text.push('=');
            self.arg(*src, false, &mut |v| {
                let _ = write!(text, "{v}");
            });
        }
        out(Value::Str(&text));
    }

    /// A path the event names, resolved against the cwd / its dirfd (`fs.path.*`).
    fn fs_path(&self, target: bool, raw: bool, out: &mut dyn FnMut(Value<'_>)) -> bool {
        let (src, dst) = args::fs_paths(self.ev.name);
        let Some((i, dirfd)) = (if target { dst } else { src }) else {
            return false;
        };
        let path = self.ev.str_arg(i);
        if raw {
            out(Value::Bytes(path));
            return true;
        }
        let Some(p) = self.proc else { return false };
        let path = String::from_utf8_lossy(path);
        // A symlink's target is stored as written; only its link path is resolved.
        if self.ev.name.starts_with("symlink") && !target {
            out(Value::Str(&path));
            return true;
        }
        let base = dirfd
            .map(|d| self.ev.fd_arg(d))
            .filter(|d| *d != -100)
            .and_then(|d| p.fds.get(d))
            .map(|f| f.name.as_str())
            .unwrap_or(p.cwd.as_str());
        let base = if base.is_empty() { "/" } else { base };
        self.text(out, |s| resolve_into(base, &path, s));
        true
    }

    fn fd_addr(&self, which: fn(&FdInfo) -> Option<SocketAddr>) -> Option<SocketAddr> {
        let f = self.fd?;
        if !f.kind.is_ip_socket() {
            return None;
        }
        which(f)
    }

    fn ip_field(
        &self,
        which: fn(&FdInfo) -> Option<SocketAddr>,
        out: &mut dyn FnMut(Value<'_>),
    ) -> bool {
        match self.fd_addr(which) {
            Some(a) => {
                out(Value::Ip(a.ip()));
                true
            }
            None => false,
        }
    }

    fn port_field(
        &self,
        which: fn(&FdInfo) -> Option<SocketAddr>,
        out: &mut dyn FnMut(Value<'_>),
    ) -> bool {
        match self.fd_addr(which) {
            Some(a) => {
                out(Value::Uint(u64::from(a.port())));
                true
            }
            None => false,
        }
    }
}

/// A directory as Falco prints it: with a trailing slash.
fn dir_with_slash(dir: &str, out: &mut dyn FnMut(Value<'_>)) {
    if dir.ends_with('/') {
        out(Value::Str(dir));
    } else {
        let mut s = String::with_capacity(dir.len() + 1);
        s.push_str(dir);
        s.push('/');
        out(Value::Str(&s));
    }
}

fn local(f: &FdInfo) -> Option<SocketAddr> {
    f.local
}

fn remote(f: &FdInfo) -> Option<SocketAddr> {
    f.remote
}

fn client(f: &FdInfo) -> Option<SocketAddr> {
    f.client()
}

fn server(f: &FdInfo) -> Option<SocketAddr> {
    f.server()
}

fn exe_of(p: &Process) -> &str {
    &p.exe
}

fn args_of(p: &Process) -> &str {
    &p.args
}

fn cmdline_of(p: &Process) -> &str {
    &p.cmdline
}

fn comm_of(p: &Process) -> &str {
    &p.comm
}

fn exepath_of(p: &Process) -> &str {
    &p.exepath
}

impl<'a> Event for EventCtx<'a> {
    fn source(&self) -> &str {
        aerie_alert::DEFAULT_SOURCE
    }

    fn event_type(&self) -> Option<&str> {
        Some(self.ev.name)
    }

    fn timestamp(&self) -> Option<Timestamp> {
        Some(Timestamp::from_unix_nanos(i128::from(self.ev.ts_ns)))
    }

    fn extract(&self, field: &FieldRef<'_>, out: &mut dyn FnMut(Value<'_>)) -> bool {
        use Fx::*;
        let fx = table()
            .get(usize::from(field.id.0))
            .copied()
            .unwrap_or(Fx::Unsupported);
        let ev = self.ev;
        let p = self.proc;
        let f = self.fd;
        macro_rules! proc_str {
            ($e:expr) => {
                match p {
                    Some(p) => {
                        out(Value::Str($e(p)));
                        true
                    }
                    None => false,
                }
            };
        }
        macro_rules! anc_str {
            ($n:expr, $e:expr) => {
                match self.ancestor($n) {
                    Some(a) => {
                        out(Value::Str($e(a)));
                        true
                    }
                    None => false,
                }
            };
        }
        macro_rules! fd_str {
            ($e:expr) => {
                match f.and_then($e) {
                    Some(s) => {
                        out(Value::Str(s));
                        true
                    }
                    None => false,
                }
            };
        }
        match fx {
            Unsupported => false,
            EvtType => {
                out(Value::Str(ev.name));
                true
            }
            EvtDir => {
                out(Value::Str("<"));
                true
            }
            EvtNum => {
                out(Value::Uint(ev.num));
                true
            }
            EvtTime => {
                let t = Timestamp::from_unix_nanos(i128::from(ev.ts_ns));
                out(Value::Str(&t.clock_prefix()));
                true
            }
            EvtTimeS => {
                let t = Timestamp::from_unix_nanos(i128::from(ev.ts_ns));
                let c = t.clock_prefix();
                out(Value::Str(c.split('.').next().unwrap_or(&c)));
                true
            }
            EvtIso8601 => {
                let t = Timestamp::from_unix_nanos(i128::from(ev.ts_ns));
                out(Value::Str(&t.to_string()));
                true
            }
            EvtRawTime => {
                out(Value::Uint(ev.ts_ns));
                true
            }
            EvtRawTimeS => {
                out(Value::Uint(ev.ts_ns / NS));
                true
            }
            EvtRawTimeNs => {
                out(Value::Uint(ev.ts_ns % NS));
                true
            }
            EvtRes => {
                match flags::errno_name(ev.res) {
                    Some(n) => out(Value::Str(n)),
                    Option::None => out(Value::Int(ev.res)),
                }
                true
            }
            EvtRawRes => {
                out(Value::Int(ev.res));
                true
            }
            EvtFailed => {
                out(Value::Bool(ev.res < 0));
                true
            }
            EvtArg | EvtRawArg => {
                let src = match field.arg {
                    FieldArg::Key(k) => args::find(ev.name, k),
                    FieldArg::Index(i) => args::params(ev.name).get(i as usize).map(|(_, s)| *s),
                    FieldArg::None => Option::None,
                };
                match src {
                    Some(s) => self.arg(s, fx == EvtRawArg, out),
                    Option::None => false,
                }
            }
            EvtArgs => {
                self.all_args(out);
                true
            }
            EvtIsOpenRead | EvtIsOpenWrite | EvtIsOpenExec | EvtIsOpenCreate => {
                let Some(fl) = self.open_flags() else {
                    out(Value::Bool(false));
                    return true;
                };
                let acc = fl & flags::O_ACCMODE;
                let v = match fx {
                    EvtIsOpenRead => acc == 0 || acc == 2,
                    EvtIsOpenWrite => acc == 1 || acc == 2,
                    EvtIsOpenCreate => fl & flags::O_CREAT != 0,
                    _ => fl & flags::O_CREAT != 0 && self.open_mode() & 0o111 != 0,
                };
                out(Value::Bool(v));
                true
            }
            EvtHostname => {
                out(Value::Str(self.hostname));
                true
            }
            EvtSource => {
                out(Value::Str(aerie_alert::DEFAULT_SOURCE));
                true
            }
            EvtAbsPath => self.fs_path(false, false, out),
            EvtCount => {
                out(Value::Uint(1));
                true
            }
            ProcPid => {
                out(Value::Int(i64::from(ev.pid)));
                true
            }
            ProcPpid => emit(out, p.map(|p| Value::Int(i64::from(p.ppid)))),
            ProcVpid => match p {
                Some(p) => {
                    out(Value::Int(i64::from(if p.vpid != 0 {
                        p.vpid
                    } else {
                        p.pid
                    })));
                    true
                }
                Option::None => false,
            },
            ProcApid => self.ancestors(field.arg, out, |a, o| o(Value::Int(i64::from(a.pid)))),
            ProcName => {
                if let Some(p) = p {
                    out(Value::Str(&p.comm));
                } else {
                    out(Value::Bytes(ev.comm_str()));
                }
                true
            }
            ProcPname => anc_str!(1, comm_of),
            ProcAname => self.ancestors(field.arg, out, |a, o| o(Value::Str(&a.comm))),
            ProcExe => proc_str!(exe_of),
            ProcPexe => anc_str!(1, exe_of),
            ProcAexe => self.ancestors(field.arg, out, |a, o| o(Value::Str(&a.exe))),
            ProcExepath => proc_str!(exepath_of),
            ProcPexepath => anc_str!(1, exepath_of),
            ProcAexepath => self.ancestors(field.arg, out, |a, o| o(Value::Str(&a.exepath))),
            ProcArgs => proc_str!(args_of),
            // Kept only while a rule reads it (see ProcessTable::set_keep_env).
            ProcEnv => match (p, field.arg) {
                (Some(p), FieldArg::Key(name)) => match p.env_var(name.as_bytes()) {
                    Some(v) => {
                        out(Value::Bytes(v));
                        true
                    }
                    Option::None => false,
                },
                (Some(p), FieldArg::None) => {
                    self.text(out, |s| {
                        for (i, e) in p.env_entries().enumerate() {
                            if i > 0 {
                                s.push(' ');
                            }
                            s.push_str(&String::from_utf8_lossy(e));
                        }
                    });
                    true
                }
                _ => false,
            },
            ProcAargs => self.ancestors(field.arg, out, |a, o| o(Value::Str(&a.args))),
            ProcCmdline => proc_str!(cmdline_of),
            ProcPcmdline => anc_str!(1, cmdline_of),
            ProcAcmdline => self.ancestors(field.arg, out, |a, o| o(Value::Str(&a.cmdline))),
            ProcCmdnargs => match p {
                Some(p) => {
                    let n = if p.args.is_empty() {
                        0
                    } else {
                        p.args.split(' ').count()
                    };
                    out(Value::Uint(n as u64));
                    true
                }
                Option::None => false,
            },
            ProcExeline => match p {
                Some(p) => {
                    self.text(out, |s| {
                        s.push_str(&p.exe);
                        if !p.args.is_empty() {
                            s.push(' ');
                            s.push_str(&p.args);
                        }
                    });
                    true
                }
                Option::None => false,
            },
            // Falco writes directories with a trailing slash (`/dev/shm/`), and rules rely on it.
            ProcCwd => match p {
                Some(p) => {
                    dir_with_slash(&p.cwd, out);
                    true
                }
                Option::None => false,
            },
            ProcTty => emit(out, p.map(|p| Value::Int(i64::from(p.tty)))),
            ProcSid => emit(out, p.map(|p| Value::Int(i64::from(p.sid)))),
            ProcSname | ProcSidExe | ProcSidExepath => {
                let Some(leader) = p.and_then(|p| self.table.get(p.sid)) else {
                    return false;
                };
                out(Value::Str(match fx {
                    ProcSname => &leader.comm,
                    ProcSidExe => &leader.exe,
                    _ => &leader.exepath,
                }));
                true
            }
            ProcVpgid => emit(out, p.map(|p| Value::Int(i64::from(p.vpgid)))),
            ProcVpgidName | ProcVpgidExe | ProcVpgidExepath => {
                let Some(leader) = p.and_then(|p| self.table.get(p.vpgid)) else {
                    return false;
                };
                out(Value::Str(match fx {
                    ProcVpgidName => &leader.comm,
                    ProcVpgidExe => &leader.exe,
                    _ => &leader.exepath,
                }));
                true
            }
            ProcIsSidLeader => emit(out, p.map(|p| Value::Bool(p.sid == p.pid))),
            ProcIsVpgidLeader => emit(out, p.map(|p| Value::Bool(p.vpgid == p.pid))),
            ProcDuration => match p {
                Some(p) if p.start_ns > 0 => {
                    out(Value::Uint(ev.ts_ns.saturating_sub(p.start_ns)));
                    true
                }
                _ => false,
            },
            ProcPpidDuration => match self.ancestor(1) {
                Some(a) if a.start_ns > 0 => {
                    out(Value::Uint(ev.ts_ns.saturating_sub(a.start_ns)));
                    true
                }
                _ => false,
            },
            ProcPidTs => match p {
                Some(p) if p.start_ns > 0 => {
                    out(Value::Uint(p.start_ns));
                    true
                }
                _ => false,
            },
            ProcPpidTs => match self.ancestor(1) {
                Some(a) if a.start_ns > 0 => {
                    out(Value::Uint(a.start_ns));
                    true
                }
                _ => false,
            },
            ProcIsExeUpperLayer | ProcIsExeLowerLayer | ProcIsExeFromMemfd => match p {
                Some(p) => {
                    out(Value::Bool(match fx {
                        ProcIsExeUpperLayer => p.exe_upper_layer,
                        ProcIsExeFromMemfd => p.exe_from_memfd,
                        // Lower layer: on a container's overlay root but not written in it.
                        _ => p.in_container() && !p.exe_upper_layer,
                    }));
                    true
                }
                Option::None => false,
            },
            ProcExeIno => match p {
                Some(p) if p.exe_ino != 0 => {
                    out(Value::Uint(p.exe_ino));
                    true
                }
                _ => false,
            },
            ProcExeInoCtime | ProcExeInoMtime => {
                let secs = match (p, fx) {
                    (Some(p), ProcExeInoCtime) => p.exe_ctime,
                    (Some(p), _) => p.exe_mtime,
                    (Option::None, _) => 0,
                };
                if secs <= 0 {
                    return false;
                }
                out(Value::Uint(secs as u64 * NS));
                true
            }
            ProcExeInoCtimeDurationProcStart => match p {
                // How long after the exe was last changed the process started: small values
                // mean a binary written and run right away.
                Some(p) if p.exe_ctime > 0 && p.start_ns > 0 => {
                    out(Value::Uint(
                        p.start_ns.saturating_sub(p.exe_ctime as u64 * NS),
                    ));
                    true
                }
                _ => false,
            },
            ProcFdOpenCount => emit(out, p.map(|p| Value::Uint(p.fds.len() as u64))),
            ProcStdType(n) | ProcStdName(n) => {
                let Some(info) = p.and_then(|p| p.fds.get(n)) else {
                    return false;
                };
                out(Value::Str(if matches!(fx, ProcStdType(_)) {
                    info.kind.type_name()
                } else {
                    &info.name
                }));
                true
            }
            ProcIsHealthcheck => {
                out(Value::Bool(false));
                true
            }
            ThreadTid => {
                out(Value::Int(i64::from(ev.tid)));
                true
            }
            ThreadVtid => {
                out(Value::Int(i64::from(ev.tid)));
                true
            }
            ThreadIsMain => {
                out(Value::Bool(ev.tid == ev.pid));
                true
            }
            CapEffective | CapPermitted | CapInheritable => {
                let Some(p) = p else { return false };
                let mask = match fx {
                    CapEffective => p.cap_effective,
                    CapPermitted => p.cap_permitted,
                    _ => p.cap_inheritable,
                };
                self.text(out, |s| flags::capabilities(mask, s));
                true
            }
            UserUid => emit(out, p.map(|p| Value::Uint(u64::from(p.euid)))),
            UserName => match p.and_then(|p| self.users.user_name(p.euid)) {
                Some(n) => {
                    out(Value::Str(n));
                    true
                }
                Option::None => false,
            },
            UserHomedir => match p.and_then(|p| self.users.home_dir(p.euid)) {
                Some(n) => {
                    out(Value::Str(n));
                    true
                }
                Option::None => false,
            },
            UserLoginuid => match p {
                // Falco shows an unset loginuid as -1.
                Some(p) => {
                    out(Value::Int(if p.loginuid == NO_LOGINUID {
                        -1
                    } else {
                        i64::from(p.loginuid)
                    }));
                    true
                }
                Option::None => false,
            },
            UserLoginname => match p
                .filter(|p| p.loginuid != NO_LOGINUID)
                .and_then(|p| self.users.user_name(p.loginuid))
            {
                Some(n) => {
                    out(Value::Str(n));
                    true
                }
                Option::None => false,
            },
            GroupGid => emit(out, p.map(|p| Value::Uint(u64::from(p.egid)))),
            GroupName => match p.and_then(|p| self.users.group_name(p.egid)) {
                Some(n) => {
                    out(Value::Str(n));
                    true
                }
                Option::None => false,
            },
            FdNum => emit(out, self.fd_num.map(Value::Int)),
            FdName => fd_str!(|f: &'a FdInfo| Some(f.name.as_str()).filter(|s| !s.is_empty())),
            FdNameRaw => {
                fd_str!(|f: &'a FdInfo| Some(f.raw_name()).filter(|s| !s.is_empty()))
            }
            FdDirectory => fd_str!(|f: &'a FdInfo| f.directory()),
            FdFilename => fd_str!(|f: &'a FdInfo| f.filename()),
            FdType => fd_str!(|f: &'a FdInfo| Some(f.kind.type_name())),
            FdTypechar => fd_str!(|f: &'a FdInfo| Some(f.kind.type_char())),
            FdTypes => {
                let Some(p) = p else { return false };
                match field.arg {
                    FieldArg::Index(n) => match p.fds.get(n as i32) {
                        Some(info) => out(Value::Str(info.kind.type_name())),
                        Option::None => return false,
                    },
                    _ => {
                        let mut kinds: Vec<FdKind> = p.fds.iter().map(|(_, f)| f.kind).collect();
                        kinds.sort_by_key(|k| k.type_name());
                        kinds.dedup();
                        for k in kinds {
                            out(Value::Str(k.type_name()));
                        }
                    }
                }
                true
            }
            FdL4proto => fd_str!(|f: &'a FdInfo| f.kind.is_ip_socket().then(|| f.l4proto.as_str())),
            FdSockfamily => fd_str!(|f: &'a FdInfo| match f.kind {
                FdKind::Ipv4 | FdKind::Ipv6 => Some("ip"),
                FdKind::Unix => Some("unix"),
                _ => Option::None,
            }),
            FdIsServer | FdConnected | FdNameChanged | FdIsUpperLayer => match f {
                Some(f) => {
                    out(Value::Bool(match fx {
                        FdIsServer => f.is_server,
                        FdConnected => f.connected,
                        FdIsUpperLayer => f.upper_layer,
                        _ => false,
                    }));
                    true
                }
                Option::None => false,
            },
            FdIp | FdNet => {
                let (Some(c), Some(s)) = (self.fd_addr(client), self.fd_addr(server)) else {
                    return self.ip_field(server, out);
                };
                out(Value::Ip(c.ip()));
                out(Value::Ip(s.ip()));
                true
            }
            FdCip | FdCnet => self.ip_field(client, out),
            FdSip | FdSnet => self.ip_field(server, out),
            FdLip | FdLnet => self.ip_field(local, out),
            FdRip | FdRnet => self.ip_field(remote, out),
            FdPort => {
                let (Some(c), Some(s)) = (self.fd_addr(client), self.fd_addr(server)) else {
                    return self.port_field(server, out);
                };
                out(Value::Uint(u64::from(c.port())));
                out(Value::Uint(u64::from(s.port())));
                true
            }
            FdCport => self.port_field(client, out),
            FdSport => self.port_field(server, out),
            FdLport => self.port_field(local, out),
            FdRport => self.port_field(remote, out),
            FsPathName => self.fs_path(false, false, out),
            FsPathNameRaw => self.fs_path(false, true, out),
            FsPathSource => {
                // Only two-path operations have a source.
                if args::fs_paths(ev.name).1.is_none() {
                    return false;
                }
                self.fs_path(false, false, out)
            }
            FsPathSourceRaw => {
                if args::fs_paths(ev.name).1.is_none() {
                    return false;
                }
                self.fs_path(false, true, out)
            }
            FsPathTarget => self.fs_path(true, false, out),
            FsPathTargetRaw => self.fs_path(true, true, out),
            ContainerId => match p {
                Some(p) => {
                    out(Value::Str(&p.container_id));
                    true
                }
                Option::None => {
                    out(Value::Str(HOST_ID));
                    true
                }
            },
            ContainerName | ContainerType if p.is_some_and(|p| !p.in_container()) => {
                out(Value::Str(HOST_ID));
                true
            }
            ContainerFullId if p.is_some_and(|p| !p.in_container()) => {
                out(Value::Str(HOST_ID));
                true
            }
            _ => {
                // Everything else comes from the runtime; absent (<NA>) until it answers,
                // and for host processes.
                let Some(c) = p.and_then(|p| self.containers.get(&p.container_id)) else {
                    return false;
                };
                self.container_field(fx, c, field.arg, out)
            }
        }
    }
}

impl EventCtx<'_> {
    /// A runtime-provided `container.*` / `k8s.*` field of container `c`.
    fn container_field(
        &self,
        fx: Fx,
        c: &ContainerInfo,
        arg: FieldArg<'_>,
        out: &mut dyn FnMut(Value<'_>),
    ) -> bool {
        use Fx::*;
        let text = |v: &str, out: &mut dyn FnMut(Value<'_>)| {
            if v.is_empty() {
                return false;
            }
            out(Value::Str(v));
            true
        };
        let pod = |f: fn(&PodInfo) -> &str, out: &mut dyn FnMut(Value<'_>)| match &c.pod {
            Some(p) => text(f(p), out),
            None => false,
        };
        match fx {
            ContainerName => text(&c.name, out),
            ContainerType => text(c.runtime, out),
            ContainerFullId => text(&c.full_id, out),
            ContainerImage => text(&c.image, out),
            ContainerImageRepository => text(&c.image_repository, out),
            ContainerImageTag => text(&c.image_tag, out),
            ContainerImageDigest => text(&c.image_digest, out),
            ContainerImageId => text(&c.image_id, out),
            ContainerPrivileged => {
                out(Value::Bool(c.privileged));
                true
            }
            ContainerMounts => {
                out(Value::Str(&c.mounts_text));
                true
            }
            ContainerMount(part) => {
                let key = match arg {
                    FieldArg::Index(i) => MountKey::Index(i as usize),
                    FieldArg::Key(k) => match k.parse::<usize>() {
                        Ok(i) => MountKey::Index(i),
                        Err(_) => MountKey::Source(k),
                    },
                    FieldArg::None => return false,
                };
                let Some(m) = c.mount_by(key) else {
                    // Known container, no such mount: Falco's "N/A" (the upstream
                    // `sensitive_mount` macro tests `in ("<NA>","N/A")`).
                    out(Value::Str("N/A"));
                    return true;
                };
                match part {
                    MountPart::All => self.text(out, |s| {
                        let _ = write!(
                            s,
                            "{}:{}:{}:{}:{}",
                            m.source, m.dest, m.mode, m.rdwr, m.propagation
                        );
                    }),
                    MountPart::Source => out(Value::Str(&m.source)),
                    MountPart::Dest => out(Value::Str(&m.dest)),
                    MountPart::Mode => out(Value::Str(&m.mode)),
                    MountPart::Rdwr => out(Value::Str(if m.rdwr { "true" } else { "false" })),
                    MountPart::Propagation => out(Value::Str(&m.propagation)),
                }
                true
            }
            ContainerStartTs if c.start_ts > 0 => {
                out(Value::Uint(c.start_ts));
                true
            }
            ContainerDuration if c.start_ts > 0 => {
                out(Value::Uint(self.ev.ts_ns.saturating_sub(c.start_ts)));
                true
            }
            K8sPodName => pod(|p| &p.name, out),
            K8sNsName => pod(|p| &p.namespace, out),
            K8sPodUid => pod(|p| &p.uid, out),
            K8sPodSandboxId => pod(|p| p.sandbox_id.get(..12).unwrap_or(&p.sandbox_id), out),
            K8sPodFullSandboxId => pod(|p| &p.sandbox_id, out),
            K8sPodLabels => pod(|p| &p.labels_text, out),
            K8sPodIp => pod(|p| &p.ip, out),
            K8sPodLabel => match (&c.pod, arg) {
                (Some(p), FieldArg::Key(k)) => match p.label(k) {
                    Some(v) => {
                        out(Value::Str(v));
                        true
                    }
                    None => false,
                },
                _ => false,
            },
            _ => false,
        }
    }
}

/// An IP address's text, for callers that need it outside extraction.
pub fn ip_text(ip: IpAddr) -> String {
    ip.to_string()
}

/// Hand `value` to the engine if the field could be extracted; `false` means "cannot extract".
fn emit(out: &mut dyn FnMut(Value<'_>), value: Option<Value<'_>>) -> bool {
    match value {
        Some(v) => {
            out(v);
            true
        }
        None => false,
    }
}
