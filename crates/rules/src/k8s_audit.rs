//! Kubernetes audit events (`audit.k8s.io/v1` `Event`) as the `k8s_audit` source: the `ka.*`
//! and `jevt.*` fields of Falco's k8saudit plugin, read straight from the event's JSON.
//!
//! Meanings follow the plugin: every value is text (numbers and booleans in their JSON
//! spelling, objects and arrays as JSON text); per-container fields take an optional index
//! argument (`ka.req.pod.containers.image[0]`); a value the event does not carry cannot be
//! extracted (comparisons with it are false, outputs print `<NA>`).
//!
//! [`parse_audit_payload`] accepts what the API server's webhook backend posts (an
//! `EventList`), a single `Event`, or audit log lines (one event per line).

use std::borrow::Cow;

use aerie_alert::Timestamp;
use serde_json::Value as Json;

use crate::event::Event;
use crate::fields::{FieldArg, FieldRef};
use crate::value::Value;

/// The event source name of Kubernetes audit rules.
pub const K8S_AUDIT_SOURCE: &str = "k8s_audit";

/// One Kubernetes audit event.
#[derive(Debug, Clone, PartialEq)]
pub struct K8sAuditEvent {
    json: Json,
    time: Option<Timestamp>,
}

/// A payload that holds no audit event we can read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{what}")]
pub struct AuditPayloadError {
    pub what: String,
}

fn payload_error(what: impl Into<String>) -> AuditPayloadError {
    AuditPayloadError { what: what.into() }
}

/// The events in a webhook body or audit log: `{"kind":"EventList","items":[...]}`, one
/// `{"kind":"Event",...}`, or newline-delimited events.
pub fn parse_audit_payload(body: &[u8]) -> Result<Vec<K8sAuditEvent>, AuditPayloadError> {
    let text = std::str::from_utf8(body).map_err(|e| payload_error(format!("not UTF-8: {e}")))?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(payload_error("empty body"));
    }
    match serde_json::from_str::<Json>(trimmed) {
        Ok(v) => events_of(v, None),
        // Not one JSON document: try audit log lines.
        Err(_) if trimmed.contains('\n') => {
            let mut out = Vec::new();
            for (i, line) in trimmed.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let v: Json = serde_json::from_str(line)
                    .map_err(|e| payload_error(format!("line {}: invalid JSON: {e}", i + 1)))?;
                out.extend(events_of(v, Some(i + 1))?);
            }
            Ok(out)
        }
        Err(e) => Err(payload_error(format!("invalid JSON: {e}"))),
    }
}

fn events_of(mut v: Json, line: Option<usize>) -> Result<Vec<K8sAuditEvent>, AuditPayloadError> {
    let at = |what: String| match line {
        Some(l) => payload_error(format!("line {l}: {what}")),
        None => payload_error(what),
    };
    if v.get("kind").and_then(Json::as_str) != Some("EventList") {
        return K8sAuditEvent::from_json(v)
            .map(|e| vec![e])
            .map_err(|e| at(e.what));
    }
    // Take the items out of the list: each event keeps its own JSON without a copy.
    let Some(Json::Array(items)) = v.get_mut("items").map(Json::take) else {
        return Err(at("an EventList needs an \"items\" array".into()));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            K8sAuditEvent::from_json(item).map_err(|e| at(format!("items[{i}]: {}", e.what)))
        })
        .collect()
}

impl K8sAuditEvent {
    /// One `Event` object. Its time is `stageTimestamp` (else `requestReceivedTimestamp`).
    pub fn from_json(json: Json) -> Result<Self, AuditPayloadError> {
        let Json::Object(obj) = &json else {
            return Err(payload_error("an audit event must be a JSON object"));
        };
        if let Some(kind) = obj.get("kind").and_then(Json::as_str)
            && kind != "Event"
        {
            return Err(payload_error(format!(
                "kind {kind:?}: expected Event or EventList"
            )));
        }
        if !obj.contains_key("verb") && !obj.contains_key("auditID") {
            return Err(payload_error(
                "not a Kubernetes audit event (no \"verb\" or \"auditID\")",
            ));
        }
        let time = ["stageTimestamp", "requestReceivedTimestamp"]
            .iter()
            .filter_map(|k| obj.get(*k).and_then(Json::as_str))
            .find_map(|t| Timestamp::parse(t).ok());
        Ok(K8sAuditEvent { json, time })
    }

