//! AMD GPUs: presence from the PCI list, readings from `rocm-smi` or
//! `amd-smi` when installed.
//!
//! Every AMD GPU found on the bus is listed (index = position by bus
//! address). When `rocm-smi --json` answers, its temperature, power, use and
//! VRAM are merged in by bus address; otherwise `amd-smi metric --json` is
//! tried. Neither tool's JSON is a stable interface: the key names below are
//! the ones ROCm 5.x/6.x print according to their documentation and common
//! captures, not read from a live node here, so every value is looked up
//! defensively and a missing one stays `None`.

use std::time::Duration;

use serde_json::{Map, Value};

use super::command::{self, CommandError};
use super::pci::VENDOR_AMD;
use super::{AmdGpu, PciGpu, Unavailable, normalize_bus_id};

/// How long `rocm-smi` or `amd-smi` may take (both start a Python runtime).
const TOOL_TIMEOUT: Duration = Duration::from_secs(6);

/// `rocm-smi` arguments: the readings we keep, as JSON.
const ROCM_SMI_ARGS: &[&str] = &[
    "--showuse",
    "--showmemuse",
    "--showtemp",
    "--showpower",
    "--showmaxpower",
    "--showmeminfo",
    "vram",
    "--showbus",
    "--showproductname",
    "--json",
];

/// Reads the AMD GPUs among `pci`. Returns nothing at all when there is no
/// AMD GPU; an [`Unavailable`] entry when there is one but no tool answered.
pub fn probe_amd(pci: &[PciGpu]) -> (Vec<AmdGpu>, Vec<Unavailable>) {
    let mut gpus = from_pci(pci);
    if gpus.is_empty() {
        return (gpus, Vec::new());
    }
    let unavailable = |reason: String| Unavailable {
        source: "rocm-smi".to_string(),
        reason,
    };
    let rocm = match command::run("rocm-smi", ROCM_SMI_ARGS, TOOL_TIMEOUT) {
        Ok(out) => Some(out.stdout),
        // rocm-smi exits non-zero when one reading is unsupported, after
        // printing the others.
        Err(CommandError::Failed { stdout, .. }) if stdout.trim_start().starts_with('{') => {
            Some(stdout)
        }
        Err(CommandError::NotFound { .. }) => None,
        Err(e) => return (gpus, vec![unavailable(e.to_string())]),
    };
    let problem = match rocm {
        Some(json) => merge_json(&mut gpus, &json, merge_rocm_smi),
        None => match command::run("amd-smi", &["metric", "--json"], TOOL_TIMEOUT) {
            Ok(out) => merge_json(&mut gpus, &out.stdout, merge_amd_smi),
            Err(CommandError::NotFound { .. }) => Some(
                "rocm-smi not found: install ROCm (rocm-smi or amd-smi) to read AMD GPU \
                 temperature, power and memory; only PCI presence is known"
                    .to_string(),
            ),
            Err(e) => Some(e.to_string()),
        },
    };
    (gpus, problem.map(unavailable).into_iter().collect())
}

/// One [`AmdGpu`] per AMD display/3D device on the bus, by bus address.
pub fn from_pci(pci: &[PciGpu]) -> Vec<AmdGpu> {
    let mut amd: Vec<&PciGpu> = pci.iter().filter(|p| p.vendor_id == VENDOR_AMD).collect();
    amd.sort_by(|a, b| a.bdf.cmp(&b.bdf));
    amd.into_iter()
        .zip(0..)
        .map(|(p, index)| AmdGpu {
            index,
            bdf: p.bdf.clone(),
            name: p.name.clone(),
            ..AmdGpu::default()
        })
        .collect()
}

/// Parses `json` and merges it with `merge`; the problem in one line when the
/// text is not JSON.
fn merge_json(gpus: &mut [AmdGpu], json: &str, merge: fn(&mut [AmdGpu], &Value)) -> Option<String> {
    match serde_json::from_str::<Value>(json) {
        Ok(v) => {
            merge(gpus, &v);
            None
        }
        Err(e) => Some(format!(
            "AMD tool printed output that is not JSON ({e}); run it by hand to see why"
        )),
    }
}

