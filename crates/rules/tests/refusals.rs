//! Rule-language mistakes Falco 0.44 refuses, refused with its wording, at the line and column
//! of the offending token, with "did you mean …" where a close name exists. Each case has a
//! negative control: the corrected text loads without errors.

use aerie_rules::{EngineConfig, JsonEvent, RuleLoader};

/// Load `text` as `r.yaml`; every error as `file:line:col: CODE message (item)`.
fn errors(text: &str) -> Vec<String> {
    let mut loader = RuleLoader::new();
    loader.load_str("r.yaml", text);
    loader.compile(&EngineConfig::default());
    loader
        .results()
        .iter()
        .flat_map(|r| r.errors.iter())
        .map(ToString::to_string)
        .collect()
}

/// A syscall rule with this condition (line 3, condition at column 14) and output (line 4,
/// output at column 11).
fn rule(cond: &str, output: &str) -> String {
    format!("- rule: R\n  desc: d\n  condition: {cond}\n  output: {output}\n  priority: WARNING\n")
}

fn assert_loads(text: &str) {
    let e = errors(text);
    assert!(e.is_empty(), "unexpected errors for {text:?}: {e:?}");
}

#[test]
fn an_unknown_event_type_is_refused_at_its_token() {
    assert_eq!(
        errors(&rule("evt.type = opneat", "p=%proc.name")),
        [
            "r.yaml:3:25: LOAD_ERR_COMPILE_CONDITION: unknown event type opneat. \
          Did you mean 'openat'? (rule 'R')"
        ]
    );
    assert_eq!(
        errors(&rule("evt.type in (open, xyzzy)", "p=%proc.name")),
        ["r.yaml:3:33: LOAD_ERR_COMPILE_CONDITION: unknown event type xyzzy (rule 'R')"]
    );
    // A bad name in a list points at the list's name in the condition.
    let text = format!(
        "- list: types\n  items: [openat, opne]\n{}",
        rule("proc.name = cat and evt.type in (types)", "p=%proc.name")
    );
    assert_eq!(
        errors(&text),
        [
            "r.yaml:5:47: LOAD_ERR_COMPILE_CONDITION: unknown event type opne. \
          Did you mean 'open'? (rule 'R')"
        ]
    );
    // Negative control: syscalls and non-syscall events from libs' event table all load.
    assert_loads(&rule(
        "evt.type in (openat, openat2, execveat, container, procexit, signaldeliver, switch, \
         pluginevent, asyncevent, io_uring_setup, NA) or evt.type = connect",
        "p=%proc.name",
    ));
}

#[test]
fn an_error_in_a_macro_points_into_the_macro() {
    let text = format!(
        "- macro: opens\n  condition: evt.type = openat or evt.type = opneat\n{}",
        rule("opens and proc.name = cat", "p=%proc.name")
    );
    assert_eq!(
        errors(&text),
        [
            "r.yaml:2:46: LOAD_ERR_COMPILE_CONDITION: unknown event type opneat. \
          Did you mean 'openat'? (macro 'opens')"
        ]
    );
}

#[test]
fn unknown_event_arguments_and_non_numeric_indexes_are_refused() {
    assert_eq!(
        errors(&rule(
            "evt.type = openat and evt.arg.flgs contains O_RDONLY",
            "p=%proc.name"
        )),
        [
            "r.yaml:3:44: LOAD_ERR_COMPILE_CONDITION: unknown event argument flgs. \
          Did you mean 'flags'? (rule 'R')"
        ]
    );
    assert_eq!(
        errors(&rule(
            "evt.type = openat and evt.arg[abc] = 3",
            "p=%proc.name"
        )),
        ["r.yaml:3:44: LOAD_ERR_COMPILE_CONDITION: abc is not a valid number (rule 'R')"]
    );
    assert_eq!(
        errors(&rule(
            "evt.type = openat and evt.rawarg[0] = 3",
            "p=%proc.name"
        )),
        [
            "r.yaml:3:47: LOAD_ERR_COMPILE_CONDITION: evt.arg fields must be expressed \
          explicitly (rule 'R')"
        ]
    );
    // Outputs check argument names too.
    assert_eq!(
        errors(&rule("evt.type = openat", "\"%evt.arg.flgs\"")),
        [
            "r.yaml:4:11: LOAD_ERR_COMPILE_OUTPUT: invalid formatting token %evt.arg.flgs: \
          unknown event argument flgs. Did you mean 'flags'? (rule 'R')"
        ]
    );
    assert_eq!(
        errors(&rule("evt.type = openat", "a=%evt.arg[abc]")),
        [
            "r.yaml:4:11: LOAD_ERR_COMPILE_OUTPUT: invalid formatting token %evt.arg[abc]: \
          abc is not a valid number (rule 'R')"
        ]
    );
    // Negative control.
    assert_loads(&rule(
        "evt.type = openat and evt.arg.flags contains O_RDONLY and evt.arg[1] != x \
         and evt.rawarg.res < 0 and evt.arg.name startswith /etc",
        "\"%evt.arg.flags %evt.arg[0]\"",
    ));
}

