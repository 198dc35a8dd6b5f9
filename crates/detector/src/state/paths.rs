//! Lexical path resolution, as Falco does for `fd.name`: relative paths are joined to the
//! directory they are relative to, and `.`/`..`/duplicate slashes are folded. Symlinks are not
//! followed (the kernel did that; we report what the program named).

/// Resolve `path` against `base` (an absolute directory) into `out` (cleared first).
pub fn resolve_into(base: &str, path: &str, out: &mut String) {
    out.clear();
    let mut stack: Vec<&str> = Vec::with_capacity(16);
    if !path.starts_with('/') {
        push_components(&mut stack, base);
    }
    push_components(&mut stack, path);
    if stack.is_empty() {
        out.push('/');
        return;
    }
    for c in stack {
        out.push('/');
        out.push_str(c);
    }
}

/// Resolve into a new string.
pub fn resolve(base: &str, path: &str) -> String {
    let mut s = String::with_capacity(base.len() + path.len() + 1);
    resolve_into(base, path, &mut s);
    s
}

fn push_components<'a>(stack: &mut Vec<&'a str>, p: &'a str) {
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            c => stack.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_dots_and_joins_relative_paths() {
        assert_eq!(resolve("/", "/etc/../etc/../etc/shadow"), "/etc/shadow");
        assert_eq!(resolve("/home/u", "x/./y"), "/home/u/x/y");
        assert_eq!(resolve("/home/u", "../../../.."), "/");
        assert_eq!(resolve("/tmp", "//a//b/"), "/a/b");
        assert_eq!(resolve("/tmp", ""), "/tmp");
    }
}
