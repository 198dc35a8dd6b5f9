//! The floor of the hook design on this machine, for `benches/kernel_path.rs`.
//!
//! Attaches the object's calibration programs (`detector-ebpf/src/calibration.rs`) instead
//! of the detector's, so that a benchmark can tell how much of the detector's overhead is
//! the `sys_enter`/`sys_exit` raw tracepoints themselves and the entry read of a path, which
//! no amount of work in the programs can remove.

use aya::{EbpfLoader, programs::BtfTracePoint};
use detector_common::MAX_RINGS;

use super::{CaptureError, EBPF_OBJECT, page_size, ring_name};

/// What the calibration programs do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookFloor {
    /// `sys_enter` and `sys_exit` programs that return at once.
    Empty,
    /// As `Empty`, and `sys_enter` reads each open's path from user memory (the same
    /// bound as the detector's path filter).
    PathRead,
}

/// Attached calibration programs; dropping it detaches them.
pub struct Calibration {
    _ebpf: aya::Ebpf,
}

impl Calibration {
    /// Load the object and attach the programs for `floor`. Needs the same privileges as
    /// [`super::Capture::start`].
    pub fn attach(floor: HookFloor) -> Result<Self, CaptureError> {
        if EBPF_OBJECT.is_empty() {
            return Err(CaptureError::NoObject);
        }
        let btf = aya::Btf::from_sys_fs().map_err(|e| CaptureError::Btf(e.to_string()))?;
        let mut loader = EbpfLoader::new();
        loader.btf(Some(&btf));
        loader.allow_unsupported_maps();
        for i in 0..MAX_RINGS {
            loader.map_max_entries(ring_name(i), page_size());
        }
        let mut ebpf = loader.load(EBPF_OBJECT).map_err(CaptureError::Load)?;
        let enter = match floor {
            HookFloor::Empty => "calibrate_sys_enter",
            HookFloor::PathRead => "calibrate_sys_enter_path",
        };
        for (name, tracepoint) in [(enter, "sys_enter"), ("calibrate_sys_exit", "sys_exit")] {
            let prog: &mut BtfTracePoint = ebpf
                .program_mut(name)
                .ok_or(CaptureError::MissingProgram(name))?
                .try_into()
                .map_err(|source| CaptureError::Program { name, source })?;
            prog.load(tracepoint, &btf)
                .map_err(|source| CaptureError::Program { name, source })?;
            prog.attach()
                .map_err(|source| CaptureError::Program { name, source })?;
        }
        Ok(Self { _ebpf: ebpf })
    }
}
