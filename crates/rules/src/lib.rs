//! Falco-compatible rule language: load Falco rule files unmodified, compile and evaluate them.
//!
//! # What an event source implements
//!
//! The engine knows no field by itself. Each event source has a [`FieldRegistry`]
//! ([`syscall_fields`], [`k8s_audit_fields`]) and its events implement [`Event`]:
//!
//! - [`Event::source`] names the source; only that source's rules are evaluated.
//! - [`Event::event_type`] (`"openat"`, `"execve"`) selects the rules indexed under that type.
//! - [`Event::extract`] is called with a compiled [`FieldRef`]: the field's [`FieldId`] (its
//!   index in the registry, so an extractor can dispatch through a table built once), its
//!   static [`FieldInfo`], and its argument ([`FieldArg::Index`] for `proc.aname[2]`,
//!   [`FieldArg::Key`] for `evt.arg.flags` or `jevt.value[/a/b]`). It calls `out` once per
//!   value and returns `true`, or returns `false` when the field cannot be extracted.
//!   Values ([`Value`]) are borrowed only for the call: no allocation is needed.
//!
//! ```
//! use aerie_rules::{Event, FieldArg, FieldId, FieldRef, Value, syscall_fields};
//!
//! struct OpenEvent<'a> { comm: &'a str, path: &'a str, pid: i64 }
//!
//! impl Event for OpenEvent<'_> {
//!     fn source(&self) -> &str { "syscall" }
//!     fn event_type(&self) -> Option<&str> { Some("openat") }
//!     fn extract(&self, field: &FieldRef<'_>, out: &mut dyn FnMut(Value<'_>)) -> bool {
//!         // A real extractor maps field.id through a table built from syscall_fields().
//!         match (field.name(), field.arg) {
//!             ("proc.name", FieldArg::None) => out(Value::Str(self.comm)),
//!             ("fd.name", FieldArg::None) => out(Value::Str(self.path)),
//!             ("proc.pid", FieldArg::None) => out(Value::Int(self.pid)),
//!             _ => return false, // not extractable: comparisons with it are false
//!         }
//!         true
//!     }
//! }
//!
//! let (id, info) = syscall_fields().get("fd.name").unwrap();
//! let ev = OpenEvent { comm: "cat", path: "/etc/shadow", pid: 7 };
//! let mut seen = None;
//! assert!(ev.extract(&FieldRef { id, info, arg: FieldArg::None }, &mut |v| seen = Some(v.to_string())));
//! assert_eq!(seen.as_deref(), Some("/etc/shadow"));
//! ```
//!
//! [`JsonEvent`] is a map-backed implementation for `replay`, `test-rules` and tests.
//!
//! # Loading, compiling, evaluating
//!
//! ```
//! use aerie_rules::{EngineConfig, JsonEvent, Matches, RuleLoader, RuleMatching};
//!
//! let mut loader = RuleLoader::new(); // the syscall and k8s_audit sources
//! loader.load_str("rules.yaml", r#"
//! - list: shells
//!   items: [bash, sh]
//! - rule: Shell spawned
//!   desc: a shell was started
//!   condition: evt.type = execve and proc.name in (shells)
//!   output: shell %proc.name (parent %proc.pname)
//!   priority: WARNING
//! "#);
//! // Files load in order; `compile` reports per-file errors and warnings in `results()`.
//! let engine = loader.compile(&EngineConfig { rule_matching: RuleMatching::All, ..Default::default() });
//! assert!(!loader.has_errors());
//! // The event types the enabled rules need (None: every type), for in-kernel filtering.
//! assert_eq!(engine.event_types("syscall").unwrap().into_iter().collect::<Vec<_>>(), ["execve"]);
//!
//! let ev = JsonEvent::parse(r#"{"fields":{"evt.type":"execve","proc.name":"bash"}}"#).unwrap();
//! let mut matches = Matches::new(); // reuse one per thread: it holds the scratch space
//! engine.evaluate(&ev, &mut matches);
//! let id = matches.iter().next().unwrap();
//! let alert = engine.alert(id, &ev, "node-1");
//! assert!(alert.output.ends_with("Warning shell bash (parent <NA>)"));
//! assert_eq!(alert.output_fields["proc.pname"], serde_json::Value::Null);
//! ```

pub mod condition;
mod diag;
mod engine;
mod event;
pub mod evttypes;
mod exceptions;
mod extras;
pub mod fields;
mod k8s_audit;
pub mod loader;
mod output;
mod position;
pub mod prefilter;
mod suggest;
mod value;
pub mod yaml;

pub use diag::{
    Context, ErrorCode, FileResult, ItemCounts, LoadError, LoadWarning, WarningCode,
    load_results_json,
};
pub use engine::{
    CompiledRule, Engine, EngineConfig, Matches, RuleId, RuleLoader, RuleMatching, Selection,
};
pub use extras::{AppendOutput, ExtraField, OutputExtras};
pub use output::{OutputError, OutputFormat};
pub use prefilter::{OpenPathFilter, OpenPathNeed};

pub use event::{Event, JsonEvent, JsonEventError};
pub use fields::{
    ArgKind, FieldArg, FieldError, FieldId, FieldInfo, FieldRef, FieldRegistry, FieldType,
    builtin_registries, k8s_audit_fields, syscall_fields,
};
pub use k8s_audit::{AuditPayloadError, K8S_AUDIT_SOURCE, K8sAuditEvent, parse_audit_payload};
pub use value::{IpNet, Value};
