//! A minimal reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`): just enough to find
//! struct member offsets and sizes at load time, since Rust eBPF has no CO-RE relocations.
//!
//! Why in-tree: aya-obj parses BTF but keeps type navigation crate-private, and `btf-rs`
//! is LGPL-2.1, awkward for a statically linked Apache-2.0 binary. The format is small and
//! stable (<https://docs.kernel.org/bpf/btf.html>).

use std::{collections::HashMap, path::Path};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BtfError {
    #[error("reading BTF from {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
}

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone)]
struct Member {
    name: u32,
    ty: u32,
    bit_offset: u32,
}

#[derive(Debug, Clone)]
struct Type {
    name: u32,
    kind: u32,
    /// size for INT/STRUCT/UNION/ENUM, referenced type for PTR/TYPEDEF/modifiers.
    size_or_type: u32,
    members: Vec<Member>,
    /// FUNC_PROTO parameter count.
    vlen: u32,
}

/// Parsed type and string sections.
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    structs_by_name: HashMap<String, u32>,
    typedefs_by_name: HashMap<String, u32>,
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, BtfError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(BtfError::Malformed("truncated type section"))
}

impl Btf {
    /// The running kernel's BTF.
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(Path::new("/sys/kernel/btf/vmlinux"))
    }

    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&data)
    }

    /// Parse raw little-endian BTF.
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        if data.len() < 24 || data[0..2] != [0x9f, 0xeb] {
            return Err(BtfError::Malformed("bad magic (not little-endian BTF)"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let tsec = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(BtfError::Malformed("type section out of bounds"))?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Malformed("string section out of bounds"))?
            .to_vec();
        // Type id 0 is void.
        let mut types = vec![Type {
            name: 0,
            kind: 0,
            size_or_type: 0,
            members: vec![],
            vlen: 0,
        }];
        let mut at = 0;
        while at < tsec.len() {
            let name = u32_at(tsec, at)?;
            let info = u32_at(tsec, at + 4)?;
            let size_or_type = u32_at(tsec, at + 8)?;
            at += 12;
            let vlen = info & 0xffff;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => at += 4,
                KIND_ARRAY => at += 12,
                KIND_STRUCT | KIND_UNION => {
                    for _ in 0..vlen {
                        let off = u32_at(tsec, at + 8)?;
                        members.push(Member {
                            name: u32_at(tsec, at)?,
                            ty: u32_at(tsec, at + 4)?,
                            bit_offset: if kind_flag { off & 0x00ff_ffff } else { off },
                        });
                        at += 12;
                    }
                }
                KIND_ENUM | KIND_FUNC_PROTO => at += 8 * vlen as usize,
                KIND_DATASEC | KIND_ENUM64 => at += 12 * vlen as usize,
                _ => {}
            }
            types.push(Type {
                name,
                kind,
                size_or_type,
                members,
                vlen,
            });
        }
        let mut btf = Btf {
            types,
            strings,
            structs_by_name: HashMap::new(),
            typedefs_by_name: HashMap::new(),
        };
        for (id, t) in btf.types.iter().enumerate() {
            let name = btf.str_at(t.name);
            if name.is_empty() {
                continue;
            }
            match t.kind {
                KIND_STRUCT | KIND_UNION => {
                    btf.structs_by_name
                        .entry(name.to_string())
                        .or_insert(id as u32);
                }
                KIND_TYPEDEF => {
                    btf.typedefs_by_name
                        .entry(name.to_string())
                        .or_insert(id as u32);
                }
                _ => {}
            }
        }
        Ok(btf)
    }

    fn str_at(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or(&[]);
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    fn ty(&self, id: u32) -> Option<&Type> {
        self.types.get(id as usize)
    }

    /// Follow typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Option<u32> {
        for _ in 0..32 {
            let t = self.ty(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Some(id),
            }
        }
        None
    }

    /// `sizeof(struct name)`.
    pub fn struct_size(&self, name: &str) -> Option<u32> {
        let id = *self.structs_by_name.get(name)?;
        Some(self.ty(id)?.size_or_type)
    }

    /// Byte offset of a member path like `"f_path.dentry"` inside `struct name`, looking
    /// through anonymous structs and unions. `None` when absent or a bitfield.
    pub fn member_offset(&self, name: &str, path: &str) -> Option<u32> {
        let mut id = *self.structs_by_name.get(name)?;
        let mut total_bits = 0u32;
        for part in path.split('.') {
            let (bits, member_ty) = self.find_member(id, part, 0)?;
            total_bits += bits;
            id = self.resolve(member_ty)?;
        }
        total_bits.is_multiple_of(8).then_some(total_bits / 8)
    }

    /// First of `names` present in `struct name` (members renamed across kernels).
    pub fn member_offset_any(&self, name: &str, names: &[&str]) -> Option<u32> {
        names.iter().find_map(|n| self.member_offset(name, n))
    }

    fn find_member(&self, struct_id: u32, member: &str, depth: u32) -> Option<(u32, u32)> {
        if depth > 8 {
            return None;
        }
        let t = self.ty(self.resolve(struct_id)?)?;
        if t.kind != KIND_STRUCT && t.kind != KIND_UNION {
            return None;
        }
        for m in &t.members {
            let mname = self.str_at(m.name);
            if mname == member {
                return Some((m.bit_offset, m.ty));
            }
            if mname.is_empty()
                && let Some((bits, ty)) = self.find_member(m.ty, member, depth + 1)
            {
                return Some((m.bit_offset + bits, ty));
            }
        }
        None
    }

    /// Number of parameters of the tracepoint `name` (from `btf_trace_<name>`, whose first
    /// parameter is the hidden `void *` context, not counted here).
    pub fn tracepoint_arg_count(&self, name: &str) -> Option<u32> {
        let td = *self.typedefs_by_name.get(&format!("btf_trace_{name}"))?;
        let ptr = self.resolve(td)?;
        let ptr_t = self.ty(ptr)?;
        if ptr_t.kind != KIND_PTR {
            return None;
        }
        let proto = self.ty(self.resolve(ptr_t.size_or_type)?)?;
        (proto.kind == KIND_FUNC_PROTO).then(|| proto.vlen.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_garbage_with_an_error() {
        assert!(matches!(
            Btf::parse(b"not btf at all, definitely not"),
            Err(BtfError::Malformed(_))
        ));
        assert!(matches!(Btf::parse(&[]), Err(BtfError::Malformed(_))));
    }

    #[test]
    fn reads_offsets_from_the_running_kernel() {
        let Ok(btf) = Btf::from_sys_fs() else {
            eprintln!("no /sys/kernel/btf/vmlinux: skipping");
            return;
        };
        // task_struct layout varies by config, but these facts hold on every kernel.
        let pid = btf
            .member_offset("task_struct", "pid")
            .expect("task_struct.pid");
        let tgid = btf
            .member_offset("task_struct", "tgid")
            .expect("task_struct.tgid");
        assert_eq!(tgid, pid + 4, "tgid follows pid");
        // struct path { struct vfsmount *mnt; struct dentry *dentry; }
        let f_path = btf.member_offset("file", "f_path").expect("file.f_path");
        assert_eq!(btf.member_offset("file", "f_path.dentry"), Some(f_path + 8));
        // qstr.name sits after the 8-byte hash_len union (found through the anonymous union)
        assert_eq!(btf.member_offset("qstr", "name"), Some(8));
        assert_eq!(btf.member_offset("qstr", "len"), Some(4));
        assert!(btf.struct_size("inode").is_some_and(|s| s > 100));
        assert_eq!(btf.member_offset("task_struct", "no_such_member"), None);
        assert_eq!(btf.tracepoint_arg_count("sched_process_fork"), Some(2));
    }
}
