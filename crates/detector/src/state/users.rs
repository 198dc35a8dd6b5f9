//! User and group names from /etc/passwd and /etc/group, reloaded when either file changes.
//!
//! Lookups are hash-map reads; the files are re-checked (one `stat` each) only when the
//! owner calls [`UserDb::refresh_if_changed`], e.g. once a second from the event loop.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::hash::FastMap;

/// Names by id, from one passwd/group pair.
pub struct UserDb {
    passwd_path: PathBuf,
    group_path: PathBuf,
    users: FastMap<u32, Box<str>>,
    groups: FastMap<u32, Box<str>>,
    /// Home directories by uid (`user.homedir`).
    homes: FastMap<u32, Box<str>>,
    stamp: (Option<Stamp>, Option<Stamp>),
}

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: Option<SystemTime>,
    len: u64,
    ino: u64,
}

impl UserDb {
    /// The host's databases.
    pub fn system() -> Self {
        Self::from_files("/etc/passwd", "/etc/group")
    }

    /// Load from the given files; unreadable files give empty tables.
    pub fn from_files(passwd: impl AsRef<Path>, group: impl AsRef<Path>) -> Self {
        let mut db = UserDb {
            passwd_path: passwd.as_ref().to_owned(),
            group_path: group.as_ref().to_owned(),
            users: FastMap::default(),
            groups: FastMap::default(),
            homes: FastMap::default(),
            stamp: (None, None),
        };
        db.reload();
        db
    }

    /// Reload if either file changed since the last load. Returns whether it reloaded.
    pub fn refresh_if_changed(&mut self) -> bool {
        let now = (stamp(&self.passwd_path), stamp(&self.group_path));
        if now == self.stamp {
            return false;
        }
        self.reload();
        true
    }

    fn reload(&mut self) {
        self.stamp = (stamp(&self.passwd_path), stamp(&self.group_path));
        let passwd = std::fs::read_to_string(&self.passwd_path).unwrap_or_default();
        let group = std::fs::read_to_string(&self.group_path).unwrap_or_default();
        self.users.clear();
        self.homes.clear();
        for (id, name, fields) in parse_colon_db(&passwd) {
            // passwd: name:pw:uid:gid:gecos:home:shell (fields: gid, gecos, home, shell)
            if let Some(home) = fields.get(2) {
                self.homes.entry(id).or_insert_with(|| (*home).into());
            }
            self.users.entry(id).or_insert_with(|| name.into());
        }
        self.groups.clear();
        for (id, name, _) in parse_colon_db(&group) {
            self.groups.entry(id).or_insert_with(|| name.into());
        }
    }

    pub fn user_name(&self, uid: u32) -> Option<&str> {
        self.users.get(&uid).map(|s| &**s)
    }

    pub fn group_name(&self, gid: u32) -> Option<&str> {
        self.groups.get(&gid).map(|s| &**s)
    }

    pub fn home_dir(&self, uid: u32) -> Option<&str> {
        self.homes.get(&uid).map(|s| &**s)
    }

    /// Number of users known.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }
}

fn stamp(p: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    Some(Stamp {
        mtime: m.modified().ok(),
        len: m.len(),
        ino: m.ino(),
    })
}

/// `name:x:id:rest...` lines → (id, name, fields after the id). Malformed lines are skipped.
fn parse_colon_db(text: &str) -> impl Iterator<Item = (u32, &str, Vec<&str>)> {
    text.lines().filter_map(|line| {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut it = line.split(':');
        let name = it.next()?;
        let _pw = it.next()?;
        let id = it.next()?.parse().ok()?;
        if name.is_empty() {
            return None;
        }
        Some((id, name, it.collect()))
    })
}

/// Kept for callers that want a plain map (tests, describe output).
pub fn parse_names(text: &str) -> HashMap<u32, String> {
    parse_colon_db(text)
        .map(|(id, name, _)| (id, name.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("aerie-users-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn parses_names_and_skips_garbage() {
        let m = parse_names(
            "root:x:0:0:root:/root:/bin/bash\n#c\nbad\nnobody:x:65534:65534::/:/x\n:x:5:\nd:x:notnum:1\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[&0], "root");
        assert_eq!(m[&65534], "nobody");
    }

    #[test]
    fn reloads_when_a_file_changes() {
        let d = tmp("reload");
        let (p, g) = (d.join("passwd"), d.join("group"));
        std::fs::write(&p, "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(&g, "root:x:0:\n").unwrap();
        let mut db = UserDb::from_files(&p, &g);
        assert_eq!(db.user_name(0), Some("root"));
        assert_eq!(db.home_dir(0), Some("/root"));
        assert_eq!(db.user_name(1001), None);
        assert!(!db.refresh_if_changed());
        std::fs::write(
            &p,
            "root:x:0:0:root:/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(&g, "root:x:0:\nalice:x:1001:\n").unwrap();
        assert!(db.refresh_if_changed());
        assert_eq!(db.user_name(1001), Some("alice"));
        assert_eq!(db.group_name(1001), Some("alice"));
    }

    #[test]
    fn system_database_knows_root() {
        let db = UserDb::system();
        assert_eq!(db.user_name(0), Some("root"));
        assert_eq!(db.group_name(0), Some("root"));
    }
}
