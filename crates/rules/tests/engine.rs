//! Behaviour of the loader, condition language and output formatting, through the public API.

use aerie_rules::condition::parse;
use aerie_rules::{
    Engine, EngineConfig, JsonEvent, Matches, RuleLoader, RuleMatching, Selection, WarningCode,
};

fn load(yaml: &str) -> (RuleLoader, Engine) {
    let mut loader = RuleLoader::new();
    loader.load_str("test.yaml", yaml);
    let engine = loader.compile(&EngineConfig {
        rule_matching: RuleMatching::All,
        ..EngineConfig::default()
    });
    (loader, engine)
}

fn ok(yaml: &str) -> Engine {
    let (loader, engine) = load(yaml);
    for r in loader.results() {
        assert!(r.errors.is_empty(), "unexpected errors: {:?}", r.errors);
    }
    engine
}

fn fired(engine: &Engine, event: &str) -> Vec<String> {
    let ev = JsonEvent::parse(event).expect("event");
    let mut m = Matches::new();
    engine.evaluate(&ev, &mut m);
    m.iter().map(|id| engine.rule(id).name.clone()).collect()
}

/// One rule per condition; returns the names of those that fire on `event`.
fn eval_conditions(conds: &[&str], event: &str) -> Vec<String> {
    let mut yaml = String::new();
    for (i, c) in conds.iter().enumerate() {
        yaml += &format!(
            "- rule: r{i}\n  desc: d\n  condition: '{}'\n  output: o\n  priority: INFO\n",
            c.replace('\'', "''")
        );
    }
    fired(&ok(&yaml), event)
}

fn check(cond: &str, event: &str) -> bool {
    !eval_conditions(&[cond], event).is_empty()
}

const OPEN: &str = r#"{"source":"syscall","fields":{"evt.type":"openat","fd.name":"/etc/shadow",
  "fd.directory":"/etc","proc.name":"cat","proc.pid":1234,"proc.aname":["bash","sshd","systemd"],
  "evt.arg.flags":"O_RDONLY|O_CLOEXEC","proc.cmdline":"cat /etc/shadow","fd.sip":"10.1.2.3",
  "fd.snet":"10.1.2.3","evt.is_open_read":true,"evt.buffer":"\u0001\u00cafe"}}"#;

#[test]
fn grammar_accepts_falco_conditions() {
    for c in [
        "proc.name = cat",
        "proc.name=cat and fd.name startswith /etc",
        "not proc.name in (cat, bash) or (fd.name contains shadow and evt.type = openat)",
        "not(proc.name = cat)",
        "not not proc.name = cat",
        "proc.aname[2] = sshd",
        "evt.arg.flags contains O_RDONLY",
        "evt.arg[0] exists",
        "ka.req.pod.containers.image intersects (nginx)",
        "jevt.value[/user/username] = admin",
        "tolower(proc.name) = cat",
        "proc.name = val(proc.pname)",
        "len(proc.name) > 2",
        "fd.name pmatch (/etc, /var/lib)",
        "proc.name in my_list",
        "proc.name = \"a \\\"quoted\\\" name\"",
        "proc.name = 'single'",
        "evt.rawres >= -1",
        "fd.num = 0x10",
        "my_macro and (other_macro or proc.name exists)",
        "proc.name in ()",
    ] {
        assert!(parse(c).is_ok(), "should parse: {c}: {:?}", parse(c));
    }
}

#[test]
fn grammar_rejects_malformed_conditions() {
    for c in [
        "",
        "   ",
        "proc.name",
        "proc.name =",
        "proc.name = cat and",
        "(proc.name = cat",
        "proc.name = cat)",
        "proc.name in (a, b",
        "proc.name foo bar",
        "proc.name = \"unterminated",
        "proc.aname[2 = x",
        "tolower(proc.name = x",
        "and proc.name = x",
        "proc.name = 'bad \\q escape'",
        "val(proc.name) = x",
    ] {
        assert!(parse(c).is_err(), "should not parse: {c:?}");
    }
    let deep = format!("{}proc.name = x{}", "(".repeat(500), ")".repeat(500));
    let err = parse(&deep).unwrap_err();
    assert!(err.message.contains("nested too deeply"), "{err}");
    let nots = format!("{}proc.name = x", "not ".repeat(500));
    assert!(parse(&nots).is_err());
}

