//! Field registries: what each event source can extract, with types and argument forms.
//!
//! The engine hard-codes no field. A source registers a [`FieldRegistry`]; conditions and
//! outputs are checked against it at load time, and every compiled field reference carries
//! the [`FieldId`] (the index in the registry) so an extractor can dispatch with a table.

mod k8s_audit;
mod syscall;

use std::fmt;

/// The type of a field's values, after Falco's `ppm_param_type`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// Text (`PT_CHARBUF`).
    String,
    /// A filesystem path (`PT_FSPATH`); compares like text.
    Path,
    Int8,
    Int16,
    Int32,
    Int64,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Bool,
    Double,
    /// An IPv4 or IPv6 address.
    IpAddr,
    /// An IPv4 or IPv6 network (`10.0.0.0/8`).
    IpNet,
    /// A TCP/UDP port.
    Port,
    /// A duration in nanoseconds.
    RelTime,
    /// A point in time, nanoseconds since the epoch.
    AbsTime,
    /// Raw bytes.
    Bytes,
    /// The type depends on the argument (`evt.rawarg.*`); compared as text or number.
    Dyn,
}

impl FieldType {
    /// Whether values of this type compare numerically.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            FieldType::Int8
                | FieldType::Int16
                | FieldType::Int32
                | FieldType::Int64
                | FieldType::Uint8
                | FieldType::Uint16
                | FieldType::Uint32
                | FieldType::Uint64
                | FieldType::Double
                | FieldType::Port
                | FieldType::RelTime
                | FieldType::AbsTime
        )
    }

    /// Whether values of this type compare as text.
    pub fn is_text(self) -> bool {
        matches!(
            self,
            FieldType::String | FieldType::Path | FieldType::Bytes | FieldType::Dyn
        )
    }

    /// The name `list-fields` prints (Falco's spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::String => "CHARBUF",
            FieldType::Path => "FSPATH",
            FieldType::Int8 => "INT8",
            FieldType::Int16 => "INT16",
            FieldType::Int32 => "INT32",
            FieldType::Int64 => "INT64",
            FieldType::Uint8 => "UINT8",
            FieldType::Uint16 => "UINT16",
            FieldType::Uint32 => "UINT32",
            FieldType::Uint64 => "UINT64",
            FieldType::Bool => "BOOL",
            FieldType::Double => "DOUBLE",
            FieldType::IpAddr => "IPADDR",
            FieldType::IpNet => "IPNET",
            FieldType::Port => "PORT",
            FieldType::RelTime => "RELTIME",
            FieldType::AbsTime => "ABSTIME",
            FieldType::Bytes => "BYTEBUF",
            FieldType::Dyn => "DYNAMIC",
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a field takes an argument: `proc.aname[2]`, `evt.arg.flags`, `jevt.value[/a/b]`.
///
/// Arguments are written `[ARG]` or, for names, `.ARG`. A numeric argument becomes
/// [`FieldArg::Index`], anything else [`FieldArg::Key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArgKind {
    /// No argument.
    None,
    /// An argument may be given (`proc.aname` or `proc.aname[2]`).
    Optional,
    /// An argument must be given (`evt.arg.fd`, `ka.uri.param[key]`).
    Required,
}

/// One field a source can extract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldInfo {
    pub name: &'static str,
    pub ty: FieldType,
    pub arg: ArgKind,
    /// Multi-valued: the extractor may produce several values (`ka.req.pod.containers.image`).
    pub is_list: bool,
    pub desc: &'static str,
}

impl FieldInfo {
    pub const fn new(
        name: &'static str,
        ty: FieldType,
        arg: ArgKind,
        is_list: bool,
        desc: &'static str,
    ) -> Self {
        FieldInfo {
            name,
            ty,
            arg,
            is_list,
            desc,
        }
    }
}

/// Index of a field in its source's registry (`registry.fields()[id.0]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldId(pub u16);

/// The argument of one field reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldArg<'a> {
    None,
    /// `proc.aname[2]`, `evt.arg[0]`.
    Index(u64),
    /// `evt.arg.flags`, `k8s.pod.label[app]`, `jevt.value[/a/b]`.
    Key(&'a str),
}

/// A compiled reference to a field: what [`crate::Event::extract`] is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldRef<'a> {
    pub id: FieldId,
    pub info: &'static FieldInfo,
    pub arg: FieldArg<'a>,
}

impl FieldRef<'_> {
    /// The field's name, without its argument.
    pub fn name(&self) -> &'static str {
        self.info.name
    }
}

impl fmt::Display for FieldRef<'_> {
    /// The canonical spelling: `proc.aname[2]`, `evt.arg[flags]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.arg {
            FieldArg::None => f.write_str(self.info.name),
            FieldArg::Index(i) => write!(f, "{}[{}]", self.info.name, i),
            FieldArg::Key(k) => write!(f, "{}[{}]", self.info.name, k),
        }
    }
}