    /// The event as received.
    pub fn json(&self) -> &Json {
        &self.json
    }

    fn at(&self, path: &[&str]) -> Option<&Json> {
        path.iter().try_fold(&self.json, |v, k| v.get(*k))
    }

    /// `requestObject.spec.<list>`, narrowed to one element by an index argument.
    fn spec_items(&self, list: &str, arg: FieldArg<'_>) -> Option<Vec<&Json>> {
        let items = self.at(&["requestObject", "spec", list])?.as_array()?;
        match index_filter(arg) {
            Some(i) => items.get(i).map(|v| vec![v]),
            None => Some(items.iter().collect()),
        }
    }

    fn extract_container_field(
        &self,
        list: &str,
        what: &str,
        arg: FieldArg<'_>,
        out: &mut dyn FnMut(Value<'_>),
    ) -> bool {
        let Some(containers) = self.spec_items(list, arg) else {
            return false;
        };
        match what {
            "name" => emit_each(containers.iter().filter_map(|c| c.get("name")), out),
            "image" => emit_each(containers.iter().filter_map(|c| c.get("image")), out),
            "image.repository" => {
                for c in &containers {
                    if let Some(image) = c.get("image").and_then(Json::as_str) {
                        out(Value::Str(image_repository(image)));
                    }
                }
            }
            "command" => emit_each(containers.iter().filter_map(|c| c.get("command")), out),
            "args" => emit_each(containers.iter().filter_map(|c| c.get("args")), out),
            "privileged" => emit_each(security(&containers, &["privileged"]), out),
            "allow_privilege_escalation" => {
                emit_each(security(&containers, &["allowPrivilegeEscalation"]), out)
            }
            "read_only_fs" => emit_each(security(&containers, &["readOnlyRootFilesystem"]), out),
            "run_as_user" => emit_each(security(&containers, &["runAsUser"]), out),
            "run_as_group" => emit_each(security(&containers, &["runAsGroup"]), out),
            "proc_mount" => emit_each(security(&containers, &["procMount"]), out),
            "eff_run_as_user" | "eff_run_as_group" => {
                let key = if what == "eff_run_as_user" {
                    "runAsUser"
                } else {
                    "runAsGroup"
                };
                // The container's own setting, else the pod's, else root (0).
                let pod = self.at(&["requestObject", "spec", "securityContext", key]);
                for c in &containers {
                    let v = c.get("securityContext").and_then(|s| s.get(key)).or(pod);
                    match v {
                        Some(v) => emit_text(v, out),
                        None => out(Value::Str("0")),
                    }
                }
            }
            "add_capabilities" => {
                for caps in security(&containers, &["capabilities", "add"]) {
                    if let Some(list) = caps.as_array() {
                        emit_each(list.iter(), out);
                    }
                }
            }
            "host_port" => {
                for c in &containers {
                    for port in c
                        .get("ports")
                        .and_then(Json::as_array)
                        .into_iter()
                        .flatten()
                    {
                        // With hostNetwork the container port is the host port.
                        if let Some(p) = port.get("hostPort").or_else(|| port.get("containerPort"))
                        {
                            emit_text(p, out);
                        }
                    }
                }
            }
            _ => return false,
        }
        true
    }

    fn extract_ka(&self, name: &str, arg: FieldArg<'_>, out: &mut dyn FnMut(Value<'_>)) -> bool {
        let path: &[&str] = match name {
            "ka.auditid" => &["auditID"],
            "ka.stage" => &["stage"],
            "ka.auth.decision" => &["annotations", "authorization.k8s.io/decision"],
            "ka.auth.reason" => &["annotations", "authorization.k8s.io/reason"],
            "ka.auth.openshift.decision" => {
                &["annotations", "authentication.openshift.io/decision"]
            }
            "ka.auth.openshift.username" => {
                &["annotations", "authentication.openshift.io/username"]
            }
            "ka.validations.admission.policy.failure" => &[
                "annotations",
                "validation.policy.admission.k8s.io/validation_failure",
            ],
            "ka.security.pod.violations" => {
                &["annotations", "pod-security.kubernetes.io/audit-violations"]
            }
            "ka.user.name" => &["user", "username"],
            "ka.user.groups" => &["user", "groups"],
            "ka.impuser.name" => &["impersonatedUser", "username"],
            "ka.verb" => &["verb"],
            "ka.uri" => &["requestURI"],
            "ka.target.name" | "ka.req.configmap.name" => &["objectRef", "name"],
            "ka.target.namespace" => &["objectRef", "namespace"],
            "ka.target.resource" => &["objectRef", "resource"],
            "ka.target.subresource" => &["objectRef", "subresource"],
            "ka.req.binding.subjects" => &["requestObject", "subjects"],
            "ka.req.binding.role" => &["requestObject", "roleRef", "name"],
            "ka.req.configmap.obj" => &["requestObject", "data"],
            "ka.req.pod.host_ipc" => &["requestObject", "spec", "hostIPC"],
            "ka.req.pod.host_network" | "ka.req.container.host_network" => {
                &["requestObject", "spec", "hostNetwork"]
            }
            "ka.req.pod.host_pid" => &["requestObject", "spec", "hostPID"],
            "ka.req.pod.run_as_user" => &["requestObject", "spec", "securityContext", "runAsUser"],
            "ka.req.pod.run_as_group" => {
                &["requestObject", "spec", "securityContext", "runAsGroup"]
            }
            "ka.req.pod.fs_group" => &["requestObject", "spec", "securityContext", "fsGroup"],
            "ka.req.pod.supplemental_groups" => &[
                "requestObject",
                "spec",
                "securityContext",
                "supplementalGroups",
            ],
            "ka.req.role.rules" => &["requestObject", "rules"],
            "ka.req.service.type" => &["requestObject", "spec", "type"],
            "ka.resp.name" => &["responseObject", "metadata", "name"],
            "ka.response.code" => &["responseStatus", "code"],
            "ka.response.reason" => &["responseStatus", "reason"],
            "ka.useragent" => &["userAgent"],
            _ => return self.extract_ka_computed(name, arg, out),
        };
        match self.at(path) {
            Some(Json::Null) | None => false,
            Some(v) => {
                emit_value(v, out);
                true
            }
        }
    }

