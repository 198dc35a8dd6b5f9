//! Falco 0.44's list modifiers (libs 0.25: `StrOperator StrOperatorModifier ListValue`):
//! `anyof`, `oneof` and `allof` after a string operator, in conditions and exception comps,
//! and the open-path prefilter's view of them.

use aerie_rules::{
    EngineConfig, JsonEvent, Matches, OpenPathNeed, RuleLoader, RuleMatching, WarningCode,
};

fn load(yaml: &str) -> (RuleLoader, aerie_rules::Engine) {
    let mut loader = RuleLoader::new();
    loader.load_str("m.yaml", yaml);
    let engine = loader.compile(&EngineConfig {
        rule_matching: RuleMatching::All,
        ..EngineConfig::default()
    });
    (loader, engine)
}

/// The rules (named by index) that fire on `event`, one rule per condition; every condition
/// must load without errors.
fn firing(conds: &[&str], event: &str) -> Vec<usize> {
    let mut yaml = String::from("- list: shells\n  items: [bash, sh]\n");
    for (i, c) in conds.iter().enumerate() {
        yaml += &format!(
            "- rule: r{i}\n  desc: d\n  condition: '{}'\n  output: o\n  priority: INFO\n",
            c.replace('\'', "''")
        );
    }
    let (loader, engine) = load(&yaml);
    for r in loader.results() {
        assert!(r.errors.is_empty(), "unexpected errors: {:?}", r.errors);
    }
    let ev = JsonEvent::parse(event).expect("event");
    let mut m = Matches::new();
    engine.evaluate(&ev, &mut m);
    let mut out: Vec<usize> = m
        .iter()
        .map(|id| engine.rule(id).name[1..].parse().unwrap())
        .collect();
    out.sort();
    out
}

const CAT: &str = r#"{"source":"syscall","fields":{"evt.type":"openat","proc.name":"cat",
  "fd.name":"/etc/shadow","proc.pid":1234,"fd.sip":"10.1.2.3"}}"#;

#[test]
fn each_modifier_combines_the_operator_over_the_list() {
    let conds = [
        /* 0 */ "proc.name startswith anyof (ca, ba)",
        /* 1 */ "proc.name startswith anyof (ba, sh)",
        /* 2 */ "proc.name startswith allof (c, ca)",
        /* 3 */ "proc.name startswith allof (c, b)",
        /* 4 */ "proc.name = oneof (cat, dog)",
        /* 5 */ "proc.name startswith oneof (c, ca)",
        /* 6 */ "proc.name != allof (bash, sh)",
        /* 7 */ "proc.name != allof (cat, sh)",
        /* 8 */ "proc.name = anyof shells",
        /* 9 */ "proc.name != allof shells",
        /* 10 */ "fd.name endswith anyof (passwd, shadow)",
        /* 11 */ "fd.name contains allof (etc, sha)",
        /* 12 */ "fd.name glob anyof (\"/tmp/*\", \"/etc/s*\")",
        /* 13 */ "proc.name regex oneof (\"c.t\", \"b.*\")",
        /* 14 */ "proc.name icontains anyof (CA, XX)",
        /* 15 */ "proc.name startswith anyof ()",
        /* 16 */ "proc.pid = anyof (1, 1234)",
        /* 17 */ "proc.pid != allof (1, 2)",
        /* 18 */ "fd.sip = anyof (10.0.0.0/8, 192.168.0.1)",
        /* 19 */
        "not proc.name startswith anyof (x, y) and proc.name endswith allof (t, at)",
    ];
    assert_eq!(
        firing(&conds, CAT),
        [0, 2, 4, 6, 9, 10, 11, 12, 13, 14, 16, 17, 18, 19]
    );
}

#[test]
fn a_modifier_word_without_a_list_is_an_ordinary_value() {
    // As libs: `anyof` is a modifier only when a blank and a list (or a list name other than
    // `and`/`or`/`not`) follow it; otherwise it is the value compared with.
    let ev =
        r#"{"source":"syscall","fields":{"evt.type":"openat","proc.name":"anyof","proc.pid":1}}"#;
    assert_eq!(
        firing(
            &[
                "proc.name = anyof",
                "proc.name = anyof and proc.pid = 1",
                "proc.name = allof"
            ],
            ev
        ),
        [0, 1]
    );
}

