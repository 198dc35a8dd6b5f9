use super::*;
use crate::{EngineConfig, RuleLoader};

fn need(rules: &str) -> OpenPathNeed {
    let mut loader = RuleLoader::new();
    loader.load_str("t.yaml", rules);
    let engine = loader.compile(&EngineConfig::default());
    assert!(!loader.has_errors(), "{:?}", loader.results());
    engine.open_path_need()
}

fn rule(name: &str, cond: &str, out: &str) -> String {
    format!(
        "- rule: {name}\n  desc: d\n  condition: {cond}\n  output: \"{out}\"\n  priority: WARNING\n"
    )
}

fn paths(n: OpenPathNeed) -> (Vec<String>, Vec<String>) {
    match n {
        OpenPathNeed::Paths(f) => {
            let s = |v: Vec<Vec<u8>>| {
                v.into_iter()
                    .map(|a| String::from_utf8(a).unwrap())
                    .collect()
            };
            (s(f.prefixes), s(f.suffixes))
        }
        OpenPathNeed::All { rule, why } => panic!("All: {rule}: {why}"),
    }
}

/// The rule named and the reason, of a need for every open.
fn all_of(n: OpenPathNeed) -> (String, String) {
    match n {
        OpenPathNeed::All { rule, why } => (rule, why),
        p => panic!("expected every open to be needed: {p:?}"),
    }
}

#[test]
fn path_checks_become_prefixes_and_suffixes() {
    let text = [
        rule(
            "a",
            "evt.type = openat and fd.name startswith /etc and proc.name != x",
            "%fd.name",
        ),
        rule(
            "b",
            "evt.type in (open, openat) and fd.directory in (/bin, /usr/sbin/)",
            "%fd.name",
        ),
        rule(
            "c",
            "evt.type = openat and (fd.filename = shadow or fd.name endswith .pem)",
            "x",
        ),
        rule(
            "d",
            "evt.type = creat and fd.name pmatch (/var/run, /root/)",
            "x",
        ),
        rule(
            "e",
            "evt.type = openat and (fd.name glob '/proc/*/mem' or fd.name glob '*release_agent')",
            "x",
        ),
        rule(
            "f",
            "evt.type = openat and evt.arg.name in (/dev/mem, /dev/kmem)",
            "x",
        ),
        // `/.` paths are always sent: this rule needs no atom of its own.
        rule("g", "evt.type = openat and fd.name contains /.ssh/", "x"),
    ]
    .concat();
    let (p, s) = paths(need(&text));
    assert_eq!(
        p,
        [
            "/bin",
            "/dev/kmem",
            "/dev/mem",
            "/etc",
            "/proc/",
            "/root",
            "/usr/sbin",
            "/var/run"
        ]
    );
    assert_eq!(s, [".pem", "/shadow", "release_agent"]);
}

#[test]
fn an_and_takes_its_narrowest_conjunct_and_an_or_the_union() {
    let text = rule(
        "r",
        "evt.type = openat and fd.name startswith /usr and (fd.name = /etc/a or fd.name endswith /b) and fd.name startswith /",
        "x",
    );
    let (p, s) = paths(need(&text));
    assert_eq!((p, s), (vec!["/usr".to_string()], vec![]));
}

#[test]
fn rules_that_can_match_any_path_need_every_open() {
    for (cond, out) in [
        ("evt.type = openat and proc.name = cat", "x"),
        (
            "evt.type = openat and (fd.name startswith /etc or proc.name = cat)",
            "x",
        ),
        ("evt.type = openat and fd.name contains secret", "x"),
        ("evt.type = openat and not fd.name startswith /etc", "x"),
        ("evt.type = close and proc.name = cat", "x"),
        ("proc.name = cat", "x"),
        (
            "evt.type = openat and tolower(fd.name) startswith /etc",
            "x",
        ),
        // The tail after a character class is not a literal suffix.
        ("evt.type = openat and fd.name glob '*.[ch]'", "x"),
    ] {
        let (rule, why) = all_of(need(&rule("broad", cond, out)));
        assert_eq!(rule, "broad", "{cond}");
        assert!(why.contains("any path"), "{cond}: {why}");
    }
}

#[test]
fn fd_readers_on_other_events_must_exclude_files() {
    let unsafe_rule = rule("w", "evt.type = write and proc.name = x", "%fd.name");
    let (rule_name, why) = all_of(need(&unsafe_rule));
    assert!(rule_name == "w" && why.contains("write"), "{why}");
    let text = [
        rule(
            "n",
            "evt.type = connect and fd.type in (ipv4, ipv6) and proc.name = x",
            "%fd.name",
        ),
        rule(
            "m",
            "evt.type in (dup2, openat) and fd.typechar = 4 and fd.name startswith /x",
            "%fd.name",
        ),
        rule("e", "evt.type = execve and proc.name = x", "%proc.name"),
        rule("o", "evt.type = openat2 and fd.name = /a", "%fd.name"),
        // A bounded fd.name on another event: those files' opens are sent, so known.
        rule(
            "w",
            "evt.type = write and fd.name startswith /y and proc.name = x",
            "%fd.name",
        ),
        rule("u", "fd.filename = z and proc.name = x", "%fd.name"),
    ]
    .concat();
    assert_eq!(
        paths(need(&text)),
        (
            vec!["/x".to_string(), "/y".to_string()],
            vec!["/z".to_string()]
        )
    );
}

