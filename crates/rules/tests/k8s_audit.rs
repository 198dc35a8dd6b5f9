//! Kubernetes audit events against Falco's upstream `k8s_audit_rules.yaml`, unmodified: the
//! events the API server's webhook backend posts raise the named rules with the right output
//! fields, and benign ones raise none of them.

use std::path::PathBuf;

use aerie_rules::{
    Engine, EngineConfig, Event, K8sAuditEvent, Matches, RuleLoader, RuleMatching,
    k8s_audit_fields, parse_audit_payload,
};

fn rules_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/falco-rules");
    if dir.join("k8s_audit_rules.yaml").exists() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("falco rules not found at {}", dir.display());
    }
    eprintln!("notice: {} not found; skipping", dir.display());
    None
}

fn engine() -> Option<Engine> {
    let dir = rules_dir()?;
    let mut loader = RuleLoader::new();
    loader.load_file(&dir.join("k8s_audit_rules.yaml"));
    let engine = loader.compile(&EngineConfig {
        rule_matching: RuleMatching::All,
        ..EngineConfig::default()
    });
    assert!(!loader.has_errors());
    Some(engine)
}

/// The names of the rules an event raises, and the output of each.
fn fire(engine: &Engine, ev: &K8sAuditEvent) -> Vec<(String, String)> {
    let mut m = Matches::new();
    engine.evaluate(ev, &mut m);
    m.iter()
        .map(|id| {
            let alert = engine.alert(id, ev, "node-1");
            (alert.rule.clone(), alert.output.clone())
        })
        .collect()
}

fn event(json: &str) -> K8sAuditEvent {
    let mut evs = parse_audit_payload(json.as_bytes()).unwrap();
    assert_eq!(evs.len(), 1);
    evs.remove(0)
}

fn rule_output<'a>(fired: &'a [(String, String)], rule: &str) -> &'a str {
    fired
        .iter()
        .find(|(r, _)| r == rule)
        .map(|(_, o)| o.as_str())
        .unwrap_or_else(|| panic!("{rule} did not fire; fired: {fired:?}"))
}

const PRIVILEGED_POD: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse",
 "auditID":"8c3c2a3e-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods",
 "verb":"create","user":{"username":"alice","groups":["dev","system:authenticated"]},
 "sourceIPs":["10.0.0.7"],"userAgent":"kubectl/v1.29.0",
 "objectRef":{"resource":"pods","namespace":"default","name":"evil","apiVersion":"v1"},
 "responseStatus":{"metadata":{},"code":201},
 "requestObject":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"evil"},
   "spec":{"hostNetwork":true,"volumes":[{"name":"root","hostPath":{"path":"/"}}],
     "containers":[{"name":"c","image":"docker.io/library/alpine:3.19",
        "securityContext":{"privileged":true}},
       {"name":"side","image":"registry.local:5000/tools/sidecar@sha256:abcd"}]}},
 "responseObject":{"kind":"Pod","metadata":{"name":"evil","namespace":"default"}},
 "requestReceivedTimestamp":"2024-03-18T16:48:08.962929Z","stageTimestamp":"2024-03-18T16:48:09.000001Z",
 "annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed"}}"#;