/// The fields of one event source.
#[derive(Debug)]
pub struct FieldRegistry {
    source: &'static str,
    fields: &'static [FieldInfo],
}

/// Why a field name could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("unknown field {0:?}")]
    Unknown(String),
    #[error("field {0:?} requires an argument")]
    MissingArg(String),
    #[error("field {0:?} takes no argument")]
    UnexpectedArg(String),
}

impl FieldRegistry {
    pub const fn new(source: &'static str, fields: &'static [FieldInfo]) -> Self {
        FieldRegistry { source, fields }
    }

    /// The event source these fields belong to (`syscall`, `k8s_audit`).
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// Every field, in registry order; a field's [`FieldId`] is its position here.
    pub fn fields(&self) -> &'static [FieldInfo] {
        self.fields
    }

    /// The field with exactly this name.
    pub fn get(&self, name: &str) -> Option<(FieldId, &'static FieldInfo)> {
        self.fields
            .iter()
            .position(|f| f.name == name)
            .map(|i| (FieldId(i as u16), &self.fields[i]))
    }

    /// Resolve a field as written in a condition, without a bracket argument:
    /// `fd.name`, or `evt.arg.flags` (a field that takes an argument, followed by `.KEY`).
    /// Returns the field and the dotted key, if any.
    pub fn resolve<'n>(
        &self,
        name: &'n str,
    ) -> Option<(FieldId, &'static FieldInfo, Option<&'n str>)> {
        if let Some((id, info)) = self.get(name) {
            return Some((id, info, None));
        }
        // Longest registered prefix that accepts an argument: `k8s.pod.label.app.kubernetes.io/name`.
        let mut best: Option<(FieldId, &'static FieldInfo)> = None;
        for (i, f) in self.fields.iter().enumerate() {
            if f.arg != ArgKind::None
                && name.len() > f.name.len() + 1
                && name.starts_with(f.name)
                && name.as_bytes()[f.name.len()] == b'.'
                && best.is_none_or(|(_, b)| b.name.len() < f.name.len())
            {
                best = Some((FieldId(i as u16), f));
            }
        }
        best.map(|(id, info)| (id, info, Some(&name[info.name.len() + 1..])))
    }
}

static SYSCALL_REGISTRY: FieldRegistry = FieldRegistry::new("syscall", syscall::SYSCALL);
static K8S_AUDIT_REGISTRY: FieldRegistry = FieldRegistry::new("k8s_audit", k8s_audit::K8S_AUDIT);

/// The `syscall` source: Falco's libsinsp fields (`evt.*`, `proc.*`, `thread.*`, `user.*`,
/// `group.*`, `fd.*`, `fdlist.*`, `fs.path.*`) and the container plugin's
/// (`container.*`, `k8s.pod.*`, `k8s.ns.name`).
pub fn syscall_fields() -> &'static FieldRegistry {
    &SYSCALL_REGISTRY
}

/// The `k8s_audit` source: the k8saudit plugin's `ka.*` fields, the json plugin's `jevt.*`
/// and the generic `evt.*` fields every plugin source has.
pub fn k8s_audit_fields() -> &'static FieldRegistry {
    &K8S_AUDIT_REGISTRY
}

/// Both built-in registries.
pub fn builtin_registries() -> [&'static FieldRegistry; 2] {
    [syscall_fields(), k8s_audit_fields()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_have_the_fields_falco_rules_use() {
        let s = syscall_fields();
        for name in [
            "proc.name",
            "proc.aname",
            "fd.name",
            "evt.type",
            "container.id",
            "k8s.ns.name",
            "user.name",
            "fs.path.name",
        ] {
            assert!(s.get(name).is_some(), "{name}");
        }
        let k = k8s_audit_fields();
        for name in [
            "ka.verb",
            "ka.req.pod.containers.image",
            "jevt.value",
            "ka.uri.param",
        ] {
            assert!(k.get(name).is_some(), "{name}");
        }
        assert!(k.get("proc.name").is_none());
        let (_, info) = s.get("proc.pid").unwrap();
        assert!(info.ty.is_numeric());
    }

    #[test]
    fn field_names_are_unique_and_ids_fit() {
        for r in builtin_registries() {
            let mut names: Vec<_> = r.fields().iter().map(|f| f.name).collect();
            let n = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), n, "{}", r.source());
            assert!(n < u16::MAX as usize);
        }
    }

    #[test]
    fn dotted_arguments_resolve_to_the_longest_prefix() {
        let s = syscall_fields();
        let (_, info, key) = s.resolve("evt.arg.flags").unwrap();
        assert_eq!((info.name, key), ("evt.arg", Some("flags")));
        let (_, info, key) = s.resolve("k8s.pod.label.app.kubernetes.io/name").unwrap();
        assert_eq!(
            (info.name, key),
            ("k8s.pod.label", Some("app.kubernetes.io/name"))
        );
        assert!(s.resolve("proc.nmae").is_none());
        // A field without arguments is not a prefix.
        assert!(s.resolve("proc.name.x").is_none());
    }
}
