//! GPU-class PCI devices from sysfs (`/sys/bus/pci/devices`).
//!
//! Lists every display or 3D controller (class `0x03xxxx`) of NVIDIA (`10de`)
//! or AMD (`1002`), whatever driver is bound, so the checks can compare what
//! the bus shows with what NVML reports (a GPU that fell off the bus stays
//! here with revision `ff`). The root is a parameter so tests can build a
//! fake tree. This module reads; it does not judge.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::PciGpu;

/// Where sysfs lists PCI devices on a live node.
pub const SYSFS_PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// PCI vendor id of NVIDIA.
pub const VENDOR_NVIDIA: &str = "10de";
/// PCI vendor id of AMD/ATI.
pub const VENDOR_AMD: &str = "1002";

/// The PCI device list could not be read.
#[derive(Debug, Error)]
#[error(
    "cannot list PCI devices in {path}: {source}; is sysfs mounted (mount -t sysfs sysfs /sys)?"
)]
pub struct PciError {
    /// The directory that was read.
    pub path: PathBuf,
    /// The underlying error.
    pub source: io::Error,
}

/// Every NVIDIA or AMD display/3D controller under `root` (a directory laid
/// out like `/sys/bus/pci/devices`), sorted by bus address.
pub fn read_pci_gpus(root: &Path) -> Result<Vec<PciGpu>, PciError> {
    let entries = fs::read_dir(root).map_err(|source| PciError {
        path: root.to_path_buf(),
        source,
    })?;
    let mut gpus: Vec<PciGpu> = entries
        .filter_map(Result::ok)
        .filter_map(|e| read_device(&e.path(), &e.file_name().to_string_lossy()))
        .collect();
    gpus.sort_by(|a, b| a.bdf.cmp(&b.bdf));
    Ok(gpus)
}

/// One device directory, when it is a GPU of a vendor we know.
fn read_device(dir: &Path, bdf: &str) -> Option<PciGpu> {
    let class = hex_attr(dir, "class")?;
    if !class.starts_with("03") {
        return None;
    }
    let vendor_id = hex_attr(dir, "vendor")?;
    if vendor_id != VENDOR_NVIDIA && vendor_id != VENDOR_AMD {
        return None;
    }
    Some(PciGpu {
        bdf: bdf.to_string(),
        vendor_id,
        device_id: hex_attr(dir, "device").unwrap_or_default(),
        revision: config_revision(dir).or_else(|| hex_attr(dir, "revision")),
        name: None,
        driver: fs::read_link(dir.join("driver"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())),
        link_speed_gts: attr(dir, "current_link_speed").and_then(|s| parse_link_speed(&s)),
        link_speed_max_gts: attr(dir, "max_link_speed").and_then(|s| parse_link_speed(&s)),
        link_width: attr(dir, "current_link_width").and_then(|s| s.parse().ok()),
        link_width_max: attr(dir, "max_link_width").and_then(|s| s.parse().ok()),
        numa_node: attr(dir, "numa_node")
            .and_then(|s| s.parse().ok())
            .filter(|n: &i32| *n >= 0),
    })
}

/// The revision byte read live from config space (offset 8). The
/// `revision` attribute is cached at boot, so only this read shows `ff` once
/// the device stops answering, as `lspci` does.
fn config_revision(dir: &Path) -> Option<String> {
    let config = fs::read(dir.join("config")).ok()?;
    config.get(8).map(|rev| format!("{rev:02x}"))
}

