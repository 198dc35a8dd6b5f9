//! The floor of the hook design on this machine, for `benches/kernel_path.rs`.
//!
//! Attaches the object's calibration programs (`detector-ebpf/src/calibration.rs`) instead
//! of the detector's, so that a benchmark can tell how much of the detector's overhead is
//! the `sys_enter`/`sys_exit` raw tracepoints themselves and the entry read of a path, which
//! no amount of work in the programs can remove.

use aya::{
    EbpfLoader,
    programs::{BtfTracePoint, tp_btf::BtfTracePointLinkId},
};
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

/// Loaded calibration programs, attached or not; dropping it detaches them.
pub struct Calibration {
    ebpf: aya::Ebpf,
    programs: [&'static str; 2],
    /// Links while attached.
    links: Option<[BtfTracePointLinkId; 2]>,
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
        let programs = [enter, "calibrate_sys_exit"];
        for (name, tracepoint) in programs.into_iter().zip(["sys_enter", "sys_exit"]) {
            program(&mut ebpf, name)?
                .load(tracepoint, &btf)
                .map_err(|source| CaptureError::Program { name, source })?;
        }
        let mut calibration = Self {
            ebpf,
            programs,
            links: None,
        };
        calibration.resume()?;
        Ok(calibration)
    }

    /// Detach the programs (they stay loaded), so that a benchmark can alternate short
    /// runs with and without them.
    pub fn pause(&mut self) -> Result<(), CaptureError> {
        let Some(links) = self.links.take() else {
            return Ok(());
        };
        for (name, link) in self.programs.into_iter().zip(links) {
            program(&mut self.ebpf, name)?
                .detach(link)
                .map_err(|source| CaptureError::Program { name, source })?;
        }
        Ok(())
    }

    /// Attach the programs again after [`Calibration::pause`].
    pub fn resume(&mut self) -> Result<(), CaptureError> {
        if self.links.is_some() {
            return Ok(());
        }
        let [enter, exit] = self.programs;
        let attach = |ebpf: &mut aya::Ebpf, name: &'static str| {
            program(ebpf, name)?
                .attach()
                .map_err(|source| CaptureError::Program { name, source })
        };
        let enter_link = attach(&mut self.ebpf, enter)?;
        let exit_link = match attach(&mut self.ebpf, exit) {
            Ok(link) => link,
            Err(e) => {
                let _ = program(&mut self.ebpf, enter).map(|p| p.detach(enter_link));
                return Err(e);
            }
        };
        self.links = Some([enter_link, exit_link]);
        Ok(())
    }
}

fn program<'a>(
    ebpf: &'a mut aya::Ebpf,
    name: &'static str,
) -> Result<&'a mut BtfTracePoint, CaptureError> {
    ebpf.program_mut(name)
        .ok_or(CaptureError::MissingProgram(name))?
        .try_into()
        .map_err(|source| CaptureError::Program { name, source })
}