#[test]
fn every_operator() {
    let cases: &[(&str, bool)] = &[
        ("proc.name = cat", true),
        ("proc.name == cat", true),
        ("proc.name = dog", false),
        ("proc.name != dog", true),
        ("proc.name != cat", false),
        ("proc.pid < 2000", true),
        ("proc.pid < 1234", false),
        ("proc.pid <= 1234", true),
        ("proc.pid > 1000", true),
        ("proc.pid > 1234", false),
        ("proc.pid >= 1234", true),
        ("proc.pid = 1234", true),
        ("proc.pid in (1, 1234)", true),
        ("proc.pid in (1, 2)", false),
        ("fd.name contains shad", true),
        ("fd.name contains SHAD", false),
        ("fd.name icontains SHAD", true),
        ("fd.name startswith /etc/", true),
        ("fd.name startswith /var", false),
        ("fd.name endswith shadow", true),
        ("fd.name endswith passwd", false),
        ("fd.name glob '/etc/*'", true),
        ("fd.name glob '/*/sha?ow'", true),
        ("fd.name glob '/var/*'", false),
        ("fd.name iglob '/ETC/*'", true),
        ("fd.name regex '/etc/s.*'", true),
        ("fd.name regex 'etc/s'", false),
        ("fd.name in (/etc/passwd, /etc/shadow)", true),
        ("fd.name in (/etc/passwd)", false),
        ("fd.name intersects (/etc/shadow)", true),
        ("fd.name pmatch (/etc)", true),
        ("fd.name pmatch (/et)", false),
        ("fd.name exists", true),
        ("fd.sip = 10.1.2.3", true),
        ("fd.sip = 10.1.2.4", false),
        ("fd.snet in (10.0.0.0/8)", true),
        ("fd.snet in (192.168.0.0/16)", false),
        ("evt.is_open_read = true", true),
        ("evt.is_open_read = false", false),
        ("evt.buffer bcontains CAFE", false),
        ("proc.cmdline bstartswith 636174", true),
        ("proc.cmdline bcontains 2f657463", true),
        ("tolower(proc.name) = cat", true),
        ("toupper(proc.name) = CAT", true),
        ("basename(fd.name) = shadow", true),
        ("len(proc.name) = 3", true),
        ("proc.name = val(proc.aname[1])", false),
        ("proc.aname[1] = val(proc.aname[1])", true),
    ];
    let conds: Vec<&str> = cases.iter().map(|(c, _)| *c).collect();
    let got = eval_conditions(&conds, OPEN);
    for (i, (c, expect)) in cases.iter().enumerate() {
        assert_eq!(
            got.contains(&format!("r{i}")),
            *expect,
            "condition {c:?} should be {expect}"
        );
    }
}

#[test]
fn b64_transformer_decodes() {
    let ev = r#"{"fields":{"evt.type":"execve","proc.cmdline":"aGVsbG8="}}"#;
    assert!(check("b64(proc.cmdline) = hello", ev));
}

#[test]
fn missing_fields_make_comparisons_false() {
    let ev = r#"{"source":"syscall","fields":{"evt.type":"openat","proc.name":"cat"}}"#;
    assert!(!check("fd.name = /etc/shadow", ev));
    assert!(
        !check("fd.name != /etc/shadow", ev),
        "!= with a missing field is false"
    );
    assert!(!check("fd.name exists", ev));
    assert!(check("not fd.name = /etc/shadow", ev));
    assert!(!check("fd.name in (/etc/shadow)", ev));
    assert!(!check("proc.aname[2] = sshd", ev));
    assert!(check("proc.name = cat", ev));
}