const K8S: &str = "- rule: K\n  desc: d\n  source: k8s_audit\n  condition: ";

#[test]
fn eq_and_contains_on_list_fields_are_refused() {
    let k = |cond: &str| format!("{K8S}{cond}\n  output: \"%ka.user.name\"\n  priority: INFO\n");
    assert_eq!(
        errors(&k("ka.req.pod.containers.image = nginx")),
        [
            "r.yaml:4:42: LOAD_ERR_COMPILE_CONDITION: filter error: '=' operator not supported \
          list filters (rule 'K')"
        ]
    );
    assert_eq!(
        errors(&k(
            "ka.verb = create and ka.req.pod.containers.image contains nginx"
        )),
        [
            "r.yaml:4:63: LOAD_ERR_COMPILE_CONDITION: filter error: 'contains' operator not \
          supported list filters (rule 'K')"
        ]
    );
    assert_eq!(
        errors(&k(
            "ka.req.pod.containers.image startswith anyof (nginx, redis)"
        )),
        [
            "r.yaml:4:42: LOAD_ERR_COMPILE_CONDITION: filter error: 'startswith anyof' operator \
          not supported list filters (rule 'K')"
        ]
    );
    // Negative control: `in`, `intersects` and `exists` stay allowed, and a transformed list
    // field is no longer a list.
    assert_loads(&k(
        "ka.req.pod.containers.image in (nginx) or ka.req.pod.containers.image intersects \
         (redis) or ka.req.pod.containers.image exists",
    ));
}

#[test]
fn a_percent_that_starts_no_field_is_refused_in_outputs() {
    assert_eq!(
        errors(&rule("evt.type = openat", "100% %proc.name")),
        [
            "r.yaml:4:14: LOAD_ERR_COMPILE_OUTPUT: unknown filter: unexpected token after ' \
          (every '%' must start a field such as %proc.name; there is no escape for a literal \
          '%') (rule 'R')"
        ]
    );
    assert_eq!(
        errors(&rule("evt.type = openat", "\"%{proc.name}\"")),
        [
            "r.yaml:4:12: LOAD_ERR_COMPILE_OUTPUT: unknown filter: unexpected token after ' \
          (every '%' must start a field such as %proc.name; there is no escape for a literal \
          '%') (rule 'R')"
        ]
    );
    assert_eq!(
        errors(&rule("evt.type = openat", "at 100%")),
        [
            "r.yaml:4:17: LOAD_ERR_COMPILE_OUTPUT: invalid formatting syntax: formatting cannot \
          end with a % (rule 'R')"
        ]
    );
    assert_eq!(
        errors(&rule("evt.type = openat", "\"%12\"")),
        [
            "r.yaml:4:12: LOAD_ERR_COMPILE_OUTPUT: invalid formatting syntax: formatting cannot \
          end with a number (rule 'R')"
        ]
    );
}

