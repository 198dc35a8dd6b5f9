//! Rule exceptions, expanded into the condition text exactly as Falco does:
//! `(COND) and not ((f1 c1 v1 and f2 c2 v2) or (...))`.

use crate::diag::Context;
use crate::fields::FieldRegistry;
use crate::loader::{Entry, ExceptionInfo};

/// Quote a value that contains a space (and is not quoted already), as Falco does.
fn quote_item(s: &str) -> String {
    if s.contains(' ') && !s.starts_with('"') && !s.starts_with('\'') {
        format!("\"{s}\"")
    } else {
        s.to_owned()
    }
}

fn paren_item(s: &str) -> String {
    if s.starts_with('(') {
        s.to_owned()
    } else {
        format!("({s})")
    }
}

/// Comps whose value is a parenthesized list: list operators, and string operators with a
/// modifier (`startswith anyof`).
fn is_list_op(op: &str) -> bool {
    matches!(op, "in" | "intersects" | "pmatch") || crate::loader::is_operator_with_modifier(op)
}

fn field_ok(registry: &FieldRegistry, f: &str) -> bool {
    let (name, _) = match f.find('[') {
        Some(i) => (&f[..i], &f[i..]),
        None => (f, ""),
    };
    registry.resolve(name).is_some()
}

/// The rule condition with its exceptions appended.
pub fn build_exception_condition(
    condition: &str,
    exceptions: &[ExceptionInfo],
    registry: &FieldRegistry,
) -> Result<String, (String, Context)> {
    if exceptions.is_empty() {
        return Ok(condition.to_owned());
    }
    let mut out = format!("({condition})");
    for ex in exceptions {
        let fail = |m: String| Err((m, ex.ctx.clone()));
        let icond = match (&ex.fields, &ex.comps) {
            (Some(Entry::Item(field)), Some(Entry::Item(comp))) => {
                if !field_ok(registry, field) {
                    return fail(format!("'{field}' is not a supported filter field"));
                }
                let mut items = Vec::new();
                for v in &ex.values {
                    match v {
                        Entry::Item(s) => items.push(quote_item(s)),
                        Entry::List(_) => {
                            return fail(
                                "Expected values array to contain a list of strings".into(),
                            );
                        }
                    }
                }
                if items.is_empty() {
                    String::new()
                } else {
                    format!("({field} {comp} ({}))", items.join(", "))
                }
            }
            (Some(Entry::List(fields)), Some(Entry::List(comps))) => {
                for f in fields {
                    if let Entry::Item(f) = f
                        && !field_ok(registry, f)
                    {
                        return fail(format!("'{f}' is not a supported filter field"));
                    }
                }
                let mut alts = Vec::new();
                for values in &ex.values {
                    let Entry::List(values) = values else {
                        return fail("Fields and values lists must have equal length".into());
                    };
                    if values.len() != fields.len() {
                        return fail("Fields and values lists must have equal length".into());
                    }
                    let mut conj = String::from("(");
                    for (k, ((field, comp), value)) in
                        fields.iter().zip(comps).zip(values).enumerate()
                    {
                        let (Entry::Item(field), Entry::Item(comp)) = (field, comp) else {
                            return fail("Exception fields and comps must be strings".into());
                        };
                        let istr = match value {
                            Entry::List(items) => {
                                let mut parts = Vec::new();
                                for i in items {
                                    match i {
                                        Entry::Item(s) => parts.push(quote_item(s)),
                                        Entry::List(_) => {
                                            return fail(
                                                "Exception values must not be nested lists".into(),
                                            );
                                        }
                                    }
                                }
                                format!("({})", parts.join(", "))
                            }
                            Entry::Item(s) if is_list_op(comp) => paren_item(s),
                            Entry::Item(s) => quote_item(s),
                        };
                        if k > 0 {
                            conj.push_str(" and ");
                        }
                        conj.push_str(&format!(" {field} {comp} {istr}"));
                    }
                    conj.push(')');
                    alts.push(conj);
                }
                if alts.is_empty() {
                    String::new()
                } else {
                    format!("({})", alts.join(" or "))
                }
            }
            _ => {
                return fail(
                    "Rule exception item must have fields property with a list of fields".into(),
                );
            }
        };
        if !icond.is_empty() {
            out.push_str(" and not ");
            out.push_str(&icond);
        }
    }
    Ok(out)
}