#[test]
fn multi_valued_fields_any_and_all() {
    let ev = r#"{"source":"k8s_audit","fields":{"ka.verb":"create",
        "ka.req.pod.containers.image":["nginx","busybox"],"ka.req.pod.containers.privileged":[false,true]}}"#;
    let yaml = |c: &str| {
        format!(
            "- rule: r\n  desc: d\n  condition: {c}\n  output: o\n  priority: INFO\n  source: k8s_audit\n"
        )
    };
    let fires = |c: &str| !fired(&ok(&yaml(c)), ev).is_empty();
    assert!(fires(
        "ka.req.pod.containers.image in (nginx, busybox, redis)"
    ));
    assert!(
        !fires("ka.req.pod.containers.image in (nginx)"),
        "in needs every value"
    );
    assert!(fires("ka.req.pod.containers.image intersects (nginx)"));
    assert!(!fires("ka.req.pod.containers.image intersects (redis)"));
    assert!(fires("ka.req.pod.containers.privileged intersects (true)"));
    // A non-list field with several values (ancestors) matches when any value does.
    assert!(check("proc.aname = sshd", OPEN));
    assert!(check("proc.aname in (sshd)", OPEN));
}

#[test]
fn unknown_fields_are_errors_unless_skipped() {
    let (loader, engine) = load(
        "- rule: typo\n  desc: d\n  condition: proc.nmae = x\n  output: o\n  priority: INFO\n",
    );
    let errs = &loader.results()[0].errors;
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].code.as_str(), "LOAD_ERR_COMPILE_CONDITION");
    assert!(errs[0].message.contains("proc.nmae"));
    assert_eq!(errs[0].context.item, "typo");
    assert_eq!(errs[0].context.line, 3);
    assert!(engine.rules().is_empty());

    let (loader, engine) = load(
        "- rule: typo\n  desc: d\n  condition: proc.nmae = x\n  output: o\n  priority: INFO\n  skip-if-unknown-filter: true\n",
    );
    assert!(loader.results()[0].errors.is_empty());
    assert!(
        loader.results()[0]
            .warnings
            .iter()
            .any(|w| w.code == WarningCode::UnknownFilter)
    );
    assert!(engine.rules().is_empty());
}

const BASE: &str = r#"
- list: shells
  items: [bash, sh]
- list: all_shells
  items: [shells, zsh]
- macro: is_shell
  condition: proc.name in (all_shells)
- rule: Shell
  desc: a shell
  condition: evt.type = execve and is_shell
  output: shell %proc.name
  priority: WARNING
  tags: [shell, b_tag]
"#;