/// Merges `rocm-smi --json` output: an object of `"cardN": { "<label>":
/// "<value>" }` (values are strings, `N/A` when unknown). Cards are matched
/// by their `PCI Bus` entry, else by the number in `cardN`.
pub fn merge_rocm_smi(gpus: &mut [AmdGpu], json: &Value) {
    let Some(cards) = json.as_object() else {
        return;
    };
    for (key, card) in cards {
        let (Some(n), Some(fields)) = (key.strip_prefix("card"), card.as_object()) else {
            continue;
        };
        let bus = find(fields, |k| k == "pci bus").and_then(Value::as_str);
        let Some(gpu) = pick(gpus, bus, n.parse().ok()) else {
            continue;
        };
        let num = |pred: &dyn Fn(&str) -> bool| find(fields, pred).and_then(number);
        let temperature = num(&|k| k.starts_with("temperature") && k.contains("edge"))
            .or_else(|| num(&|k| k.starts_with("temperature") && k.contains("junction")));
        set(&mut gpu.temperature_c, temperature);
        set(
            &mut gpu.power_draw_w,
            num(&|k| k.contains("graphics package power") && !k.contains("max")),
        );
        set(
            &mut gpu.power_cap_w,
            num(&|k| k.starts_with("max graphics package power")),
        );
        set(
            &mut gpu.utilization_pct,
            num(&|k| k == "gpu use (%)").map(|v| v as u32),
        );
        set(
            &mut gpu.memory_total_mib,
            num(&|k| k == "vram total memory (b)").map(bytes_to_mib),
        );
        set(
            &mut gpu.memory_used_mib,
            num(&|k| k == "vram total used memory (b)").map(bytes_to_mib),
        );
        let name = find(fields, |k| k == "card series" || k == "card model")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && *s != "N/A");
        set(&mut gpu.name, name.map(str::to_string));
    }
}

/// Merges `amd-smi metric --json` output: a list of `{ "gpu": N, "usage":
/// {...}, "power": {...}, "temperature": {...}, "mem_usage": {...}, "ecc":
/// {...} }` (newer releases wrap the list as `{"gpu_data": [...]}`; values
/// are numbers or `{"value": v, "unit": u}`). Entries are matched by `gpu`
/// index against the bus order, which is how amd-smi numbers GPUs.
pub fn merge_amd_smi(gpus: &mut [AmdGpu], json: &Value) {
    let list = json
        .get("gpu_data")
        .and_then(Value::as_array)
        .or_else(|| json.as_array());
    for entry in list.into_iter().flatten() {
        let index = entry.get("gpu").and_then(number).map(|n| n as u32);
        let bus = entry.get("bdf").and_then(Value::as_str);
        let Some(gpu) = pick(gpus, bus, index) else {
            continue;
        };
        let at =
            |section: &str, key: &str| entry.get(section).and_then(|s| s.get(key)).and_then(number);
        let temperature = at("temperature", "edge").or_else(|| at("temperature", "hotspot"));
        set(&mut gpu.temperature_c, temperature);
        set(&mut gpu.power_draw_w, at("power", "socket_power"));
        set(
            &mut gpu.utilization_pct,
            at("usage", "gfx_activity").map(|v| v as u32),
        );
        set(
            &mut gpu.memory_total_mib,
            at("mem_usage", "total_vram").map(|v| v as u64),
        );
        set(
            &mut gpu.memory_used_mib,
            at("mem_usage", "used_vram").map(|v| v as u64),
        );
        set(
            &mut gpu.ras_correctable,
            at("ecc", "total_correctable_count").map(|v| v as u64),
        );
        set(
            &mut gpu.ras_uncorrectable,
            at("ecc", "total_uncorrectable_count").map(|v| v as u64),
        );
    }
}