#[test]
fn privileged_hostnetwork_sensitive_mount_pod() {
    let Some(engine) = engine() else { return };
    let fired = fire(&engine, &event(PRIVILEGED_POD));
    let out = rule_output(&fired, "Create Privileged Pod");
    assert!(out.contains("user=alice"), "{out}");
    assert!(out.contains("pod=evil"), "{out}");
    assert!(out.contains("ns=default"), "{out}");
    assert!(out.contains("docker.io/library/alpine:3.19"), "{out}");
    rule_output(&fired, "Create HostNetwork Pod");
    let out = rule_output(&fired, "Create Sensitive Mount Pod");
    assert!(
        out.contains(r#""path":"/""#),
        "volumes from jevt.value: {out}"
    );
    // alice is not in the allowed users list.
    let out = rule_output(&fired, "Disallowed K8s User");
    assert!(out.contains("verb=create"), "{out}");
    assert!(
        !fired.iter().any(|(r, _)| r == "Create HostPid Pod"),
        "{fired:?}"
    );
}

#[test]
fn a_plain_pod_raises_none_of_the_pod_rules() {
    let Some(engine) = engine() else { return };
    let plain = PRIVILEGED_POD
        .replace(
            r#""securityContext":{"privileged":true}"#,
            r#""securityContext":{}"#,
        )
        .replace(r#""hostNetwork":true,"#, "")
        .replace(r#""hostPath":{"path":"/"}"#, r#""emptyDir":{}"#);
    let fired = fire(&engine, &event(&plain));
    for rule in [
        "Create Privileged Pod",
        "Create HostNetwork Pod",
        "Create Sensitive Mount Pod",
    ] {
        assert!(!fired.iter().any(|(r, _)| r == rule), "{rule}: {fired:?}");
    }
}

#[test]
fn exec_into_a_pod_reports_the_command() {
    let Some(engine) = engine() else { return };
    let ev = event(
        r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"x2","stage":"ResponseStarted",
        "requestURI":"/api/v1/namespaces/prod/pods/web-1/exec?command=sh&command=-c&command=id&container=web&stdin=true&tty=true",
        "verb":"create","user":{"username":"mallory"},
        "objectRef":{"resource":"pods","namespace":"prod","name":"web-1","subresource":"exec","apiVersion":"v1"},
        "responseStatus":{"code":101},"stageTimestamp":"2024-03-18T16:50:00.000000Z"}"#,
    );
    let fired = fire(&engine, &ev);
    let out = rule_output(&fired, "Attach/Exec Pod");
    assert!(out.contains("user=mallory"), "{out}");
    assert!(out.contains("pod=web-1"), "{out}");
    assert!(out.contains("action=exec"), "{out}");
    assert!(out.contains("command=sh"), "first command parameter: {out}");
    // The alert time is the event's stage time, not now.
    assert!(out.starts_with("16:50:00.000000000"), "{out}");
}

#[test]
fn secrets_created_and_read() {
    let Some(engine) = engine() else { return };
    let secret = |verb: &str, code: u32| {
        event(&format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"s","stage":"ResponseComplete",
            "requestURI":"/api/v1/namespaces/prod/secrets","verb":"{verb}","user":{{"username":"bob"}},
            "objectRef":{{"resource":"secrets","namespace":"prod","name":"db-pass"}},
            "responseStatus":{{"code":{code}}},"stageTimestamp":"2024-03-18T16:50:00.000000Z"}}"#
        ))
    };
    let fired = fire(&engine, &secret("create", 201));
    let out = rule_output(&fired, "K8s Secret Created");
    assert!(out.contains("secret=db-pass"), "{out}");
    assert!(out.contains("resp=201"), "{out}");
    let fired = fire(&engine, &secret("get", 200));
    rule_output(&fired, "K8s Secret Get Successfully");
    let fired = fire(&engine, &secret("get", 403));
    assert!(
        !fired
            .iter()
            .any(|(r, _)| r == "K8s Secret Get Successfully"),
        "{fired:?}"
    );
}

#[test]
fn cluster_admin_binding_and_wildcard_role() {
    let Some(engine) = engine() else { return };
    let binding = event(
        r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"b","stage":"ResponseComplete",
        "requestURI":"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings","verb":"create",
        "user":{"username":"eve"},
        "objectRef":{"resource":"clusterrolebindings","name":"pwn","apiGroup":"rbac.authorization.k8s.io"},
        "responseStatus":{"code":201},
        "requestObject":{"kind":"ClusterRoleBinding","roleRef":{"kind":"ClusterRole","name":"cluster-admin"},
          "subjects":[{"kind":"User","name":"eve"},{"kind":"ServiceAccount","name":"builder","namespace":"ci"}]},
        "stageTimestamp":"2024-03-18T16:50:00.000000Z"}"#,
    );
    let fired = fire(&engine, &binding);
    let out = rule_output(&fired, "Attach to cluster-admin Role");
    assert!(out.contains("user=eve"), "{out}");

    let role = event(
        r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"r","stage":"ResponseComplete",
        "requestURI":"/apis/rbac.authorization.k8s.io/v1/clusterroles","verb":"create",
        "user":{"username":"eve"},
        "objectRef":{"resource":"clusterroles","name":"everything","apiGroup":"rbac.authorization.k8s.io"},
        "responseStatus":{"code":201},
        "requestObject":{"kind":"ClusterRole","rules":[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]},
        "stageTimestamp":"2024-03-18T16:50:00.000000Z"}"#,
    );
    let fired = fire(&engine, &role);
    rule_output(&fired, "ClusterRole With Wildcard Created");
}

