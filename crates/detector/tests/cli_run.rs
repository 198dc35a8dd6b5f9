//! `aerie-detector run` refuses clearly: bad configuration, bad outputs, missing privileges.

use std::os::unix::process::CommandExt;
use std::process::Command;

fn detector() -> Command {
    Command::new(env!("CARGO_BIN_EXE_aerie-detector"))
}

#[test]
fn a_missing_explicit_config_is_named() {
    let out = detector()
        .args(["run", "--config", "/nonexistent/aerie.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/aerie.yaml"), "{err}");
}

#[test]
fn an_unknown_output_is_rejected_by_the_cli() {
    let out = detector()
        .args(["run", "--output", "carrier-pigeon"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("carrier-pigeon") && err.contains("file:PATH"),
        "{err}"
    );
}

#[test]
fn missing_privileges_are_explained() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Already unprivileged: run as we are.
        let out = detector()
            .args(["run", "--output", "stdout"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("CAP_BPF") && err.contains("root"), "{err}");
        return;
    }
    // As root, drop to nobody for the child. If nobody cannot reach the build directory,
    // run a copy from the temporary directory.
    let as_nobody = |mut c: Command| {
        c.args(["run", "--output", "stdout"])
            .current_dir("/")
            .uid(65534)
            .gid(65534)
            .output()
    };
    let out = match as_nobody(detector()) {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            use std::os::unix::fs::PermissionsExt;
            let dir = std::env::temp_dir().join(format!("aerie-cli-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            let copy = dir.join("aerie-detector");
            std::fs::copy(env!("CARGO_BIN_EXE_aerie-detector"), &copy).unwrap();
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
            let out = as_nobody(Command::new(&copy)).unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            out
        }
        Err(e) => panic!("running aerie-detector as nobody: {e}"),
    };
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs root, or the capabilities CAP_BPF, CAP_PERFMON"),
        "{err}"
    );
    assert!(err.contains("euid 65534"), "{err}");
}