#[test]
fn a_width_before_a_field_cuts_or_pads_it_as_falco_does() {
    let mut loader = RuleLoader::new();
    loader.load_str(
        "r.yaml",
        &rule(
            "evt.type = openat",
            "\"[%5proc.name][%2proc.name][%proc.name]\"",
        ),
    );
    let engine = loader.compile(&EngineConfig::default());
    assert!(!loader.has_errors(), "{:?}", loader.results());
    let ev = JsonEvent::parse(r#"{"fields":{"evt.type":"openat","proc.name":"cat"}}"#).unwrap();
    let (id, _) = engine.rule_by_name("R").unwrap();
    let (text, fields) = engine.format_output(id, &ev);
    assert_eq!(text, "[cat  ][ca][cat]");
    assert_eq!(fields["proc.name"], "cat");
}

#[test]
fn unknown_fields_and_macros_get_a_suggestion() {
    assert_eq!(
        errors(&rule(
            "evt.type = execve and proc.nme = bash",
            "p=%proc.name"
        )),
        [
            "r.yaml:3:36: LOAD_ERR_COMPILE_CONDITION: filter_check called with nonexistent \
          field proc.nme. Did you mean 'proc.name'? (rule 'R')"
        ]
    );
    let text = format!(
        "- macro: spawned_process\n  condition: evt.type = execve\n{}",
        rule("spawnd_process and proc.name = bash", "p=%proc.name")
    );
    assert_eq!(
        errors(&text),
        [
            "r.yaml:5:14: LOAD_ERR_COMPILE_CONDITION: Undefined macro 'spawnd_process' used in \
          filter. Did you mean 'spawned_process'? (rule 'R')"
        ]
    );
    // Far from every name: Falco's message alone.
    assert_eq!(
        errors(&rule("evt.type = execve and zzzz", "p=%proc.name")),
        [
            "r.yaml:3:36: LOAD_ERR_COMPILE_CONDITION: Undefined macro 'zzzz' used in filter. \
          (rule 'R')"
        ]
    );
}

#[test]
fn skip_if_unknown_filter_skips_unknown_event_types_as_falco_does() {
    // Falco's err_is_unknown_type_or_field: an unknown event type (like an unknown field)
    // becomes a LOAD_UNKNOWN_FILTER warning and the rule is left out; other errors stay errors.
    let text = "- rule: R\n  desc: d\n  condition: evt.type = opneat\n  output: p=%proc.name\n  \
                priority: WARNING\n  skip-if-unknown-filter: true\n";
    let mut loader = RuleLoader::new();
    loader.load_str("r.yaml", text);
    let engine = loader.compile(&EngineConfig::default());
    let r = &loader.results()[0];
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let w: Vec<String> = r.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        [
            "r.yaml:3:14: LOAD_UNKNOWN_FILTER: unknown event type opneat. Did you mean 'openat'? \
          (rule 'R')"
        ]
    );
    assert!(engine.rule_by_name("R").is_none());
    // Not an unknown name: still an error under skip-if-unknown-filter.
    assert_eq!(
        errors(&text.replace("p=%proc.name", "at 100%")),
        [
            "r.yaml:4:17: LOAD_ERR_COMPILE_OUTPUT: invalid formatting syntax: formatting cannot \
          end with a % (rule 'R')"
        ]
    );
}

#[test]
fn tokens_in_folded_and_quoted_scalars_are_located_where_written() {
    let text = "- macro: opens\n  condition: >\n    evt.type in (open, openat)\n    \
                or (evt.type = opneat\n        and proc.name = cat)\n\
                - rule: R\n  desc: d\n  condition: \"opens and evt.arg.flags = \\\"x y\\\"\"\n  \
                output: 'it''s %proc.name'\n  priority: WARNING\n";
    assert_eq!(
        errors(text),
        [
            "r.yaml:4:20: LOAD_ERR_COMPILE_CONDITION: unknown event type opneat. \
          Did you mean 'openat'? (macro 'opens')"
        ]
    );
    let text = text.replace("opneat", "openat");
    assert_loads(&text);
    assert_eq!(
        errors(&text.replace("flags", "flgs")),
        [
            "r.yaml:8:33: LOAD_ERR_COMPILE_CONDITION: unknown event argument flgs. \
          Did you mean 'flags'? (rule 'R')"
        ]
    );
    assert_eq!(
        errors(&text.replace("%proc.name", "%{proc.name}")),
        [
            "r.yaml:9:18: LOAD_ERR_COMPILE_OUTPUT: unknown filter: unexpected token after ' \
          (every '%' must start a field such as %proc.name; there is no escape for a literal \
          '%') (rule 'R')"
        ]
    );
}
