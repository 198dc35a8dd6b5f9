//! Builds `crates/detector-ebpf` for `bpfel-unknown-none` with the nightly toolchain and
//! bpf-linker (through aya-build), so that `src/ebpf` can embed the object with
//! `include_bytes_aligned!(concat!(env!("OUT_DIR"), "/detector-ebpf"))`.
//!
//! `AERIE_SKIP_EBPF=1` writes an empty object instead (for doc builds on machines without
//! the eBPF toolchain); the loader then fails at run time with a clear error.

use std::{env, fs, path::PathBuf, process::Command};

use anyhow::{Context as _, anyhow, bail};

const BOOTSTRAP_HINT: &str = "run `scripts/bootstrap` (installs nightly rust-src and bpf-linker)";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=AERIE_SKIP_EBPF");
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let crates_dir = manifest_dir
        .parent()
        .ok_or_else(|| anyhow!("crates/detector has no parent directory"))?;
    let ebpf_dir = crates_dir.join("detector-ebpf");
    let common_dir = crates_dir.join("detector-common");
    println!("cargo:rerun-if-changed={}", common_dir.display());

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    if env::var("AERIE_SKIP_EBPF").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        println!("cargo:warning=AERIE_SKIP_EBPF set: embedding an empty eBPF object");
        println!("cargo:rerun-if-changed={}", ebpf_dir.display());
        fs::write(out_dir.join("detector-ebpf"), b"")?;
        return Ok(());
    }

    check_toolchain()?;
    // aya-build forwards the nested cargo's stderr as build warnings: keep it to errors.
    // SAFETY: build scripts are single-threaded at this point.
    unsafe { env::set_var("CARGO_TERM_QUIET", "true") };
    let ebpf_dir = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "detector-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .with_context(|| {
        format!(
            "building the eBPF programs failed; if the toolchain is incomplete, {BOOTSTRAP_HINT}"
        )
    })
}

/// Fail early, with the fix named, when nightly + rust-src or bpf-linker is missing.
fn check_toolchain() -> anyhow::Result<()> {
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .output();
    let sysroot = match sysroot {
        Ok(out) if out.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
        _ => bail!(
            "the nightly Rust toolchain is missing (needed for crates/detector-ebpf); {BOOTSTRAP_HINT}"
        ),
    };
    let core_src = sysroot.join("lib/rustlib/src/rust/library/core");
    if !core_src.is_dir() {
        bail!(
            "nightly rust-src is missing ({} not found); {BOOTSTRAP_HINT}",
            core_src.display()
        );
    }
    let linker_found = env::var_os("PATH")
        .map(|paths| env::split_paths(&paths).any(|dir| dir.join("bpf-linker").is_file()))
        .unwrap_or(false);
    if !linker_found {
        bail!("bpf-linker is not on PATH; {BOOTSTRAP_HINT}");
    }
    Ok(())
}