    fn extract_ka_computed(
        &self,
        name: &str,
        arg: FieldArg<'_>,
        out: &mut dyn FnMut(Value<'_>),
    ) -> bool {
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            if let Some(what) = name
                .strip_prefix("ka.req.pod.")
                .and_then(|r| r.strip_prefix(list))
                .and_then(|r| r.strip_prefix('.'))
            {
                return self.extract_container_field(list, what, arg, out);
            }
        }
        match name {
            "ka.uri.param" => {
                let FieldArg::Key(key) = arg else {
                    return false;
                };
                let Some(uri) = self.at(&["requestURI"]).and_then(Json::as_str) else {
                    return false;
                };
                let query = uri.split_once('?').map_or("", |(_, q)| q);
                match query_param(query, key) {
                    Some(v) => out(Value::Str(&v)),
                    None => return false,
                }
            }
            "ka.target.pod.name" => {
                if self.at(&["objectRef", "resource"]).and_then(Json::as_str) != Some("pods") {
                    return false;
                }
                match self.at(&["objectRef", "name"]) {
                    Some(v) => emit_text(v, out),
                    None => return false,
                }
            }
            "ka.req.container.image" | "ka.req.container.image.repository" => {
                let Some(image) = self
                    .spec_items("containers", FieldArg::Index(0))
                    .and_then(|c| c.first().and_then(|c| c.get("image")))
                    .and_then(Json::as_str)
                else {
                    return false;
                };
                if name.ends_with("repository") {
                    out(Value::Str(image_repository(image)));
                } else {
                    out(Value::Str(image));
                }
            }
            "ka.req.container.privileged" => {
                let Some(containers) = self.spec_items("containers", FieldArg::None) else {
                    return false;
                };
                let any = security(&containers, &["privileged"]).any(|v| v.as_bool() == Some(true));
                out(Value::Str(if any { "true" } else { "false" }));
            }
            "ka.req.binding.subjects.user_names"
            | "ka.req.binding.subjects.group_names"
            | "ka.req.binding.subjects.serviceaccount_names"
            | "ka.req.binding.subjects.serviceaccount_ns_names" => {
                let Some(subjects) = self
                    .at(&["requestObject", "subjects"])
                    .and_then(Json::as_array)
                else {
                    return false;
                };
                let (kind, key) = match name.rsplit('.').next() {
                    Some("user_names") => ("User", "name"),
                    Some("group_names") => ("Group", "name"),
                    Some("serviceaccount_names") => ("ServiceAccount", "name"),
                    _ => ("ServiceAccount", "namespace"),
                };
                emit_each(
                    subjects
                        .iter()
                        .filter(|s| s.get("kind").and_then(Json::as_str) == Some(kind))
                        .filter_map(|s| s.get(key)),
                    out,
                );
            }
            "ka.req.binding.subject.has_name" => {
                let FieldArg::Key(want) = arg else {
                    return false;
                };
                let Some(subjects) = self
                    .at(&["requestObject", "subjects"])
                    .and_then(Json::as_array)
                else {
                    return false;
                };
                let has = subjects
                    .iter()
                    .any(|s| s.get("name").and_then(Json::as_str) == Some(want));
                out(Value::Str(if has { "true" } else { "false" }));
            }
            "ka.req.role.rules.apiGroups"
            | "ka.req.role.rules.nonResourceURLs"
            | "ka.req.role.rules.verbs"
            | "ka.req.role.rules.resources" => {
                let Some(rules) = self
                    .at(&["requestObject", "rules"])
                    .and_then(Json::as_array)
                else {
                    return false;
                };
                let key = name.rsplit('.').next().unwrap_or_default();
                let picked: Vec<&Json> = match index_filter(arg) {
                    Some(i) => rules.get(i).into_iter().collect(),
                    None => rules.iter().collect(),
                };
                for rule in picked {
                    if let Some(list) = rule.get(key).and_then(Json::as_array) {
                        emit_each(list.iter(), out);
                    }
                }
            }
            "ka.req.service.ports" => {
                let Some(ports) = self.spec_items("ports", arg) else {
                    return false;
                };
                emit_each(ports.into_iter(), out);
            }
            "ka.req.pod.volumes.hostpath" => {
                return self.volume_values(arg, "hostPath", "path", out);
            }
            "ka.req.pod.volumes.flexvolume_driver" => {
                return self.volume_values(arg, "flexVolume", "driver", out);
            }
            "ka.req.pod.volumes.volume_type" => {
                let Some(volumes) = self.spec_items("volumes", arg) else {
                    return false;
                };
                // A volume object is {name, <type>: {...}}: the type is its other key.
                for v in volumes {
                    for key in v.as_object().into_iter().flat_map(|o| o.keys()) {
                        if key != "name" {
                            out(Value::Str(key));
                        }
                    }
                }
            }
            "ka.req.volume.hostpath" => {
                // [path] or [prefix*]: "true" when some hostPath volume matches.
                let FieldArg::Key(want) = arg else {
                    return false;
                };
                let Some(volumes) = self.spec_items("volumes", FieldArg::None) else {
                    return false;
                };
                let hit = volumes
                    .iter()
                    .filter_map(|v| v.get("hostPath").and_then(|h| h.get("path")))
                    .filter_map(Json::as_str)
                    .any(|p| match want.strip_suffix('*') {
                        Some(prefix) => p.starts_with(prefix),
                        None => p == want,
                    });
                out(Value::Str(if hit { "true" } else { "false" }));
            }
            "ka.sourceips" => {
                let Some(ips) = self.at(&["sourceIPs"]).and_then(Json::as_array) else {
                    return false;
                };
                match index_filter(arg) {
                    Some(i) => match ips.get(i) {
                        Some(v) => emit_text(v, out),
                        None => return false,
                    },
                    None => emit_each(ips.iter(), out),
                }
            }
            _ => return false,
        }
        true
    }