#[test]
fn disabled_and_other_source_rules_are_ignored() {
    let text = format!(
        "{}  enabled: false\n{}",
        rule("off", "evt.type = openat and proc.name = x", "x"),
        "- rule: k\n  desc: d\n  condition: ka.verb = get\n  output: x\n  priority: WARNING\n  source: k8s_audit\n"
    );
    assert_eq!(paths(need(&text)), (vec![], vec![]));
}

#[test]
fn fit_cuts_and_merges_atoms_and_refuses_too_many() {
    let f = OpenPathFilter {
        prefixes: vec![
            b"/etc/ssh/long-name".to_vec(),
            b"/etc/ssl".to_vec(),
            b"/etc".to_vec(),
            b"/usr/bin/a".to_vec(),
        ],
        suffixes: vec![
            b"/authorized_keys".to_vec(),
            b"_keys".to_vec(),
            b"/x.pem".to_vec(),
        ],
    };
    let fit = f.fit(8, 8, 8, 4).unwrap();
    assert_eq!(fit.prefixes, [b"/etc".to_vec(), b"/usr/bin".to_vec()]);
    assert_eq!(fit.suffixes, [b".pem".to_vec(), b"keys".to_vec()]);
    // Too many: the two sharing the longest head merge into it.
    let three = OpenPathFilter {
        prefixes: vec![b"/etc/ab".to_vec(), b"/etc/ac".to_vec(), b"/usr/x".to_vec()],
        suffixes: vec![b"/a.log".to_vec(), b"/b.log".to_vec(), b".pem".to_vec()],
    };
    let fit = three.fit(2, 32, 2, 16).unwrap();
    assert_eq!(fit.prefixes, [b"/etc/a".to_vec(), b"/usr/x".to_vec()]);
    assert_eq!(fit.suffixes, [b".log".to_vec(), b".pem".to_vec()]);
    assert_eq!(three.fit(1, 32, 2, 16).unwrap().prefixes, [b"/".to_vec()]);
    // Nothing in common: no atom can stand for both.
    assert!(f.fit(8, 8, 1, 4).is_none());
}

#[test]
fn a_rule_on_every_absolute_path_is_named() {
    let text = [
        rule("etc", "evt.type = openat and fd.name startswith /etc", "x"),
        rule("root files", "evt.type = openat and fd.directory = /", "x"),
    ]
    .concat();
    let (rule_name, why) = all_of(need(&text));
    assert_eq!(rule_name, "root files");
    assert!(why.contains("prefix of /"), "{why}");
    // A dirfd-only event type may read fd.*: its descriptors are directories, always sent.
    let text = rule(
        "mv",
        "evt.type = renameat and evt.arg.newpath startswith /bin",
        "%fd.name",
    );
    assert_eq!(paths(need(&text)), (vec![], vec![]));
}

#[test]
fn fd_table_wide_fields_need_every_open() {
    for (cond, out) in [
        ("evt.type = execve and proc.stdin.name startswith /tmp", "x"),
        ("evt.type = execve and proc.name = cat", "%proc.stdout.type"),
        ("evt.type = read and proc.fdopencount > 100", "x"),
        ("evt.type = execve and fd.types intersects (file)", "x"),
    ] {
        let (rule, why) = all_of(need(&rule("table", cond, out)));
        assert_eq!(rule, "table", "{cond} {out}");
        assert!(why.contains("fd table"), "{cond}: {why}");
    }
    // linkat may take a file's descriptor (AT_EMPTY_PATH): not fd-less.
    let (_, why) = all_of(need(&rule(
        "ln",
        "evt.type = linkat and proc.name = x",
        "%fs.path.source",
    )));
    assert!(why.contains("linkat"), "{why}");
}

#[test]
fn a_directory_atom_covers_the_directory_itself() {
    let text = rule(
        "pam",
        "evt.type = openat and fd.directory = /etc/pam.d/",
        "x",
    );
    // `fd.directory` of an fd of /etc/pam.d itself is /etc/pam.d.
    assert_eq!(paths(need(&text)), (vec!["/etc/pam.d".to_string()], vec![]));
}

#[test]
fn syscall_names_here_are_event_types_libs_knows() {
    for name in FDLESS.iter().chain(&OPEN_FAMILY) {
        assert!(
            crate::evttypes::is_event_type(name),
            "{name} is not in libs' event table"
        );
    }
}