#[test]
fn lists_include_lists() {
    let e = ok(BASE);
    let ex = |n: &str| format!(r#"{{"fields":{{"evt.type":"execve","proc.name":"{n}"}}}}"#);
    assert_eq!(fired(&e, &ex("zsh")), ["Shell"]);
    assert_eq!(fired(&e, &ex("bash")), ["Shell"]);
    assert!(fired(&e, &ex("cat")).is_empty());
    let r = e.rule_by_name("Shell").unwrap().1;
    assert_eq!(
        r.expanded_condition,
        "evt.type = execve and proc.name in (bash, sh, zsh)"
    );
}

#[test]
fn override_append_and_replace() {
    let extra = r#"
- list: shells
  items: [fish]
  override:
    items: append
- macro: is_shell
  condition: or proc.name = ksh
  override:
    condition: append
- rule: Shell
  condition: and proc.pname = sshd
  output: via %proc.pname
  override:
    condition: append
    output: append
- rule: Shell
  priority: CRITICAL
  tags: [replaced]
  override:
    priority: replace
    tags: replace
"#;
    let e = ok(&format!("{BASE}{extra}"));
    let r = e.rule_by_name("Shell").unwrap().1;
    assert_eq!(
        r.condition,
        "evt.type = execve and is_shell and proc.pname = sshd"
    );
    assert_eq!(r.output, "shell %proc.name via %proc.pname");
    assert_eq!(r.priority, aerie_alert::Priority::Critical);
    assert_eq!(r.tags, ["replaced"]);
    // `fish` was appended to `shells` after `all_shells` included it: Falco's lists are
    // collected before compiling, so the inclusion sees it.
    assert_eq!(
        r.expanded_condition,
        "evt.type = execve and (proc.name in (bash, sh, fish, zsh) or proc.name = ksh) and proc.pname = sshd"
    );
}

#[test]
fn legacy_append_and_enabled_only_items() {
    let extra = r#"
- rule: Shell
  condition: and proc.pname = sshd
  append: true
- rule: Shell
  enabled: false
"#;
    let (loader, e) = load(&format!("{BASE}{extra}"));
    assert!(loader.results()[0].errors.is_empty());
    let warnings = &loader.results()[0].warnings;
    assert!(
        warnings
            .iter()
            .any(|w| w.code == WarningCode::DeprecatedItem)
    );
    let r = e.rule_by_name("Shell").unwrap().1;
    assert_eq!(
        r.condition,
        "evt.type = execve and is_shell and proc.pname = sshd"
    );
    assert!(!r.enabled);
    assert_eq!(e.enabled_rules(), 0);
}

#[test]
fn appending_to_a_missing_item_is_an_error() {
    for (yaml, item) in [
        ("- list: nope\n  items: [a]\n  append: true\n", "nope"),
        (
            "- macro: nope\n  condition: x\n  override:\n    condition: append\n",
            "nope",
        ),
        ("- rule: nope\n  condition: x\n  append: true\n", "nope"),
    ] {
        let (loader, _) = load(yaml);
        let errs = &loader.results()[0].errors;
        assert_eq!(errs.len(), 1, "{yaml}");
        assert_eq!(errs[0].context.item, item);
        assert_eq!(errs[0].context.line, 1);
    }
}

#[test]
fn exceptions_expand_like_falco() {
    let yaml = r#"
- list: trusted
  items: [sshd, "my prog"]
- rule: Write etc
  desc: d
  condition: evt.type = openat and fd.name startswith /etc
  output: o
  priority: ERROR
  exceptions:
    - name: proc_file
      fields: [proc.name, fd.name]
      comps: [=, startswith]
      values:
        - [vim, /etc/vim]
        - [my editor, /etc/x]
    - name: by_list
      fields: [proc.name, fd.directory]
      comps: [in, =]
      values:
        - [trusted, /etc]
    - name: names
      fields: proc.pname
      values: [systemd, "run parts"]
"#;
    let e = ok(yaml);
    let r = e.rule_by_name("Write etc").unwrap().1;
    assert_eq!(
        r.condition,
        "(evt.type = openat and fd.name startswith /etc) and not (( proc.name = vim and  fd.name startswith /etc/vim) or ( proc.name = \"my editor\" and  fd.name startswith /etc/x)) and not (( proc.name in (trusted) and  fd.directory = /etc)) and not (proc.pname in (systemd, \"run parts\"))"
    );
    let ev = |p: &str, f: &str| {
        format!(
            r#"{{"fields":{{"evt.type":"openat","proc.name":"{p}","fd.name":"{f}","fd.directory":"/etc","proc.pname":"x"}}}}"#
        )
    };
    assert!(fired(&e, &ev("vim", "/etc/vim/vimrc")).is_empty());
    assert!(fired(&e, &ev("my editor", "/etc/x")).is_empty());
    assert!(fired(&e, &ev("sshd", "/etc/hosts")).is_empty());
    assert_eq!(fired(&e, &ev("vim", "/etc/passwd")), ["Write etc"]);

    // Appending values to an existing exception.
    let extra = r#"
- rule: Write etc
  exceptions:
    - name: names
      values: [cron]
  override:
    exceptions: append
"#;
    let e = ok(&format!("{yaml}{extra}"));
    let r = e.rule_by_name("Write etc").unwrap().1;
    assert!(
        r.condition
            .ends_with("and not (proc.pname in (systemd, \"run parts\", cron))"),
        "{}",
        r.condition
    );
}

#[test]
fn bad_exceptions_are_errors() {
    let yaml = r#"
- rule: r
  desc: d
  condition: evt.type = openat
  output: o
  priority: ERROR
  exceptions:
    - name: e
      fields: [proc.name, fd.name]
      comps: [=]
      values: []
"#;
    let (loader, _) = load(yaml);
    let errs = &loader.results()[0].errors;
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].message.contains("equal length"),
        "{}",
        errs[0].message
    );
}