/// Stores `value` when the tool gave one; a later `N/A` never erases a
/// reading.
fn set<T>(slot: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *slot = value;
    }
}

/// The GPU a tool's entry describes: by bus address when given, else by
/// index.
fn pick<'a>(
    gpus: &'a mut [AmdGpu],
    bus: Option<&str>,
    index: Option<u32>,
) -> Option<&'a mut AmdGpu> {
    match bus {
        Some(b) => {
            let want = normalize_bus_id(b);
            gpus.iter_mut().find(|g| normalize_bus_id(&g.bdf) == want)
        }
        None => gpus.iter_mut().find(|g| Some(g.index) == index),
    }
}

/// The value of the first field whose lower-cased label satisfies `pred`.
fn find(fields: &Map<String, Value>, pred: impl Fn(&str) -> bool) -> Option<&Value> {
    fields
        .iter()
        .find(|(k, _)| pred(&k.to_ascii_lowercase()))
        .map(|(_, v)| v)
}

/// A finite, non-negative number from a JSON number, a numeric string, or
/// `{"value": ...}`; `N/A` and the like give `None`.
fn number(v: &Value) -> Option<f64> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Object(o) => o.get("value").and_then(number),
        _ => None,
    }?;
    (n.is_finite() && n >= 0.0).then_some(n)
}