    /// `requestObject.spec.volumes[*].<kind>.<key>` of the volumes that have it.
    fn volume_values(
        &self,
        arg: FieldArg<'_>,
        kind: &str,
        key: &str,
        out: &mut dyn FnMut(Value<'_>),
    ) -> bool {
        let Some(volumes) = self.spec_items("volumes", arg) else {
            return false;
        };
        emit_each(
            volumes
                .iter()
                .filter_map(|v| v.get(kind).and_then(|h| h.get(key))),
            out,
        );
        true
    }

    fn extract_evt(&self, name: &str, out: &mut dyn FnMut(Value<'_>)) -> bool {
        match name {
            "evt.source" => out(Value::Str(K8S_AUDIT_SOURCE)),
            "evt.pluginname" => out(Value::Str("k8saudit")),
            "evt.is_async" => out(Value::Bool(false)),
            _ => {
                let Some(t) = self.time else {
                    return false;
                };
                let ns = t.unix_nanos().max(0) as u64;
                match name {
                    "evt.time" => out(Value::Str(&t.clock_prefix())),
                    "evt.time.s" => {
                        out(Value::Str(t.clock_prefix().split('.').next().unwrap_or("")))
                    }
                    "evt.rawtime" | "evt.rawtime.ns" => out(Value::Uint(ns)),
                    "evt.rawtime.s" => out(Value::Uint(ns / 1_000_000_000)),
                    "evt.time.iso8601" | "evt.datetime" => out(Value::Str(&t.to_string())),
                    _ => return false,
                }
            }
        }
        true
    }
}

impl Event for K8sAuditEvent {
    fn source(&self) -> &str {
        K8S_AUDIT_SOURCE
    }

    fn event_type(&self) -> Option<&str> {
        None
    }

    fn extract(&self, field: &FieldRef<'_>, out: &mut dyn FnMut(Value<'_>)) -> bool {
        let name = field.info.name;
        if name.starts_with("ka.") {
            return self.extract_ka(name, field.arg, out);
        }
        match (name, field.arg) {
            ("jevt.value", FieldArg::Key(ptr)) => match self.json.pointer(ptr) {
                Some(Json::Null) | None => false,
                Some(v) => {
                    emit_text(v, out);
                    true
                }
            },
            ("jevt.obj", _) => {
                out(Value::Str(&self.json.to_string()));
                true
            }
            ("jevt.rawtime", _) => match self.time {
                Some(t) => {
                    out(Value::Uint(t.unix_nanos().max(0) as u64));
                    true
                }
                None => false,
            },
            _ if name.starts_with("evt.") => self.extract_evt(name, out),
            _ => false,
        }
    }

    fn timestamp(&self) -> Option<Timestamp> {
        self.time
    }
}

/// `[N]` narrows a per-item field to item N (from 0); any other argument does not.
fn index_filter(arg: FieldArg<'_>) -> Option<usize> {
    match arg {
        FieldArg::Index(i) => usize::try_from(i).ok(),
        FieldArg::Key(k) => k.trim().parse().ok(),
        FieldArg::None => None,
    }
}

/// `securityContext.<path>` of each container that sets it.
fn security<'a>(
    containers: &'a [&'a Json],
    path: &'a [&'a str],
) -> impl Iterator<Item = &'a Json> + 'a {
    containers.iter().filter_map(move |c| {
        path.iter()
            .try_fold(c.get("securityContext")?, |v, k| v.get(*k))
            .filter(|v| !v.is_null())
    })
}

/// The repository of an image reference: without `@digest` and without `:tag` (a colon
/// before the last `/` is a registry port, not a tag).
fn image_repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    match no_digest.rfind(':') {
        Some(colon) if !no_digest[colon..].contains('/') => &no_digest[..colon],
        _ => no_digest,
    }
}

/// The first value of `key` in a URL query string, percent-decoded.
fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == key).then(|| percent_decode(v).into_owned())
    })
}

fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// A field value: arrays give one value per element, everything else one value.
fn emit_value(v: &Json, out: &mut dyn FnMut(Value<'_>)) {
    match v {
        Json::Array(items) => emit_each(items.iter(), out),
        other => emit_text(other, out),
    }
}

fn emit_each<'a>(items: impl Iterator<Item = &'a Json>, out: &mut dyn FnMut(Value<'_>)) {
    for v in items {
        if !v.is_null() {
            emit_text(v, out);
        }
    }
}

/// Strings as they are; numbers, booleans, objects and arrays in their JSON spelling.
fn emit_text(v: &Json, out: &mut dyn FnMut(Value<'_>)) {
    match v {
        Json::String(s) => out(Value::Str(s)),
        other => out(Value::Str(&other.to_string())),
    }
}