#[test]
fn priorities_and_selection() {
    let yaml = r#"
- rule: Low
  desc: d
  condition: evt.type = execve
  output: o
  priority: info
  tags: [noisy]
- rule: High one
  desc: d
  condition: evt.type = execve
  output: o
  priority: critical
- rule: High two
  desc: d
  condition: evt.type = execve
  output: o
  priority: Emergency
"#;
    let ev = r#"{"fields":{"evt.type":"execve"}}"#;
    let mut loader = RuleLoader::new();
    loader.load_str("t.yaml", yaml);
    let all = loader.compile(&EngineConfig {
        rule_matching: RuleMatching::All,
        ..EngineConfig::default()
    });
    assert_eq!(fired(&all, ev), ["Low", "High one", "High two"]);
    let first = loader.compile(&EngineConfig::default());
    assert_eq!(fired(&first, ev), ["Low"]);
    let min = loader.compile(&EngineConfig {
        min_priority: aerie_alert::Priority::Critical,
        rule_matching: RuleMatching::All,
        ..EngineConfig::default()
    });
    assert_eq!(fired(&min, ev), ["High one", "High two"]);
    let sel = loader.compile(&EngineConfig {
        rule_matching: RuleMatching::All,
        selection: vec![
            Selection::DisableRule("High*".into()),
            Selection::EnableRule("High two".into()),
            Selection::DisableTag("noisy".into()),
        ],
        ..EngineConfig::default()
    });
    assert_eq!(fired(&sel, ev), ["High two"]);
}

#[test]
fn invalid_priority_and_unknown_keys() {
    let (loader, _) =
        load("- rule: r\n  desc: d\n  condition: evt.type = x\n  output: o\n  priority: loud\n");
    let errs = &loader.results()[0].errors;
    assert_eq!(errs[0].code.as_str(), "LOAD_ERR_YAML_VALIDATE");
    assert_eq!((errs[0].context.line, errs[0].context.column), (5, 13));
    let (loader, _) = load(
        "- rule: r\n  desc: d\n  condition: evt.type = x\n  output: o\n  priority: info\n  colour: red\n- thing: 1\n",
    );
    let w = &loader.results()[0].warnings;
    assert!(
        w.iter()
            .any(|w| w.code == WarningCode::UnknownKey && w.message.contains("colour"))
    );
    assert!(
        w.iter()
            .any(|w| w.code == WarningCode::UnknownItem && w.context.line == 7)
    );
}