/// Bytes to MiB, rounded down.
fn bytes_to_mib(b: f64) -> u64 {
    (b / (1024.0 * 1024.0)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pci(bdf: &str, vendor: &str) -> PciGpu {
        PciGpu {
            bdf: bdf.to_string(),
            vendor_id: vendor.to_string(),
            device_id: "740f".to_string(),
            ..PciGpu::default()
        }
    }

    fn two_amd() -> Vec<AmdGpu> {
        from_pci(&[
            pci("0000:c3:00.0", VENDOR_AMD),
            pci("0000:18:00.0", "10de"),
            pci("0000:03:00.0", VENDOR_AMD),
        ])
    }

    /// Shape of `rocm-smi --showuse --showmemuse --showtemp --showpower
    /// --showmaxpower --showmeminfo vram --showbus --showproductname --json`
    /// on ROCm 5.x/6.x, as documented and commonly captured.
    const ROCM_SMI: &str = r#"{
        "card0": {
            "Temperature (Sensor edge) (C)": "35.0",
            "Temperature (Sensor junction) (C)": "41.0",
            "Temperature (Sensor memory) (C)": "38.0",
            "Average Graphics Package Power (W)": "43.0",
            "Max Graphics Package Power (W)": "300.0",
            "GPU use (%)": "7",
            "GPU Memory Allocated (VRAM%)": "1",
            "VRAM Total Memory (B)": "68702699520",
            "VRAM Total Used Memory (B)": "11005853696",
            "PCI Bus": "0000:C3:00.0",
            "Card Series": "AMD Instinct MI210",
            "Card Vendor": "Advanced Micro Devices, Inc. [AMD/ATI]"
        },
        "card1": {
            "Temperature (Sensor junction) (C)": "N/A",
            "Current Socket Graphics Package Power (W)": "120.5",
            "GPU use (%)": "N/A",
            "PCI Bus": "0000:03:00.0"
        },
        "system": {"Driver version": "6.7.0"}
    }"#;

    #[test]
    fn amd_gpus_come_from_pci_in_bus_order() {
        let gpus = two_amd();
        let got: Vec<(u32, &str)> = gpus.iter().map(|g| (g.index, g.bdf.as_str())).collect();
        assert_eq!(got, [(0, "0000:03:00.0"), (1, "0000:c3:00.0")]);
        assert!(from_pci(&[pci("0000:18:00.0", "10de")]).is_empty());
    }

    #[test]
    fn rocm_smi_sample_merges_by_bus() {
        let mut gpus = two_amd();
        merge_rocm_smi(&mut gpus, &serde_json::from_str(ROCM_SMI).unwrap());
        // card0 names bus c3, which is index 1.
        let mi = &gpus[1];
        assert_eq!(mi.temperature_c, Some(35.0));
        assert_eq!(mi.power_draw_w, Some(43.0));
        assert_eq!(mi.power_cap_w, Some(300.0));
        assert_eq!(mi.utilization_pct, Some(7));
        assert_eq!(mi.memory_total_mib, Some(65520));
        assert_eq!(mi.memory_used_mib, Some(10496));
        assert_eq!(mi.name.as_deref(), Some("AMD Instinct MI210"));
        // card1 names bus 03 (index 0); its N/A readings stay None.
        let other = &gpus[0];
        assert_eq!(other.power_draw_w, Some(120.5));
        assert_eq!((other.temperature_c, other.utilization_pct), (None, None));
        assert_eq!(other.name, None);
    }

    #[test]
    fn rocm_smi_without_bus_matches_card_number() {
        let mut gpus = two_amd();
        let json = r#"{"card1": {"GPU use (%)": "12"}}"#;
        merge_rocm_smi(&mut gpus, &serde_json::from_str(json).unwrap());
        assert_eq!(
            (gpus[0].utilization_pct, gpus[1].utilization_pct),
            (None, Some(12))
        );
    }

    #[test]
    fn later_na_does_not_erase_a_reading() {
        let mut gpus = two_amd();
        merge_rocm_smi(&mut gpus, &serde_json::from_str(ROCM_SMI).unwrap());
        let json = r#"{"card0": {"PCI Bus": "0000:c3:00.0", "GPU use (%)": "N/A"}}"#;
        merge_rocm_smi(&mut gpus, &serde_json::from_str(json).unwrap());
        assert_eq!(gpus[1].utilization_pct, Some(7));
    }

    #[test]
    fn amd_smi_sample_merges_both_value_styles() {
        let mut gpus = two_amd();
        let json = r#"{"gpu_data": [
            {"gpu": 0, "usage": {"gfx_activity": {"value": 55, "unit": "%"}},
             "power": {"socket_power": {"value": 140, "unit": "W"}},
             "temperature": {"edge": {"value": "N/A", "unit": "C"}, "hotspot": {"value": 48, "unit": "C"}},
             "mem_usage": {"total_vram": {"value": 196592, "unit": "MB"}, "used_vram": {"value": 283, "unit": "MB"}},
             "ecc": {"total_correctable_count": 2, "total_uncorrectable_count": 0}},
            {"gpu": 1, "usage": {"gfx_activity": 3}, "temperature": {"edge": 30}}
        ]}"#;
        merge_amd_smi(&mut gpus, &serde_json::from_str(json).unwrap());
        assert_eq!(gpus[0].utilization_pct, Some(55));
        assert_eq!(gpus[0].power_draw_w, Some(140.0));
        assert_eq!(gpus[0].temperature_c, Some(48.0));
        assert_eq!(gpus[0].memory_total_mib, Some(196592));
        assert_eq!(gpus[0].ras_correctable, Some(2));
        assert_eq!(gpus[1].utilization_pct, Some(3));
        assert_eq!(gpus[1].temperature_c, Some(30.0));
    }

    #[test]
    fn unexpected_json_shapes_change_nothing() {
        let mut gpus = two_amd();
        for json in [
            r#"[1, 2]"#,
            r#""text""#,
            r#"{"card0": 5}"#,
            r#"{"gpu_data": {}}"#,
        ] {
            let v: Value = serde_json::from_str(json).unwrap();
            merge_rocm_smi(&mut gpus, &v);
            merge_amd_smi(&mut gpus, &v);
        }
        assert_eq!(gpus, two_amd());
    }

    #[test]
    fn non_json_output_is_reported() {
        let mut gpus = two_amd();
        let problem = merge_json(&mut gpus, "ERROR: GPU hung", merge_rocm_smi).unwrap();
        assert!(
            problem.starts_with("AMD tool printed output that is not JSON"),
            "{problem}"
        );
    }
}