/// A sysfs attribute, trimmed; `None` when absent, unreadable or empty.
fn attr(dir: &Path, name: &str) -> Option<String> {
    let s = fs::read_to_string(dir.join(name)).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// A hex sysfs attribute (`0x10de`) without its prefix, lower case. Class
/// (`0x030200`) keeps all six digits.
fn hex_attr(dir: &Path, name: &str) -> Option<String> {
    let s = attr(dir, name)?.to_ascii_lowercase();
    let s = s.strip_prefix("0x").unwrap_or(&s);
    s.chars()
        .all(|c| c.is_ascii_hexdigit())
        .then(|| s.to_string())
}

/// GT/s from sysfs link speed text: `16.0 GT/s PCIe` (newer kernels),
/// `8 GT/s` and `2.5 GT/s` (older) all parse; `Unknown` does not.
pub fn parse_link_speed(text: &str) -> Option<f64> {
    let number = text.split_whitespace().next()?;
    let gts: f64 = number.parse().ok()?;
    (gts > 0.0).then_some(gts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes one fake device directory under `root`.
    fn device(root: &Path, bdf: &str, attrs: &[(&str, &str)], driver: Option<&str>) {
        let dir = root.join(bdf);
        fs::create_dir_all(&dir).unwrap();
        for (name, value) in attrs {
            fs::write(dir.join(name), format!("{value}\n")).unwrap();
        }
        if let Some(d) = driver {
            let target = root.join("drivers").join(d);
            fs::create_dir_all(&target).unwrap();
            std::os::unix::fs::symlink(&target, dir.join("driver")).unwrap();
        }
    }

    fn fake_tree() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("devices");
        fs::create_dir_all(&root).unwrap();
        device(
            &root,
            "0000:18:00.0",
            &[
                ("class", "0x030200"),
                ("vendor", "0x10de"),
                ("device", "0x2330"),
                ("revision", "0xa1"),
                ("current_link_speed", "16.0 GT/s PCIe"),
                ("max_link_speed", "32.0 GT/s PCIe"),
                ("current_link_width", "8"),
                ("max_link_width", "16"),
                ("numa_node", "0"),
            ],
            Some("nvidia"),
        );
        device(
            &root,
            "0000:03:00.0",
            &[
                ("class", "0x030000"),
                ("vendor", "0x1002"),
                ("device", "0x740f"),
                ("revision", "0x02"),
                ("current_link_speed", "8 GT/s"),
                ("max_link_speed", "Unknown"),
                ("numa_node", "-1"),
            ],
            Some("amdgpu"),
        );
        // An NVIDIA audio function and an Intel VGA device: not ours.
        device(
            &root,
            "0000:18:00.1",
            &[("class", "0x040300"), ("vendor", "0x10de")],
            None,
        );
        device(
            &root,
            "0000:00:02.0",
            &[("class", "0x030000"), ("vendor", "0x8086")],
            Some("i915"),
        );
        tmp
    }

    #[test]
    fn lists_nvidia_and_amd_gpus_only() {
        let tmp = fake_tree();
        let gpus = read_pci_gpus(&tmp.path().join("devices")).unwrap();
        let bdfs: Vec<&str> = gpus.iter().map(|g| g.bdf.as_str()).collect();
        assert_eq!(bdfs, ["0000:03:00.0", "0000:18:00.0"]);
    }

    #[test]
    fn reads_ids_driver_link_and_numa() {
        let tmp = fake_tree();
        let gpus = read_pci_gpus(&tmp.path().join("devices")).unwrap();
        let nv = &gpus[1];
        assert_eq!(
            (nv.vendor_id.as_str(), nv.device_id.as_str()),
            ("10de", "2330")
        );
        assert_eq!(nv.revision.as_deref(), Some("a1"));
        assert_eq!(nv.driver.as_deref(), Some("nvidia"));
        assert_eq!(
            (nv.link_speed_gts, nv.link_speed_max_gts),
            (Some(16.0), Some(32.0))
        );
        assert_eq!((nv.link_width, nv.link_width_max), (Some(8), Some(16)));
        assert_eq!(nv.numa_node, Some(0));

        let amd = &gpus[0];
        assert_eq!(amd.vendor_id, VENDOR_AMD);
        assert_eq!(amd.driver.as_deref(), Some("amdgpu"));
        assert_eq!(
            (amd.link_speed_gts, amd.link_speed_max_gts),
            (Some(8.0), None)
        );
        assert_eq!((amd.link_width, amd.numa_node), (None, None));
    }

    #[test]
    fn revision_comes_live_from_config_space() {
        let tmp = fake_tree();
        let root = tmp.path().join("devices");
        // A device that fell off the bus answers all ones.
        fs::write(root.join("0000:18:00.0/config"), [0xffu8; 64]).unwrap();
        let gpus = read_pci_gpus(&root).unwrap();
        assert_eq!(gpus[1].revision.as_deref(), Some("ff"));
        // Without a readable config space, the cached attribute is used.
        assert_eq!(gpus[0].revision.as_deref(), Some("02"));
    }

    #[test]
    fn link_speed_formats() {
        assert_eq!(parse_link_speed("16.0 GT/s PCIe"), Some(16.0));
        assert_eq!(parse_link_speed("2.5 GT/s"), Some(2.5));
        assert_eq!(parse_link_speed("Unknown"), None);
        assert_eq!(parse_link_speed(""), None);
    }

    #[test]
    fn missing_root_says_what_and_how() {
        let tmp = tempfile::tempdir().unwrap();
        let err = read_pci_gpus(&tmp.path().join("nope")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("cannot list PCI devices in "), "{msg}");
        assert!(msg.contains("mount -t sysfs"), "{msg}");
    }
}