#[test]
fn modifiers_are_refused_where_libs_refuses_them() {
    let bad = |cond: &str| {
        let (loader, _) = load(&format!(
            "- rule: r\n  desc: d\n  condition: {cond}\n  output: o\n  priority: INFO\n"
        ));
        loader
            .results()
            .iter()
            .flat_map(|r| r.errors.iter())
            .map(|e| e.message.clone())
            .collect::<Vec<_>>()
    };
    // `in` and numeric operators take no modifier: the modifier word is then a list name
    // or a number, and parsing fails after it.
    assert!(!bad("proc.name in anyof (a, b)").is_empty());
    assert!(!bad("proc.pid > anyof (1, 2)").is_empty());
    assert_eq!(
        bad("fd.sip startswith anyof (10.0.0.1)"),
        [
            "filter error: 'startswith' with modifier not supported for ip address and network \
          filters"
        ]
    );
    // Values are still checked item by item.
    assert_eq!(
        bad("evt.type = anyof (openat, opneat)"),
        ["unknown event type opneat. Did you mean 'openat'?"]
    );
}

#[test]
fn exception_comps_take_modifiers() {
    let yaml = r#"
- rule: r
  desc: d
  condition: evt.type = openat
  output: o
  priority: INFO
  exceptions:
    - name: by_prefix
      fields: [proc.name, fd.name]
      comps: [startswith anyof, endswith oneof]
      values:
        - [[ca, xx], [shadow, passwd]]
    - name: single
      fields: proc.name
      comps: startswith anyof
      values: [zz, yy]
"#;
    let (loader, engine) = load(yaml);
    assert!(!loader.has_errors(), "{:?}", loader.results());
    let fires = |ev: &str| {
        let mut m = Matches::new();
        engine.evaluate(&JsonEvent::parse(ev).unwrap(), &mut m);
        !m.is_empty()
    };
    // cat on /etc/shadow is excepted by the first exception.
    assert!(!fires(CAT));
    // Negative control: a name the exception does not cover fires.
    assert!(fires(
        r#"{"source":"syscall","fields":{"evt.type":"openat","proc.name":"vi","fd.name":"/etc/shadow"}}"#
    ));
    // The single-field exception with a modifier.
    assert!(!fires(
        r#"{"source":"syscall","fields":{"evt.type":"openat","proc.name":"yyy","fd.name":"/x"}}"#
    ));
    // A modifier on a comp that takes none is refused, with Falco's wording.
    let (loader, _) = load(
        "- rule: r\n  desc: d\n  condition: evt.type = openat\n  output: o\n  priority: INFO\n  \
         exceptions:\n    - name: e\n      fields: [proc.name]\n      comps: [in anyof]\n      \
         values: [[[a]]]\n",
    );
    let msgs: Vec<String> = loader
        .results()
        .iter()
        .flat_map(|r| r.errors.iter().map(|e| e.message.clone()))
        .collect();
    assert_eq!(msgs, ["'in anyof' is not a supported comparison operator"]);
}

fn need(cond: &str) -> OpenPathNeed {
    let (loader, engine) = load(&format!(
        "- rule: r\n  desc: d\n  condition: {cond}\n  output: \"%fd.name\"\n  priority: INFO\n"
    ));
    assert!(!loader.has_errors(), "{:?}", loader.results());
    assert!(
        !loader
            .results()
            .iter()
            .flat_map(|r| r.warnings.iter())
            .any(|w| w.code == WarningCode::NoEvttype)
    );
    engine.open_path_need()
}

fn prefixes(n: OpenPathNeed) -> Vec<String> {
    match n {
        OpenPathNeed::Paths(f) => {
            assert!(f.suffixes.is_empty());
            f.prefixes
                .into_iter()
                .map(|p| String::from_utf8(p).unwrap())
                .collect()
        }
        OpenPathNeed::All { rule, why } => panic!("every open needed by {rule}: {why}"),
    }
}

#[test]
fn the_open_path_prefilter_keeps_what_modified_checks_can_match() {
    assert_eq!(
        prefixes(need(
            "evt.type = openat and fd.name startswith anyof (/etc/ssh, /root)"
        )),
        ["/etc/ssh", "/root"]
    );
    assert_eq!(
        prefixes(need(
            "evt.type = openat and fd.name = oneof (/etc/a, /etc/b)"
        )),
        ["/etc/a", "/etc/b"]
    );
    assert_eq!(
        prefixes(need(
            "evt.type = anyof (openat, open) and fd.name = anyof (/etc/a)"
        )),
        ["/etc/a"]
    );
    // Conservative where no literal prefix bounds the match.
    assert!(matches!(
        need("evt.type = openat and fd.name glob anyof (\"/etc/*\")"),
        OpenPathNeed::All { .. }
    ));
    assert!(matches!(
        need("evt.type = openat and fd.name != allof (/etc/a)"),
        OpenPathNeed::All { .. }
    ));
}
