//! Event → state → rules → alerts, independent of where events come from (kernel ring
//! buffers, or synthetic events in tests).

use std::path::PathBuf;

use aerie_alert::Alert;
use aerie_rules::{
    Engine, EngineConfig, Event as _, FieldArg, FieldRef, Matches, RuleLoader, Value,
    syscall_fields,
};

use crate::container::ContainerDb;
use crate::fields::{EventCtx, SysEvent};
use crate::state::apply::Tracker;
use crate::state::table::{ExecInfo, ProcessTable};
use crate::state::users::UserDb;

/// Loading rule files failed; the text lists every error with file and position.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RulesError(pub String);

/// Load and compile rule files in order; any read or compile error fails, with every error
/// listed (file and position).
pub fn load_rules(paths: &[PathBuf], cfg: &EngineConfig) -> Result<Engine, RulesError> {
    let mut loader = RuleLoader::new();
    for p in paths {
        if !p.exists() {
            return Err(RulesError(format!("rules file {} not found", p.display())));
        }
        loader.load_file(p);
    }
    // Compile even when reading failed, so that one report lists every error; a rule that
    // does not compile is an error too (the engine would silently leave it out).
    let engine = loader.compile(cfg);
    if loader.has_errors() {
        let mut text = String::from("rule files have errors:");
        for r in loader.results() {
            for e in &r.errors {
                text.push_str(&format!("\n  {e}"));
            }
        }
        return Err(RulesError(text));
    }
    for r in loader.results() {
        for w in &r.warnings {
            tracing::debug!("rules warning: {w}");
        }
    }
    Ok(engine)
}

/// The single-threaded heart of the detector.
pub struct Pipeline {
    pub tracker: Tracker,
    pub users: UserDb,
    pub engine: Engine,
    pub hostname: String,
    /// Runtime metadata of containers, filled by the run loop's lookups.
    pub containers: ContainerDb,
    /// Container ids seen for the first time, waiting for a runtime lookup.
    pub new_containers: Vec<String>,
    matches: Matches,
    num: u64,
    scratch: std::cell::RefCell<String>,
}

impl Pipeline {
    pub fn new(table: ProcessTable, users: UserDb, engine: Engine, hostname: String) -> Self {
        Pipeline {
            tracker: Tracker::new(table),
            users,
            engine,
            hostname,
            containers: ContainerDb::default(),
            new_containers: Vec::new(),
            matches: Matches::new(),
            num: 0,
            scratch: std::cell::RefCell::new(String::with_capacity(256)),
        }
    }

    /// A new process (thread group) `child` forked from `parent`.
    pub fn on_fork(&mut self, parent: u32, child: u32, start_ns: u64) {
        self.tracker.table.on_fork(parent, child, start_ns);
    }

    /// A successful exec replaced `pid`'s image.
    pub fn on_exec(&mut self, pid: u32, ppid: u32, exec: &ExecInfo<'_>) {
        self.tracker.table.on_exec(pid, ppid, exec);
        if let Some(id) = exec.container_id {
            self.containers.count(id);
            if self.containers.should_ask(id) {
                self.new_containers.push(id.to_owned());
            }
        }
    }

    /// The thread group `pid` ended.
    pub fn on_exit(&mut self, pid: u32) {
        self.tracker.table.on_exit(pid);
    }

    /// Apply a syscall exit to the state and evaluate the rules; every match is passed to
    /// `emit` as a Falco alert. Returns the number of matches.
    pub fn on_syscall(&mut self, ev: &SysEvent<'_>, emit: &mut dyn FnMut(Alert)) -> usize {
        self.num += 1;
        let evfd = self.tracker.before(ev);
        // A failed exec changed nothing; Falco's process rules describe new images.
        let skip = matches!(ev.name, "execve" | "execveat") && ev.res < 0;
        let mut n = 0;
        if !skip {
            let numbered = SysEvent {
                num: if ev.num == 0 { self.num } else { ev.num },
                ..*ev
            };
            let ctx = EventCtx::new(
                &numbered,
                &self.tracker.table,
                &self.tracker.transient,
                evfd,
                &self.users,
                &self.containers,
                &self.hostname,
                &self.scratch,
            );
            n = self.engine.evaluate(&ctx, &mut self.matches);
            for id in self.matches.iter() {
                let mut alert = self.engine.alert(id, &ctx, &self.hostname);
                add_container_fields(&ctx, &mut alert);
                emit(alert);
            }
        }
        self.tracker.after(ev);
        n
    }
}

/// Fields every alert from a container carries in `output_fields`, whatever its rule's
/// output names: what Falco's container plugin suggests for `append_output`, so an on-call
/// engineer sees which pod, namespace and image. Host processes get none of them.
pub const CONTAINER_OUTPUT_FIELDS: &[&str] = &[
    "container.id",
    "container.name",
    "container.image.repository",
    "container.image.tag",
    "k8s.ns.name",
    "k8s.pod.name",
];

/// Add [`CONTAINER_OUTPUT_FIELDS`] the rule's output did not name (null when unknown, as
/// Falco writes `<NA>` values). Runs per alert, not per event.
fn add_container_fields(ctx: &EventCtx<'_>, alert: &mut Alert) {
    if !ctx.proc.is_some_and(|p| p.in_container()) {
        return;
    }
    for name in CONTAINER_OUTPUT_FIELDS {
        if alert.output_fields.contains_key(*name) {
            continue;
        }
        let Some((id, info)) = syscall_fields().get(name) else {
            continue;
        };
        let mut value = serde_json::Value::Null;
        ctx.extract(
            &FieldRef {
                id,
                info,
                arg: FieldArg::None,
            },
            &mut |v| {
                value = match v {
                    Value::Str(s) => s.into(),
                    Value::Bytes(b) => String::from_utf8_lossy(b).into_owned().into(),
                    Value::Bool(b) => b.into(),
                    other => format!("{other:?}").into(),
                }
            },
        );
        alert.output_fields.insert((*name).to_owned(), value);
    }
}
