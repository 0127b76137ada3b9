//! The probe: reads the node's state into a [`Snapshot`].
//!
//! # Sources
//! - [`nvml`]: NVIDIA GPUs through NVML, loaded at run time (`libnvidia-ml.so.1`).
//! - [`pci`]: GPU-class PCI devices from `/sys/bus/pci/devices`.
//! - [`kernel_log`]: XID events from `/dev/kmsg`, `journalctl -k` or `dmesg`.
//! - [`amd`]: AMD GPUs from sysfs, `rocm-smi` / `amd-smi` when installed.
//! - [`host`]: OS, CPU, memory, disks and processes through `sysinfo`.
//!
//! A source that cannot be read adds an [`Unavailable`] entry with the reason;
//! the probe itself never fails. The probe does not judge anything: that is
//! the job of `checks`.

pub mod amd;
pub mod host;
pub mod kernel_log;
pub mod nvml;
pub mod pci;
pub mod snapshot;

pub use snapshot::*;