#[test]
fn event_types_index_and_union() {
    let e = ok(r#"
- macro: spawned
  condition: evt.type in (execve, execveat)
- rule: A
  desc: d
  condition: spawned and proc.name = x
  output: o
  priority: info
- rule: B
  desc: d
  condition: (evt.type = openat and fd.name = x) or evt.type = connect
  output: o
  priority: info
"#);
    let a = e.rule_by_name("A").unwrap().1;
    assert_eq!(
        a.event_types.as_ref().unwrap().iter().collect::<Vec<_>>(),
        ["execve", "execveat"]
    );
    let types = e.event_types("syscall").unwrap();
    assert_eq!(
        types.into_iter().collect::<Vec<_>>(),
        ["connect", "execve", "execveat", "openat"]
    );
    let e2 =
        ok("- rule: C\n  desc: d\n  condition: proc.name = x\n  output: o\n  priority: info\n");
    assert!(
        e2.event_types("syscall").is_none(),
        "a rule without evt.type needs every type"
    );
    assert!(fired(&e2, r#"{"fields":{"proc.name":"x"}}"#) == ["C"]);
}

#[test]
fn output_formatting_with_missing_values() {
    let e = ok(r#"
- rule: Fmt
  desc: d
  condition: evt.type = openat
  output: "file=%fd.name gparent=%proc.aname[2] flags=%evt.arg.flags pid=%proc.pid user=%user.name lower=%toupper(proc.name)"
  priority: notice
  tags: [b, a]
"#);
    let ev = JsonEvent::parse(
        r#"{"fields":{"evt.type":"openat","fd.name":"/etc/shadow","proc.aname":["bash","sshd"],
        "evt.arg.flags":"O_RDONLY","proc.pid":42,"proc.name":"cat"},"time":"2024-05-01T10:20:30.123456789Z"}"#,
    )
    .unwrap();
    let (id, _) = e.rule_by_name("Fmt").unwrap();
    let (text, fields) = e.format_output(id, &ev);
    assert_eq!(
        text,
        "file=/etc/shadow gparent=sshd flags=O_RDONLY pid=42 user=<NA> lower=CAT"
    );
    assert_eq!(fields["proc.pid"], serde_json::json!(42));
    assert_eq!(fields["user.name"], serde_json::Value::Null);
    assert_eq!(fields["proc.aname[2]"], serde_json::json!("sshd"));
    let alert = e.alert(id, &ev, "node-1");
    assert_eq!(
        alert.output,
        "10:20:30.123456789: Notice file=/etc/shadow gparent=sshd flags=O_RDONLY pid=42 user=<NA> lower=CAT"
    );
    assert_eq!(alert.rule, "Fmt");
    assert_eq!(alert.tags, ["a", "b"]);
    assert_eq!(alert.hostname, "node-1");
    assert_eq!(
        alert.output_fields["evt.time"],
        serde_json::json!(1_714_558_830_123_456_789u64)
    );
    let json: serde_json::Value = serde_json::from_str(&alert.to_json()).unwrap();
    assert_eq!(json["time"], "2024-05-01T10:20:30.123456789Z");
    assert_eq!(json["output_fields"]["user.name"], serde_json::Value::Null);
}

#[test]
fn output_with_unknown_field_is_an_error() {
    let (loader, _) = load(
        "- rule: r\n  desc: d\n  condition: evt.type = x\n  output: bad %proc.nope\n  priority: info\n",
    );
    let errs = &loader.results()[0].errors;
    assert_eq!(errs[0].code.as_str(), "LOAD_ERR_COMPILE_OUTPUT");
    assert_eq!(errs[0].context.line, 4);
}

#[test]
fn macros_see_only_earlier_macros_and_malformed_yaml_is_located() {
    let (loader, _) = load(
        "- macro: a\n  condition: b\n- macro: b\n  condition: proc.name = x\n- rule: r\n  desc: d\n  condition: a\n  output: o\n  priority: info\n",
    );
    let errs = &loader.results()[0].errors;
    assert!(
        errs.iter()
            .any(|e| e.message.contains("Undefined macro 'b'")),
        "{errs:?}"
    );

    let (loader, _) = load("- rule: r\n  desc: [unclosed\n");
    let errs = &loader.results()[0].errors;
    assert_eq!(errs[0].code.as_str(), "LOAD_ERR_YAML_PARSE");
    assert!(errs[0].context.line >= 2);
    let (loader, _) = load("rule: not a list\n");
    assert_eq!(
        loader.results()[0].errors[0].message,
        "Rules content is not yaml array of objects"
    );
}

#[test]
fn doubling_macros_and_lists_stay_bounded() {
    // Each macro uses the previous one twice, each list includes the previous one twice:
    // naive expansion would be 2^40 nodes.
    let mut yaml =
        String::from("- macro: m0\n  condition: proc.name = x\n- list: l0\n  items: [x]\n");
    for i in 1..=40 {
        yaml += &format!(
            "- macro: m{i}\n  condition: (m{p} or m{p})\n- list: l{i}\n  items: [l{p}, l{p}, b{i}]\n",
            p = i - 1
        );
    }
    yaml += "- rule: r\n  desc: d\n  condition: evt.type = execve and m40 and proc.name in (l40)\n  output: o\n  priority: info\n";
    let start = std::time::Instant::now();
    let e = ok(&yaml);
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(
        fired(&e, r#"{"fields":{"evt.type":"execve","proc.name":"x"}}"#),
        ["r"]
    );
    let r = e.rule_by_name("r").unwrap().1;
    assert!(r.expanded_condition.len() < 10_000_000);
}
