//! Choosing the device a run computes on: Burn's CPU backend (flex) or a GPU backend built in
//! through a cargo feature (`wgpu`, `vulkan`, `cuda`).
//!
//! Opening a device proves it works (a tiny computation is run and read back), so a machine
//! without an adapter or driver gets a clear [`DeviceError`] instead of a panic deep in a step.

use std::fmt;
use std::str::FromStr;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// A device a run can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    /// Burn's multi-threaded pure-Rust CPU backend.
    Flex,
    /// wgpu (Vulkan, Metal, DX12 or OpenGL; Mesa's software renderer without a GPU).
    Wgpu,
    /// Vulkan through cubecl's SPIR-V compiler (needs a Vulkan driver).
    Vulkan,
    /// CUDA (needs an NVIDIA driver; building needs one LLVM download, see README).
    Cuda,
}

/// A device that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "device `{device}` is not built in: rebuild with `--features {device}` (e.g. `cargo run -p xtask --features {device} -- checklist ...`)"
    )]
    NotBuilt { device: DeviceChoice },
    #[error("device `{device}` is built in but cannot be used on this machine: {reason}")]
    Unavailable {
        device: DeviceChoice,
        reason: String,
    },
}

impl DeviceChoice {
    pub const ALL: [DeviceChoice; 4] = [
        DeviceChoice::Flex,
        DeviceChoice::Wgpu,
        DeviceChoice::Vulkan,
        DeviceChoice::Cuda,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            DeviceChoice::Flex => "flex",
            DeviceChoice::Wgpu => "wgpu",
            DeviceChoice::Vulkan => "vulkan",
            DeviceChoice::Cuda => "cuda",
        }
    }

    /// Whether this build carries the backend.
    pub fn is_built(&self) -> bool {
        match self {
            DeviceChoice::Flex => true,
            DeviceChoice::Wgpu => cfg!(feature = "wgpu"),
            DeviceChoice::Vulkan => cfg!(feature = "vulkan"),
            DeviceChoice::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// Opens the device (without autodiff) and checks that it computes.
    pub fn open(&self) -> Result<Device, DeviceError> {
        let device = self.construct()?;
        probe(*self, &device)?;
        Ok(device)
    }

    fn construct(&self) -> Result<Device, DeviceError> {
        if !self.is_built() {
            return Err(DeviceError::NotBuilt { device: *self });
        }
        match self {
            DeviceChoice::Flex => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            DeviceChoice::Wgpu => {
                static WGPU: std::sync::OnceLock<Result<Device, String>> =
                    std::sync::OnceLock::new();
                WGPU.get_or_init(|| Device::wgpu_options().init().map_err(|e| e.to_string()))
                    .clone()
                    .map_err(|reason| DeviceError::Unavailable {
                        device: *self,
                        reason,
                    })
            }
            #[cfg(feature = "vulkan")]
            DeviceChoice::Vulkan => Ok(Device::vulkan(burn::prelude::DeviceKind::DefaultDevice)),
            #[cfg(feature = "cuda")]
            DeviceChoice::Cuda => Ok(Device::cuda(0)),
            #[allow(unreachable_patterns)]
            _ => Err(DeviceError::NotBuilt { device: *self }),
        }
    }
}

/// Runs a tiny computation on `device`, turning a backend panic (no driver, no adapter) into an
/// error.
fn probe(choice: DeviceChoice, device: &Device) -> Result<(), DeviceError> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let device = device.clone();
    let result = std::panic::catch_unwind(move || {
        let sum = Tensor::<1>::ones([4], &device).sum().into_scalar::<f32>();
        let _ = device.sync();
        sum
    });
    std::panic::set_hook(hook);
    match result {
        Ok(sum) if sum == 4.0 => Ok(()),
        Ok(sum) => Err(DeviceError::Unavailable {
            device: choice,
            reason: format!("1+1+1+1 computed as {sum}"),
        }),
        Err(panic) => {
            let reason = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the backend panicked".into());
            Err(DeviceError::Unavailable {
                device: choice,
                reason: reason.lines().next().unwrap_or("").to_string(),
            })
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceChoice::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown device `{s}`; expected one of: flex, wgpu, vulkan, cuda")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flex_opens_and_unbuilt_devices_say_which_feature() {
        assert!(DeviceChoice::Flex.open().is_ok());
        for d in DeviceChoice::ALL {
            assert_eq!(d.name().parse::<DeviceChoice>().unwrap(), d);
            if !d.is_built() {
                let err = d.open().unwrap_err();
                assert!(
                    err.to_string()
                        .contains(&format!("--features {}", d.name())),
                    "{err}"
                );
            }
        }
        assert!("tpu".parse::<DeviceChoice>().is_err());
    }
}