/// Extract one field by name, as the engine would.
fn values(ev: &K8sAuditEvent, name: &str, arg: aerie_rules::FieldArg<'_>) -> Option<Vec<String>> {
    let (id, info) = k8s_audit_fields().get(name).unwrap();
    let r = aerie_rules::FieldRef { id, info, arg };
    let mut got = Vec::new();
    ev.extract(&r, &mut |v| got.push(v.to_string()))
        .then_some(got)
}

#[test]
fn field_meanings() {
    use aerie_rules::FieldArg::{Index, Key, None as No};
    let ev = event(PRIVILEGED_POD);
    let v = |n, a| values(&ev, n, a);
    assert_eq!(
        v("ka.user.groups", No).unwrap(),
        ["dev", "system:authenticated"]
    );
    assert_eq!(v("ka.response.code", No).unwrap(), ["201"]);
    assert_eq!(v("ka.req.pod.host_network", No).unwrap(), ["true"]);
    assert_eq!(
        v("ka.req.pod.host_pid", No),
        None,
        "absent: not extractable"
    );
    assert_eq!(
        v("ka.req.pod.containers.image.repository", No).unwrap(),
        [
            "docker.io/library/alpine",
            "registry.local:5000/tools/sidecar"
        ]
    );
    assert_eq!(
        v("ka.req.pod.containers.image", Index(1)).unwrap(),
        ["registry.local:5000/tools/sidecar@sha256:abcd"]
    );
    assert_eq!(v("ka.req.pod.containers.image", Index(5)), None);
    assert_eq!(v("ka.req.pod.containers.privileged", No).unwrap(), ["true"]);
    assert_eq!(v("ka.req.container.privileged", No).unwrap(), ["true"]);
    assert_eq!(
        v("ka.req.pod.containers.eff_run_as_user", No).unwrap(),
        ["0", "0"]
    );
    assert_eq!(v("ka.req.pod.volumes.hostpath", No).unwrap(), ["/"]);
    assert_eq!(
        v("ka.req.pod.volumes.volume_type", No).unwrap(),
        ["hostPath"]
    );
    assert_eq!(v("ka.req.volume.hostpath", Key("/")).unwrap(), ["true"]);
    assert_eq!(
        v("ka.req.volume.hostpath", Key("/etc*")).unwrap(),
        ["false"]
    );
    assert_eq!(v("ka.target.pod.name", No).unwrap(), ["evil"]);
    assert_eq!(v("ka.sourceips", No).unwrap(), ["10.0.0.7"]);
    assert_eq!(v("ka.auth.decision", No).unwrap(), ["allow"]);
    assert_eq!(v("jevt.value", Key("/user/username")).unwrap(), ["alice"]);
    assert_eq!(v("jevt.rawtime", No).unwrap(), ["1710780489000001000"]);
    assert_eq!(v("evt.source", No).unwrap(), ["k8s_audit"]);
}

#[test]
fn webhook_batches_and_log_lines() {
    let list = format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{PRIVILEGED_POD},{PRIVILEGED_POD}]}}"#
    );
    assert_eq!(parse_audit_payload(list.as_bytes()).unwrap().len(), 2);
    let one_line = PRIVILEGED_POD.replace('\n', "");
    let log = format!("{one_line}\n\n{one_line}\n");
    assert_eq!(parse_audit_payload(log.as_bytes()).unwrap().len(), 2);
    for (bad, says) in [
        ("", "empty"),
        ("{", "invalid JSON"),
        (r#"{"kind":"EventList"}"#, "items"),
        (r#"{"kind":"Pod","verb":"get"}"#, "kind \"Pod\""),
        (r#"{"hello":1}"#, "not a Kubernetes audit event"),
        (
            r#"{"kind":"EventList","items":[{"verb":"get"},7]}"#,
            "items[1]",
        ),
    ] {
        let err = parse_audit_payload(bad.as_bytes()).unwrap_err().to_string();
        assert!(err.contains(says), "{bad:?}: {err}");
    }
    let err = parse_audit_payload(format!("{one_line}\n{{oops\n").as_bytes())
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 2"), "{err}");
}
