//! The read position of one followed audit log file, kept across restarts: which file
//! (device and inode, so a rotation while the detector was down is recognised) and how many
//! bytes and lines of it were judged. Written atomically (temporary file, fsync, rename).

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where reading a file stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub dev: u64,
    pub ino: u64,
    /// Bytes judged: the start of the next line to read.
    pub offset: u64,
    /// Lines judged (for messages naming a line).
    pub line: u64,
    /// Length and hash of the first bytes of the file's first line (0: not read yet), to
    /// recognise a file truncated and written again.
    #[serde(default)]
    pub head_len: u64,
    #[serde(default)]
    pub head_hash: u64,
}

/// FNV-1a: a small stable hash (the same in every build, unlike std's hasher).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The state file of `followed` inside `state_dir`: its path with `/` as `_` (readable),
/// plus a hash of the exact path (so `/a_b` and `/a/b` do not share one), plus `.pos`.
pub fn state_path(state_dir: &Path, followed: &Path) -> PathBuf {
    let text = followed.to_string_lossy();
    let name: String = text
        .chars()
        .map(|c| if c == '/' { '_' } else { c })
        .collect();
    state_dir.join(format!(
        "{}-{:016x}.pos",
        name.trim_start_matches('_'),
        fnv1a(followed.as_os_str().as_encoded_bytes())
    ))
}

/// Read a saved position; `Ok(None)` when there is none yet.
pub fn load(path: &Path) -> io::Result<Option<Position>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replace the saved position in one step: a crash leaves the old or the new one.
pub fn save(path: &Path, pos: &Position) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("pos.tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(pos).map_err(io::Error::other)?)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // Make the rename itself durable.
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing() {
        let dir = std::env::temp_dir().join(format!("aerie-pos-{}", std::process::id()));
        let p = state_path(&dir, Path::new("/var/log/kubernetes/audit.log"));
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("var_log_kubernetes_audit.log-") && name.ends_with(".pos"),
            "{p:?}"
        );
        assert_ne!(
            state_path(&dir, Path::new("/a_b")),
            state_path(&dir, Path::new("/a/b"))
        );
        assert_eq!(load(&p).unwrap(), None);
        let pos = Position {
            dev: 1,
            ino: 2,
            offset: 300,
            line: 4,
            head_len: 10,
            head_hash: 99,
        };
        save(&p, &pos).unwrap();
        assert_eq!(load(&p).unwrap(), Some(pos));
        fs::write(&p, b"garbage").unwrap();
        assert!(load(&p).is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
