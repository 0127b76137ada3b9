//! The simulated nodes and their command simulator, through the library API.

use sigma::probe::{Snapshot, Source, kernel_log::parse_xids};
use sigma::sim::{self, CommandOutput, SimError, SimNode};

fn node(name: &str) -> SimNode {
    sim::load(name).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Runs a command line (split on whitespace) on a shipped node.
fn run(name: &str, cmd: &str) -> CommandOutput {
    let argv: Vec<String> = cmd.split_whitespace().map(String::from).collect();
    node(name).run(&argv)
}

/// Runs and requires exit code 0.
fn ok(name: &str, cmd: &str) -> String {
    let out = run(name, cmd);
    assert_eq!(out.exit_code, 0, "{name}: {cmd}\n{out:?}");
    out.stdout
}

/// Writes `text` to a temporary `.toml` file and loads it.
fn load_text(text: &str) -> (tempfile::TempDir, String, Result<SimNode, SimError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("custom-node.toml");
    std::fs::write(&path, text).unwrap();
    let p = path.to_string_lossy().into_owned();
    let loaded = sim::load(&p);
    (dir, p, loaded)
}

const MINIMAL: &str = r#"
[node]
description = "test node"
taken_at = "2026-11-28T07:00:00Z"

[expect]
doctor_exit = 0

[host]
hostname = "t1"
uptime_s = 100
"#;

// ---------------------------------------------------------------- loading

#[test]
fn shipped_nodes_are_listed_sorted_with_the_issue_names() {
    let names: Vec<String> = sim::list().into_iter().map(|s| s.name).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    for want in [
        "h100x8-healthy",
        "h100x8-xid79",
        "a100x4-ecc-remap-pending",
        "h100x8-thermal-throttle",
        "l40s-pcie-degraded",
        "h100x8-stuck-memory",
        "mi300x-healthy",
        "no-gpu",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
}

#[test]
fn list_reports_descriptions_and_gpu_counts() {
    let list = sim::list();
    let get = |n: &str| list.iter().find(|s| s.name == n).unwrap();
    assert_eq!(get("h100x8-healthy").gpu_count, 8);
    assert_eq!(get("a100x4-ecc-remap-pending").gpu_count, 4);
    assert_eq!(get("mi300x-healthy").gpu_count, 8);
    assert_eq!(get("no-gpu").gpu_count, 0);
    assert!(get("h100x8-xid79").description.contains("fell off the bus"));
}

#[test]
fn every_shipped_node_loads_and_round_trips_as_json() {
    for s in sim::list() {
        let n = node(&s.name);
        assert_eq!(n.name, s.name);
        assert_eq!(
            n.snapshot.source,
            Source::Simulated {
                name: s.name.clone()
            }
        );
        assert_eq!(n.snapshot.taken_at, "2026-11-28T07:00:00Z");
        assert!([0, 3, 4].contains(&n.expect.doctor_exit), "{}", s.name);
        let json = serde_json::to_string(&n.snapshot).unwrap();
        let back: Snapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, n.snapshot, "{}", s.name);
    }
}

#[test]
fn expectations_follow_the_issue() {
    let x = node("h100x8-xid79").expect;
    assert_eq!(x.doctor_exit, 4);
    assert!(
        x.findings
            .iter()
            .any(|f| f.id == "xid-79" && f.gpu == Some(3))
    );
    let r = node("a100x4-ecc-remap-pending").expect;
    assert_eq!(r.doctor_exit, 3);
    assert!(
        r.findings
            .iter()
            .any(|f| f.id == "remap-pending" && f.gpu == Some(2))
    );
    let s = node("h100x8-stuck-memory").expect;
    let stuck: Vec<_> = s
        .findings
        .iter()
        .filter(|f| f.id == "stuck-memory")
        .collect();
    assert_eq!(stuck.len(), 4);
    for healthy in ["h100x8-healthy", "mi300x-healthy", "no-gpu"] {
        assert_eq!(node(healthy).expect.doctor_exit, 0, "{healthy}");
    }
}

#[test]
fn xid_events_are_derived_from_the_kernel_log() {
    let n = node("h100x8-xid79");
    let lines: Vec<&str> = n.kernel_log.iter().map(String::as_str).collect();
    assert_eq!(n.snapshot.xid_events, parse_xids(lines));
    assert_eq!(n.snapshot.xid_events.len(), 1);
    let e = &n.snapshot.xid_events[0];
    assert_eq!(e.xid, 79);
    assert_eq!(e.timestamp.as_deref(), Some("1187342.512211"));
    let gpu = n.snapshot.gpu_by_bus_id(&e.pci_bus_id).unwrap();
    assert_eq!(gpu.index, 3);
    assert!(gpu.lost);

    let a = node("a100x4-ecc-remap-pending");
    assert_eq!(a.snapshot.xid_events.len(), 1);
    assert_eq!(a.snapshot.xid_events[0].xid, 63);
    assert_eq!(
        a.snapshot
            .gpu_by_bus_id(&a.snapshot.xid_events[0].pci_bus_id)
            .map(|g| g.index),
        Some(2)
    );
    assert!(node("h100x8-healthy").snapshot.xid_events.is_empty());
}

#[test]
fn gpu_defaults_merge_deeply_under_each_gpu() {
    let n = node("a100x4-ecc-remap-pending");
    let g2 = n.snapshot.gpu(2).unwrap();
    let ecc = g2.ecc.as_ref().unwrap();
    assert!(ecc.enabled, "from [gpu_defaults]");
    assert_eq!(ecc.corrected_volatile, 14, "from the [[gpus]] entry");
    let rows = g2.remapped_rows.as_ref().unwrap();
    assert!(rows.pending);
    assert_eq!(rows.correctable, 1);
    assert!(!rows.failure, "from [gpu_defaults]");
    assert_eq!(g2.nvlinks.len(), 12);
    assert_eq!(
        n.snapshot
            .gpu(0)
            .unwrap()
            .ecc
            .as_ref()
            .unwrap()
            .corrected_volatile,
        0
    );
}

#[test]
fn a_lost_gpu_takes_nothing_from_the_defaults() {
    let n = node("h100x8-xid79");
    let g = n.snapshot.gpu(3).unwrap();
    assert!(g.lost);
    assert_eq!(g.temperature_c, None);
    assert_eq!(g.memory_total_mib, None);
    assert!(g.nvlinks.is_empty());
    assert_eq!(n.snapshot.gpu(2).unwrap().memory_total_mib, Some(81559));
}

#[test]
fn nodes_without_nvml_say_why() {
    for name in ["mi300x-healthy", "no-gpu"] {
        let n = node(name);
        assert!(n.snapshot.nvidia.is_none());
        assert!(n.snapshot.gpus.is_empty());
        let u = n
            .snapshot
            .unavailable
            .iter()
            .find(|u| u.source == "nvml")
            .unwrap();
        assert!(
            u.reason.contains("libnvidia-ml.so.1 not found"),
            "{name}: {}",
            u.reason
        );
    }
    let mi = node("mi300x-healthy").snapshot;
    assert_eq!(mi.amd_gpus.len(), 8);
    assert!(mi.pci_gpus.iter().all(|p| p.vendor_id == "1002"));
}

#[test]
fn unknown_name_lists_the_known_ones() {
    let err = sim::load("h100x8-nope").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SimError::UnknownName { .. }));
    assert!(
        msg.starts_with("unknown simulated node 'h100x8-nope'; known: "),
        "{msg}"
    );
    assert!(msg.contains("a100x4-ecc-remap-pending, "), "{msg}");
    assert!(msg.contains("no-gpu"), "{msg}");
    assert!(msg.ends_with("(or give a path to a .toml file)"), "{msg}");
}

#[test]
fn unreadable_path_says_so() {
    let msg = sim::load("/nonexistent/dir/node.toml")
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("cannot read simulated node file '/nonexistent/dir/node.toml': "),
        "{msg}"
    );
}

#[test]
fn a_node_file_loads_by_path_and_takes_its_name_from_the_stem() {
    let (_dir, _path, loaded) = load_text(MINIMAL);
    let n = loaded.unwrap();
    assert_eq!(n.name, "custom-node");
    assert_eq!(n.snapshot.host.hostname, "t1");
    assert_eq!(n.snapshot.kernel_log_source.as_deref(), Some("/dev/kmsg"));
    assert!(n.kernel_log.is_empty());
}

#[test]
fn malformed_file_names_file_line_and_column() {
    let text = MINIMAL.replace("uptime_s = 100", "uptime_s = \"long\"");
    let (_dir, path, loaded) = load_text(&text);
    let msg = loaded.unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("malformed simulated node file {path}:11:12: ")),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn syntax_error_names_its_line() {
    let text = format!("{MINIMAL}\n[gpu_defaults\n");
    let (_dir, path, loaded) = load_text(&text);
    let msg = loaded.unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("malformed simulated node file {path}:13:14: ")),
        "{msg}"
    );
    assert!(msg.contains("unclosed table"), "{msg}");
}

#[test]
fn bad_gpu_entry_names_the_line_of_its_table() {
    let text = format!(
        "{MINIMAL}\n[gpu_defaults]\nname = \"X\"\n\n[[gpus]]\nindex = 0\nuuid = \"GPU-0\"\npci_bus_id = \"00000000:18:00.0\"\n\n[[gpus]]\nindex = 1\nuuid = \"GPU-1\"\npci_bus_id = \"00000000:19:00.0\"\ntemprature_c = 40\n"
    );
    let (_dir, path, loaded) = load_text(&text);
    let msg = loaded.unwrap_err().to_string();
    // Line 21 is the second `[[gpus]]` header.
    let want = format!(
        "malformed simulated node file {path}:21:1: in [[gpus]]: unknown field `temprature_c`"
    );
    assert!(msg.starts_with(&want), "{msg}");
}

#[test]
fn file_checks_beyond_types() {
    let cases = [
        (
            MINIMAL.replace("doctor_exit = 0", "doctor_exit = 1"),
            "expect.doctor_exit is 1",
        ),
        (
            MINIMAL.replace("07:00:00Z", "tomorrow"),
            "taken_at is not an RFC 3339 time",
        ),
        (
            format!("{MINIMAL}\n[[canned]]\nstdout = \"x\"\n"),
            "exactly one of `argv` and `command`",
        ),
        (
            MINIMAL.replace(
                "doctor_exit = 0",
                "doctor_exit = 3\nfindings = [{ id = \"x\", gpu = 5, severity = \"warning\" }]",
            ),
            "names gpu 5",
        ),
        (
            format!(
                "{MINIMAL}\n[[gpus]]\nindex = 0\nname = \"A\"\nuuid = \"GPU-a\"\npci_bus_id = \"0:18:00.0\"\n\n[[gpus]]\nindex = 0\nname = \"B\"\nuuid = \"GPU-b\"\npci_bus_id = \"0:19:00.0\"\n"
            ),
            "two [[gpus]] entries have index 0",
        ),
        (
            format!("{MINIMAL}\n[[canned]]\ncommand = \"\"\n"),
            "a [[canned]] command is empty",
        ),
        (
            format!("{MINIMAL}\n[[canned]]\ncommand = \"echo 'unclosed\"\n"),
            "cannot split command",
        ),
    ];
    for (text, want) in cases {
        let (_dir, path, loaded) = load_text(&text);
        let msg = loaded.unwrap_err().to_string();
        assert!(msg.contains(want), "want {want:?} in {msg}");
        // Each problem points into the file, never at its first line.
        let line = msg
            .strip_prefix(&format!("malformed simulated node file {path}:"))
            .and_then(|rest| rest.split(':').next())
            .and_then(|n| n.parse::<usize>().ok());
        assert!(line.is_some_and(|l| l > 1), "{msg}");
    }
}

// ---------------------------------------------------------------- nvidia-smi

#[test]
fn summary_table_has_header_rows_and_processes() {
    let out = ok("h100x8-healthy", "nvidia-smi");
    assert!(out.starts_with("Sat Nov 28 07:00:00 2026"));
    assert!(out.contains("| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |"));
    assert!(out.contains("|   0  NVIDIA H100 80GB HBM3          On  |   00000000:18:00.0 Off |                    0 |"));
    assert!(out.contains("| N/A   58C    P0            652W /  700W |   74730MiB /  81559MiB |     99%      Default |"));
    assert!(out.contains("|    0   N/A  N/A      31407      C   python3 "));
    for line in out.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        assert_eq!(line.chars().count(), 91, "{line:?}");
    }
}

#[test]
fn summary_without_processes_says_so() {
    assert!(ok("h100x8-xid79", "nvidia-smi -i 0").contains("No running processes found"));
}

#[test]
fn list_gpus() {
    let out = ok("a100x4-ecc-remap-pending", "nvidia-smi -L");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[2].starts_with("GPU 2: NVIDIA A100-SXM4-80GB (UUID: GPU-"));
}

#[test]
fn query_prints_sections_in_nvidia_smi_order() {
    let out = ok(
        "a100x4-ecc-remap-pending",
        "nvidia-smi -q -d ROW_REMAPPER,ECC -i 2",
    );
    assert!(out.contains("==============NVSMI LOG=============="));
    assert!(out.contains("Attached GPUs                             : 4\nGPU 00000000:47:00.0\n"));
    let ecc = out.find("    ECC Mode").unwrap();
    let remap = out.find("    Remapped Rows").unwrap();
    assert!(ecc < remap);
    assert!(out.contains("            DRAM Correctable              : 14\n"));
    assert!(out.contains("        Pending                           : Yes\n"));
    assert!(out.contains("        Correctable Error                 : 1\n"));
    assert!(
        !out.contains("Product Name"),
        "-d shows only the sections asked for"
    );
    assert!(!out.contains("Temperature"));
}

#[test]
fn query_sections_each_render() {
    let out = ok(
        "h100x8-stuck-memory",
        "nvidia-smi -q -d MEMORY,UTILIZATION,ECC,TEMPERATURE,POWER,CLOCK,PERFORMANCE,PAGE_RETIREMENT,ROW_REMAPPER,PIDS,COMPUTE -i 4",
    );
    for want in [
        "    FB Memory Usage\n        Total                             : 81559 MiB\n        Used                              : 72198 MiB\n",
        "        Gpu                               : 0 %\n",
        "        GPU Slowdown Temp                 : 87 C\n",
        "        Current Power Limit               : 700.00 W\n",
        "    Max Clocks\n        Graphics                          : 1980 MHz\n",
        "        Idle                              : Active\n",
        "    Retired Pages                         : N/A\n",
        "        Process ID                        : 48213\n",
        "            Used GPU Memory               : 71680 MiB\n",
        "    Compute Mode                          : Default\n",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
}

#[test]
fn full_query_has_identity_and_link_info() {
    let out = ok("l40s-pcie-degraded", "nvidia-smi -q -i 1");
    assert!(out.contains("    Product Name                          : NVIDIA L40S\n"));
    assert!(out.contains("        Device Id                         : 0x26B910DE\n"));
    assert!(out.contains("                Max                       : 4\n                Current                   : 1\n"));
    assert!(out.contains("                Current                   : 8x\n"));
    assert!(out.contains("        Replays Since Reset               : 1843\n"));
}

#[test]
fn query_rejects_unknown_sections() {
    let out = run("h100x8-healthy", "nvidia-smi -q -d BOGUS");
    assert_eq!(out.exit_code, 2);
    assert!(
        out.stdout
            .contains("Invalid combination of input arguments")
    );
}

#[test]
fn id_selects_by_index_uuid_or_bus_id() {
    let n = node("h100x8-healthy");
    let uuid = n.snapshot.gpu(5).unwrap().uuid.clone();
    for id in [
        "5",
        uuid.as_str(),
        "00000000:AB:00.0",
        "0000:ab:00.0",
        "ab:00.0",
    ] {
        let argv: Vec<String> = [
            "nvidia-smi",
            "--query-gpu=index",
            "--format=csv,noheader",
            "-i",
            id,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(n.run(&argv).stdout, "5\n", "-i {id}");
    }
    let out = ok(
        "h100x8-healthy",
        "nvidia-smi --query-gpu=index --format=csv,noheader --id=1,3",
    );
    assert_eq!(out, "1\n3\n");
    let missing = run("h100x8-healthy", "nvidia-smi -L -i 9");
    assert_eq!(missing.exit_code, 6);
    assert_eq!(missing.stdout, "No devices were found\n");
}

#[test]
fn query_gpu_csv_with_units_and_header() {
    let out = ok(
        "h100x8-thermal-throttle",
        "nvidia-smi --query-gpu=index,temperature.gpu,power.draw,clocks.sm,memory.used,utilization.gpu --format=csv -i 2",
    );
    assert_eq!(
        out,
        "index, temperature.gpu, power.draw [W], clocks.sm [MHz], memory.used [MiB], utilization.gpu [%]\n\
         2, 86, 463.27 W, 1095 MHz, 74730 MiB, 100 %\n"
    );
}

#[test]
fn query_gpu_noheader_nounits() {
    let out = ok(
        "h100x8-thermal-throttle",
        "nvidia-smi --query-gpu=index,power.draw,clocks_event_reasons.hw_thermal_slowdown,clocks_throttle_reasons.hw_thermal_slowdown,clocks_event_reasons.active --format=csv,noheader,nounits -i 2",
    );
    assert_eq!(out, "2, 463.27, Active, Active, 0x0000000000000068\n");
}

#[test]
fn query_gpu_missing_values() {
    let out = ok(
        "h100x8-healthy",
        "nvidia-smi --query-gpu=fan.speed,retired_pages.pending,remapped_rows.pending --format=csv,noheader -i 0",
    );
    assert_eq!(out, "[N/A], [Not Supported], No\n");
}

#[test]
fn query_gpu_unknown_field_fails_like_nvidia_smi() {
    let out = run(
        "h100x8-healthy",
        "nvidia-smi --query-gpu=index,gpu.vibes --format=csv",
    );
    assert_eq!(out.exit_code, 2);
    assert_eq!(
        out.stdout,
        "Field \"gpu.vibes\" is not a valid field to query.\n\n"
    );
    let no_format = run("h100x8-healthy", "nvidia-smi --query-gpu=index");
    assert_eq!(no_format.exit_code, 2);
}

#[test]
fn every_listed_field_answers_on_every_gpu() {
    let fields = sim::query_gpu_fields();
    assert!(fields.len() > 80);
    for want in [
        "pcie.link.gen.hostmax",
        "clocks_throttle_reasons.sw_power_cap",
        "remapped_rows.failure",
        "ecc.errors.uncorrected.aggregate.total",
        "retired_pages.pending",
    ] {
        assert!(fields.contains(&want), "{want}");
    }
    for name in [
        "h100x8-healthy",
        "a100x4-ecc-remap-pending",
        "l40s-pcie-degraded",
    ] {
        let n = node(name);
        let argv = vec![
            "nvidia-smi".to_string(),
            format!("--query-gpu={}", fields.join(",")),
            "--format=csv,noheader".to_string(),
        ];
        let out = n.run(&argv);
        assert_eq!(out.exit_code, 0, "{name}: {out:?}");
        let rows: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(rows.len(), n.snapshot.gpus.len());
        for row in rows {
            assert_eq!(row.split(", ").count(), fields.len(), "{row}");
        }
    }
}

#[test]
fn pcie_fields_show_the_degraded_link() {
    let out = ok(
        "l40s-pcie-degraded",
        "nvidia-smi --query-gpu=index,pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max --format=csv,noheader",
    );
    assert_eq!(out.lines().next(), Some("0, 4, 4, 16, 16"));
    assert_eq!(out.lines().nth(1), Some("1, 1, 4, 8, 16"));
}

#[test]
fn compute_apps_list_the_stuck_process() {
    let out = ok(
        "h100x8-stuck-memory",
        "nvidia-smi --query-compute-apps=pid,process_name,used_memory,gpu_bus_id --format=csv",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pid, process_name, used_memory [MiB], gpu_bus_id");
    assert_eq!(lines.len(), 9);
    assert_eq!(lines[5], "48213, python3, 71680 MiB, 00000000:9A:00.0");
    let bad = run(
        "h100x8-stuck-memory",
        "nvidia-smi --query-compute-apps=pid,owner --format=csv",
    );
    assert_eq!(bad.exit_code, 2);
    assert!(
        bad.stdout
            .starts_with("Field \"owner\" is not a valid field to query.")
    );
}

#[test]
fn topology_matrix() {
    let h = ok("h100x8-healthy", "nvidia-smi topo -m");
    let first = h.lines().next().unwrap();
    assert!(first.starts_with("\tGPU0\tGPU1"));
    assert!(first.ends_with("CPU Affinity\tNUMA Affinity\tGPU NUMA ID"));
    assert!(h.contains("GPU0\t X \tNV18\t"));
    assert!(h.contains("\t112-223\t1\t"));
    assert!(h.contains("NV#  = Connection traversing a bonded set of # NVLinks"));
    let l = ok("l40s-pcie-degraded", "nvidia-smi topo -m");
    assert!(l.contains("GPU0\t X \tNODE\tSYS\tSYS\t0-63\t0\t"), "{l}");
}

#[test]
fn nvlink_status_and_errors() {
    let s = ok("a100x4-ecc-remap-pending", "nvidia-smi nvlink -s -i 1");
    assert!(s.starts_with("GPU 1: NVIDIA A100-SXM4-80GB (UUID: "));
    assert_eq!(s.matches("GB/s").count(), 12);
    assert!(s.contains("\t Link 11: 25.000 GB/s\n"));
    let e = ok("h100x8-healthy", "nvidia-smi nvlink -e");
    assert_eq!(e.matches("Replay Errors: 0").count(), 8 * 18);
    assert!(e.contains("\t Link 17: CRC Data Errors: 0\n"));
    let none = ok("l40s-pcie-degraded", "nvidia-smi nvlink -s -i 0");
    assert_eq!(none.lines().count(), 1);
}

#[test]
fn lost_gpu_answers_unable_to_determine_the_device_handle() {
    let msg = "Unable to determine the device handle for GPU0000:5D:00.0: Unknown Error\n";
    let summary = run("h100x8-xid79", "nvidia-smi");
    assert_eq!((summary.exit_code, summary.stdout.as_str()), (15, msg));
    let list = run("h100x8-xid79", "nvidia-smi -L");
    assert_eq!(list.exit_code, 15);
    assert_eq!(list.stdout.lines().nth(3), Some(msg.trim_end()));
    assert!(list.stdout.lines().nth(4).unwrap().starts_with("GPU 4: "));
    let q = run(
        "h100x8-xid79",
        "nvidia-smi --query-gpu=index,temperature.gpu --format=csv,noheader -i 3",
    );
    assert_eq!((q.exit_code, q.stdout.as_str()), (15, msg));
    let topo = run("h100x8-xid79", "nvidia-smi topo -m");
    assert_eq!(topo.exit_code, 15);
    assert_eq!(
        ok(
            "h100x8-xid79",
            "nvidia-smi --query-gpu=index --format=csv,noheader -i 2"
        ),
        "2\n"
    );
}

#[test]
fn bad_flags_and_state_changes_fail_like_nvidia_smi() {
    let bad = run("h100x8-healthy", "nvidia-smi --frobnicate");
    assert_eq!(bad.exit_code, 2);
    assert_eq!(
        bad.stdout,
        "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n"
    );
    let pm = run("h100x8-healthy", "nvidia-smi -pm 0 -i 1");
    assert_eq!(pm.exit_code, 4);
    assert!(pm.stdout.starts_with(
        "Unable to set persistence mode for GPU 00000000:2A:00.0: Insufficient Permissions\n"
    ));
    assert_eq!(run("h100x8-healthy", "nvidia-smi -r -i 0").exit_code, 4);
    assert_eq!(run("h100x8-healthy", "nvidia-smi topo -x").exit_code, 2);
}

#[test]
fn nvidia_smi_is_missing_without_the_driver() {
    for name in ["mi300x-healthy", "no-gpu"] {
        let out = run(name, "nvidia-smi -L");
        assert_eq!(out.exit_code, 127);
        assert_eq!(out.stderr, "bash: nvidia-smi: command not found\n");
    }
}

#[test]
fn reset_status_says_yes_for_a_pending_row_remap() {
    let out = ok("a100x4-ecc-remap-pending", "nvidia-smi -q -d RESET_STATUS");
    let yes = "GPU 00000000:47:00.0\n    GPU Reset Status\n        Reset Required                    : Yes\n        Drain and Reset Recommended       : Yes\n";
    assert!(out.contains(yes), "{out}");
    assert_eq!(
        out.matches("Reset Required                    : No")
            .count(),
        3
    );
    assert!(
        !out.contains("ECC Mode"),
        "-d shows only the section asked for"
    );
    let one = ok(
        "a100x4-ecc-remap-pending",
        "nvidia-smi -q -d RESET_STATUS -i 2",
    );
    assert_eq!(one.matches("GPU Reset Status").count(), 1);
    assert!(one.contains(yes));
    let fields = ok(
        "a100x4-ecc-remap-pending",
        "nvidia-smi --query-gpu=index,reset_status.reset_required,reset_status.drain_and_reset_recommended --format=csv,noheader",
    );
    assert_eq!(fields, "0, No, No\n1, No, No\n2, Yes, Yes\n3, No, No\n");
}

#[test]
fn full_query_prints_reset_status_before_pci() {
    let out = ok("a100x4-ecc-remap-pending", "nvidia-smi -q -i 2");
    assert_eq!(out.matches("GPU Reset Status").count(), 1);
    let reset = out.find("    GPU Reset Status\n").unwrap();
    assert!(out.find("    VBIOS Version").unwrap() < reset);
    assert!(reset < out.find("    PCI\n").unwrap());
}

#[test]
fn reset_status_of_a_lost_gpu_is_its_device_handle_error() {
    let out = run("h100x8-xid79", "nvidia-smi -q -d RESET_STATUS -i 2,3");
    assert_eq!(out.exit_code, 15);
    assert!(
        out.stdout
            .contains("GPU 00000000:3A:00.0\n    GPU Reset Status\n")
    );
    assert!(
        out.stdout.ends_with(
            "Unable to determine the device handle for GPU0000:5D:00.0: Unknown Error\n"
        )
    );
}

#[test]
fn dmon_power_group_prints_one_row_per_gpu_per_sample() {
    let out = ok("h100x8-healthy", "nvidia-smi dmon -s p -c 5");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2 + 5 * 8);
    assert_eq!(lines[0], "# gpu    pwr  gtemp  mtemp");
    assert_eq!(lines[1], "# Idx      W      C      C");
    assert_eq!(lines[2], "    0    652     58     66");
    assert_eq!(
        lines[2..10],
        lines[10..18],
        "a simulated node never changes"
    );
    let one = ok("h100x8-healthy", "nvidia-smi dmon -s p -c 1 -i 0");
    assert_eq!(one.lines().count(), 3);
}

#[test]
fn dmon_default_groups_are_power_utilisation_and_clocks() {
    let out = ok("h100x8-healthy", "nvidia-smi dmon -c 1 -i 0");
    assert_eq!(
        out,
        "# gpu    pwr  gtemp  mtemp     sm    mem    enc    dec    jpg    ofa   mclk   pclk\n\
         # Idx      W      C      C      %      %      %      %      %      %    MHz    MHz\n\
         \x20   0    652     58     66     99     54      0      0      0      0   2619   1980\n"
    );
}

#[test]
fn dmon_groups_follow_the_select_order_and_read_the_node() {
    let out = ok(
        "h100x8-thermal-throttle",
        "nvidia-smi dmon -s pucvmet -c 1 -i 2",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "# gpu    pwr  gtemp  mtemp     sm    mem    enc    dec    jpg    ofa   mclk   pclk  pviol  tviol     fb   bar1   ccpm  sbecc  dbecc    pci  rxpci  txpci"
    );
    assert_eq!(
        lines[2],
        "    2    463     86     91    100     52      0      0      0      0   2619   1095      0      1  74730      -      0      0      0      0      -      -"
    );
    let tv = ok("h100x8-power-cap", "nvidia-smi dmon -s tv -c 1 -i 0");
    assert!(
        tv.starts_with("# gpu  rxpci  txpci  pviol  tviol\n"),
        "{tv}"
    );
    assert!(tv.ends_with("    0      -      -    100      0\n"), "{tv}");
    let replays = ok("l40s-pcie-degraded", "nvidia-smi dmon -s e -c 1");
    assert!(
        replays.contains("\n    1      0      0   1843\n"),
        "{replays}"
    );
}

#[test]
fn dmon_date_and_time_count_from_taken_at() {
    let out = ok(
        "l40s-pcie-degraded",
        "nvidia-smi dmon -s e -c 2 -d 5 -o DT -i 1",
    );
    assert_eq!(
        out,
        "#Date        Time         gpu  sbecc  dbecc    pci\n\
         #YYYYMMDD    HH:MM:SS     Idx   errs   errs   errs\n\
         \x2020261128    07:00:00       1      0      0   1843\n\
         \x2020261128    07:00:05       1      0      0   1843\n"
    );
    let t = ok("l40s-pcie-degraded", "nvidia-smi dmon -s e -c 1 -o T -i 1");
    assert!(t.starts_with("#Time         gpu  sbecc"), "{t}");
    assert!(
        t.ends_with(" 07:00:00       1      0      0   1843\n"),
        "{t}"
    );
}

#[test]
fn dmon_and_pmon_fail_like_nvidia_smi() {
    let lost = run("h100x8-xid79", "nvidia-smi dmon -s p -c 1");
    assert_eq!(lost.exit_code, 15);
    assert!(
        lost.stdout
            .starts_with("Unable to determine the device handle")
    );
    assert_eq!(
        ok("h100x8-xid79", "nvidia-smi dmon -s p -c 1 -i 4")
            .lines()
            .count(),
        3
    );
    assert_eq!(run("h100x8-xid79", "nvidia-smi pmon -c 1").exit_code, 15);
    assert_eq!(
        run("h100x8-healthy", "nvidia-smi dmon -c 1 -i 9").exit_code,
        6
    );
    for bad in [
        "nvidia-smi dmon -s x -c 1",
        "nvidia-smi dmon -s d -c 1",
        "nvidia-smi dmon -c 1 -o X",
        "nvidia-smi dmon -c 1 --format csv",
        "nvidia-smi pmon -s p -c 1",
    ] {
        assert_eq!(run("h100x8-healthy", bad).exit_code, 2, "{bad}");
    }
    assert!(ok("h100x8-healthy", "nvidia-smi pmon -h").contains("pmon"));
}

#[test]
fn pmon_lists_each_process_with_its_gpu() {
    let out = ok("h100x8-stuck-memory", "nvidia-smi pmon -c 1");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2 + 8);
    assert_eq!(
        lines[0],
        "# gpu         pid   type     sm    mem    enc    dec    jpg    ofa    command"
    );
    assert_eq!(
        lines[1],
        "# Idx           #    C/G      %      %      %      %      %      %    name"
    );
    assert_eq!(
        lines[2],
        "    0      51207     C     99     54      -      -      -      -    python3"
    );
    assert_eq!(
        lines[9],
        "    7      48213     C      0      0      -      -      -      -    python3"
    );
    let two = ok("h100x8-stuck-memory", "nvidia-smi pmon -c 2 -i 4");
    assert_eq!(two.lines().count(), 2 + 2);
}

#[test]
fn pmon_memory_comes_first_and_idle_gpus_print_dashes() {
    let out = ok("a100x8-ecc-dbe", "nvidia-smi pmon -c 1 -s um -i 5,6");
    assert_eq!(
        out,
        "# gpu         pid   type     fb   ccpm     sm    mem    enc    dec    jpg    ofa    command\n\
         # Idx           #    C/G     MB     MB      %      %      %      %      %      %    name\n\
         \x20   5      22806     C  71380      0     96     49      -      -      -      -    python3\n\
         \x20   6          -     -      -      -      -      -      -      -      -      -    -\n"
    );
}

#[test]
fn topo_p2p_matrix_over_nvlink() {
    let out = ok("h100x8-healthy", "nvidia-smi topo -p2p n");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        " \tGPU0\tGPU1\tGPU2\tGPU3\tGPU4\tGPU5\tGPU6\tGPU7\t"
    );
    assert_eq!(lines[1], " GPU0\tX\tOK\tOK\tOK\tOK\tOK\tOK\tOK\t");
    assert_eq!(out.matches("OK\t").count(), 8 * 7);
    assert!(out.contains("\nLegend:\n\n  X    = Self\n  OK   = Status Ok\n"));
    assert!(out.ends_with("  U    = Unknown\n"));
    let read = ok("h100x8-healthy", "nvidia-smi topo --p2pstatus r");
    assert_eq!(read, out, "NVLink peers read over NVLink");
}

#[test]
fn topo_p2p_over_pcie_follows_numa_nodes() {
    let r = ok("l40s-pcie-degraded", "nvidia-smi topo -p2p r");
    assert!(
        r.starts_with(" \tGPU0\tGPU1\tGPU2\tGPU3\t\n GPU0\tX\tOK\tCNS\tCNS\t\n"),
        "{r}"
    );
    assert!(r.contains(" GPU3\tCNS\tCNS\tOK\tX\t\n"), "{r}");
    let n = ok("l40s-pcie-degraded", "nvidia-smi topo -p2p n");
    assert!(n.contains(" GPU0\tX\tNS\tNS\tNS\t\n"), "{n}");
    let a = ok("l40s-pcie-degraded", "nvidia-smi topo -p2p a");
    assert!(a.contains(" GPU1\tNS\tX\tNS\tNS\t\n"), "{a}");
    assert_eq!(run("h100x8-xid79", "nvidia-smi topo -p2p n").exit_code, 15);
    assert_eq!(run("h100x8-healthy", "nvidia-smi topo -p2p x").exit_code, 2);
}

#[test]
fn pcie_replay_counter_field_reads_the_link() {
    let out = ok(
        "l40s-pcie-degraded",
        "nvidia-smi --query-gpu=index,pcie.replay_counter --format=csv",
    );
    assert_eq!(
        out,
        "index, pcie.replay_counter\n0, 0\n1, 1843\n2, 0\n3, 0\n"
    );
    assert!(sim::query_gpu_fields().contains(&"pcie.replay_counter"));
}

// ---------------------------------------------------------------- lspci

#[test]
fn lspci_lists_gpu_devices() {
    let out = ok("l40s-pcie-degraded", "lspci");
    assert_eq!(out.lines().count(), 4);
    assert_eq!(
        out.lines().next(),
        Some("17:00.0 3D controller: NVIDIA Corporation AD102GL [L40S] (rev a1)")
    );
    let n = ok("l40s-pcie-degraded", "lspci -n -s 17:00.0");
    assert_eq!(n, "17:00.0 0302: 10de:26b9 (rev a1)\n");
    let d = ok("l40s-pcie-degraded", "lspci -D -s 17:00.0");
    assert!(d.starts_with("0000:17:00.0 3D controller"));
}

#[test]
fn lspci_vendor_filter_and_lost_device() {
    let out = ok("h100x8-xid79", "lspci -nn -d 10de:");
    assert_eq!(out.lines().count(), 8);
    assert!(out.contains(
        "5d:00.0 3D controller [0302]: NVIDIA Corporation GH100 [H100 SXM5 80GB] [10de:2330] (rev ff)"
    ));
    assert_eq!(out.matches("(rev ff)").count(), 1);
    assert_eq!(ok("h100x8-xid79", "lspci -d 1002:"), "");
    assert_eq!(
        ok("mi300x-healthy", "lspci -nn -d 1002:74a1")
            .lines()
            .count(),
        8
    );
    assert!(ok("mi300x-healthy", "lspci -d 1002:").contains("Processing accelerators"));
    let v = ok("h100x8-xid79", "lspci -vvv -s 5d:00.0");
    assert!(v.contains("\t!!! Unknown header type 7f\n"));
    assert!(!v.contains("LnkSta"));
}

#[test]
fn lspci_link_capability_and_status() {
    let bad = ok("l40s-pcie-degraded", "lspci -vvv -s 0000:3d:00.0");
    assert!(bad.contains("\t\tLnkCap:\tPort #0, Speed 16GT/s, Width x16, ASPM not supported\n"));
    assert!(bad.contains("\t\tLnkSta:\tSpeed 2.5GT/s (downgraded), Width x8 (downgraded)\n"));
    assert!(bad.contains("\tKernel driver in use: nvidia\n"));
    let good = ok("l40s-pcie-degraded", "lspci -vv -s 17:00.0");
    assert!(good.contains("\t\tLnkSta:\tSpeed 16GT/s (ok), Width x16 (ok)\n"));
    let v1 = ok("l40s-pcie-degraded", "lspci -v -s 17:00.0");
    assert!(!v1.contains("LnkCap"), "-v alone shows no link detail");
    let k = ok("mi300x-healthy", "lspci -k -s 05:00.0");
    assert!(k.ends_with("\tKernel driver in use: amdgpu\n\tKernel modules: amdgpu\n"));
}

#[test]
fn lspci_rejects_unknown_switches() {
    let out = run("h100x8-healthy", "lspci -z");
    assert_eq!(out.exit_code, 1);
    assert!(out.stderr.starts_with("lspci: invalid option -- 'z'\n"));
}

#[test]
fn lspci_tree_draws_each_gpu_bus_below_the_host_bridge() {
    assert_eq!(
        ok("l40s-pcie-degraded", "lspci -t"),
        "-+-[0000:b1]---00.0\n +-[0000:9a]---00.0\n +-[0000:3d]---00.0\n \\-[0000:17]---00.0\n"
    );
    let v = ok("l40s-pcie-degraded", "lspci -tv");
    assert!(
        v.starts_with("-+-[0000:b1]---00.0  NVIDIA Corporation AD102GL [L40S]\n"),
        "{v}"
    );
    let nn = ok("l40s-pcie-degraded", "lspci -tvnn -s 3d:00.0");
    assert_eq!(
        nn,
        "-[0000:3d]---00.0  NVIDIA Corporation AD102GL [L40S] [10de:26b9]\n"
    );
    assert_eq!(ok("h100x8-healthy", "lspci -t").lines().count(), 8);
    assert_eq!(ok("no-gpu", "lspci -t"), "");
}

// ---------------------------------------------------------------- kernel log

#[test]
fn dmesg_prints_the_log_as_written() {
    let n = node("h100x8-xid79");
    let out = n.run(&["dmesg".to_string()]);
    assert_eq!(out.stdout, n.kernel_log.join("\n") + "\n");
    assert!(out.stdout.contains(
        "[1187342.512211] NVRM: Xid (PCI:0000:5d:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n"
    ));
    assert!(
        !out.stdout.contains("<4>"),
        "raw priorities are not printed"
    );
}

#[test]
fn dmesg_wall_clock_times_count_from_boot() {
    let out = ok("h100x8-xid79", "dmesg -T");
    // Boot: 2026-11-28T07:00:00Z minus 14 days; plus 1187342.5 s.
    assert!(
        out.contains("[Sat Nov 28 00:49:02 2026] NVRM: Xid (PCI:0000:5d:00): 79,"),
        "{out}"
    );
    assert!(out.starts_with("[Sat Nov 14 07:00:00 2026] Linux version"));
    let iso = ok("h100x8-xid79", "dmesg --time-format iso");
    assert!(iso.contains("2026-11-28T00:49:02,512211+00:00 NVRM: Xid"));
    let bare = ok("h100x8-xid79", "dmesg -t");
    assert!(bare.starts_with("Linux version"));
}

#[test]
fn dmesg_levels_and_decoding() {
    let err = ok("h100x8-xid79", "dmesg --level=err");
    assert!(err.contains("NVRM: A GPU crash dump has been created."));
    assert!(!err.contains("Xid"), "the XID line is logged at warn");
    let both = ok("h100x8-xid79", "dmesg -l err,warn");
    assert_eq!(both.lines().count(), 11);
    let x = ok("h100x8-xid79", "dmesg -x -l warn");
    assert!(x.contains("kern  :warn  : [1187342.512211] NVRM: Xid"));
    let r = ok("h100x8-xid79", "dmesg -r");
    assert!(r.contains("<4>[1187342.512211] NVRM: Xid"));
    assert!(r.starts_with("<6>[    0.000000] Linux version"));
}

#[test]
fn dmesg_refuses_to_clear_and_unknown_flags() {
    for cmd in ["dmesg -c", "dmesg -C", "dmesg --clear"] {
        let out = run("h100x8-xid79", cmd);
        assert_eq!(out.exit_code, 1, "{cmd}");
        assert_eq!(
            out.stderr,
            "dmesg: klogctl failed: Operation not permitted\n"
        );
    }
    let bad = run("h100x8-xid79", "dmesg --bogus");
    assert_eq!(bad.exit_code, 1);
    assert!(
        bad.stderr
            .starts_with("dmesg: unrecognized option '--bogus'\n")
    );
    assert_eq!(run("h100x8-xid79", "dmesg -l loud").exit_code, 1);
}

#[test]
fn journalctl_kernel_messages() {
    let out = ok("h100x8-xid79", "journalctl -k -b --no-pager --grep xid");
    assert_eq!(
        out,
        "Nov 28 00:49:02 gpu-h100-042 kernel: NVRM: Xid (PCI:0000:5d:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n"
    );
    let iso = ok("h100x8-xid79", "journalctl -k -o short-iso");
    let events = parse_xids(iso.lines());
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].timestamp.as_deref(),
        Some("2026-11-28T00:49:02+00:00")
    );
    let tail = ok("h100x8-xid79", "journalctl --dmesg -n 2 -o cat");
    assert_eq!(
        tail,
        "NVRM: nvidia-bug-report.sh as root to collect this data before\nNVRM: the NVIDIA kernel module is unloaded.\n"
    );
    let none = ok("h100x8-healthy", "journalctl -k --grep Xid");
    assert_eq!(none, "-- No entries --\n");
    let prio = ok("h100x8-xid79", "journalctl -k -p err -o cat");
    assert_eq!(prio.lines().count(), 6);
}

#[test]
fn journalctl_lists_the_current_boot_only() {
    let out = ok("h100x8-healthy", "journalctl --list-boots --no-pager");
    assert_eq!(out.lines().count(), 1);
    let (idx, rest) = out.split_at(3);
    assert_eq!(idx, " 0 ");
    let (id, span) = rest.split_once(' ').unwrap();
    assert_eq!(id.len(), 32);
    assert!(
        id.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(&id[12..13], "4", "a version 4 UUID like a kernel boot ID");
    assert_eq!(
        span,
        "Sat 2026-11-14 07:00:00 UTC\u{2014}Sat 2026-11-28 07:00:00 UTC\n"
    );
    assert_eq!(ok("h100x8-healthy", "journalctl --list-boots"), out);
    let other = ok("h100x8-xid79", "journalctl --list-boots");
    let other_id = &other.lines().last().unwrap()[3..35];
    assert_ne!(other_id, id, "each node has its own boot ID");
    assert_eq!(
        ok(
            "h100x8-xid79",
            &format!("journalctl -k -b {other_id} -o cat")
        ),
        ok("h100x8-xid79", "journalctl -k -b 0 -o cat"),
    );
}

#[test]
fn journalctl_other_boots_and_bad_flags_fail() {
    // h100x8-healthy's journal holds one boot; h100x8-xid79's two.
    let prev = run("h100x8-healthy", "journalctl -k -b -1");
    assert_eq!(prev.exit_code, 1);
    assert!(prev.stdout.is_empty());
    assert_eq!(
        prev.stderr,
        "journalctl: Data from the specified boot (-1) is not available: No such boot ID in journal\n"
    );
    assert_eq!(run("h100x8-xid79", "journalctl -k -b -2").exit_code, 1);
    assert_eq!(run("h100x8-xid79", "journalctl -k --bogus").exit_code, 1);
    assert_eq!(run("h100x8-xid79", "journalctl -k -o yaml").exit_code, 1);
}

#[test]
fn journalctl_previous_boot_is_the_one_before_the_xid() {
    let prev = ok(
        "h100x8-xid79",
        "journalctl -k -b -1 --no-pager -o short-iso",
    );
    assert!(prev.starts_with("2026-10-20T18:42:11+00:00 gpu-h100-042 kernel: Linux version"));
    assert!(prev.contains("NVRM: loading NVIDIA UNIX x86_64 Kernel Module  535.161.08"));
    assert!(prev.ends_with("kernel: reboot: Restarting system\n"));
    assert!(!prev.to_lowercase().contains("xid"));
    // dmesg is the ring buffer: the current boot only.
    assert!(!ok("h100x8-xid79", "dmesg").contains("535.161.08"));
    let boots = ok("h100x8-xid79", "journalctl --list-boots");
    assert_eq!(boots.lines().count(), 2);
    let prev_id = &boots[3..35];
    assert_eq!(
        ok("h100x8-xid79", &format!("journalctl -b {prev_id} -o cat")),
        ok("h100x8-xid79", "journalctl -b -1 -o cat"),
    );
}

#[test]
fn journalctl_since_and_until_read_the_node_clock() {
    let n = node("h100x8-xid79");
    let argv = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let since = |spec: &str| n.run(&argv(&["journalctl", "-k", "--since", spec, "-o", "cat"]));
    // taken_at is 07:00; the XID came at 00:49.
    assert_eq!(since("1 hour ago").stdout, "-- No entries --\n");
    assert!(since("today").stdout.contains("Xid"));
    assert!(since("yesterday").stdout.contains("Xid"));
    assert!(since("2026-11-28 00:49:02").stdout.contains("Xid"));
    assert!(!since("2026-11-28 00:49:03").stdout.contains("Xid"));
    let until = n.run(&argv(&[
        "journalctl",
        "-k",
        "--until",
        "2026-11-28 00:00:00",
        "-o",
        "cat",
    ]));
    assert!(!until.stdout.contains("Xid") && until.stdout.contains("Linux version"));
    for command in [
        "journalctl -k -b -1 --no-pager",
        "journalctl -k --since '1 hour ago' --until now --no-pager",
        "journalctl --since '2026-11-27 10:00:00' --no-pager",
    ] {
        let v = sigma::guard::check(command);
        assert_eq!(
            v.tier,
            sigma::guard::Tier::ReadOnly,
            "{command}: {}",
            v.rule
        );
    }
    let bad = n.run(&argv(&["journalctl", "--since", "soon"]));
    assert_eq!(
        (bad.exit_code, bad.stderr.as_str()),
        (1, "journalctl: Failed to parse timestamp: soon\n")
    );
}

#[test]
fn remapped_rows_query_matches_the_query_gpu_values() {
    let out = ok(
        "a100x4-ecc-remap-pending",
        "nvidia-smi --query-remapped-rows=gpu_bus_id,remapped_rows.correctable,remapped_rows.uncorrectable,remapped_rows.pending,remapped_rows.failure --format=csv",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "gpu_bus_id, remapped_rows.correctable, remapped_rows.uncorrectable, remapped_rows.pending, remapped_rows.failure"
    );
    assert_eq!(lines.len(), 5);
    assert!(
        lines[3].ends_with(", Yes, No"),
        "GPU 2 waits for a reset: {}",
        lines[3]
    );
    let one = ok(
        "a100x4-ecc-remap-pending",
        "nvidia-smi --query-remapped-rows=gpu_uuid,remapped_rows.pending --format=csv,noheader -i 2",
    );
    let gpu = ok(
        "a100x4-ecc-remap-pending",
        "nvidia-smi --query-gpu=gpu_uuid,remapped_rows.pending --format=csv,noheader -i 2",
    );
    assert_eq!(one, gpu);
    let bad = run(
        "a100x4-ecc-remap-pending",
        "nvidia-smi --query-remapped-rows=index --format=csv",
    );
    assert_eq!(bad.exit_code, 2);
    assert_eq!(
        bad.stdout,
        "Field \"index\" is not a valid field to query.\n\n"
    );
    assert_eq!(
        run(
            "a100x4-ecc-remap-pending",
            "nvidia-smi --query-remapped-rows=gpu_uuid"
        )
        .exit_code,
        2,
        "--format is required"
    );
}

#[test]
fn nvlink_capabilities_list_each_active_link() {
    let out = ok("h100x8-healthy", "nvidia-smi nvlink -c -i 0");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-"));
    assert_eq!(lines.len(), 1 + 18 * 6);
    assert_eq!(lines[1], "\t Link 0, P2P is supported: true");
    assert_eq!(lines[6], "\t Link 0, Link is supported: false");
    assert_eq!(lines[108], "\t Link 17, Link is supported: false");
    // A PCIe card has no NVLink: the GPU line alone.
    assert_eq!(
        ok(
            "l40s-pcie-degraded",
            "nvidia-smi nvlink --capabilities -i 1"
        )
        .lines()
        .count(),
        1
    );
    assert_eq!(run("h100x8-xid79", "nvidia-smi nvlink -c").exit_code, 15);
}

#[test]
fn power_range_tlimit_and_fabric_fields() {
    let fields =
        "power.min_limit,power.max_limit,temperature.gpu.tlimit,fabric.state,fabric.status";
    let h100 = ok(
        "h100x8-thermal-throttle",
        &format!("nvidia-smi --query-gpu={fields} --format=csv -i 0,2"),
    );
    let lines: Vec<&str> = h100.lines().collect();
    assert_eq!(
        lines[0],
        "power.min_limit [W], power.max_limit [W], temperature.gpu.tlimit, fabric.state, fabric.status"
    );
    assert!(lines[1].starts_with("200.00 W, 700.00 W, "), "{}", lines[1]);
    assert!(lines[1].ends_with(", Completed, Success"), "{}", lines[1]);
    let margin = |line: &str| line.split(", ").nth(2).unwrap().parse::<i64>().unwrap();
    // GPU 2 runs at 86 C, one degree below its 87 C slowdown.
    assert_eq!((margin(lines[1]), margin(lines[2])), (29, 1), "{h100}");
    let a100 = ok(
        "a100x4-ecc-remap-pending",
        &format!("nvidia-smi --query-gpu={fields} --format=csv,noheader,nounits -i 0"),
    );
    assert!(a100.starts_with("100.00, 400.00, "), "{a100}");
    assert!(
        a100.ends_with(", [N/A], [N/A]\n"),
        "no NVSwitch fabric: {a100}"
    );
    let q = ok("h100x8-healthy", "nvidia-smi -q -d POWER -i 0");
    assert!(
        q.contains("        Min Power Limit                   : 200.00 W\n"),
        "{q}"
    );
    assert!(
        q.contains("        Max Power Limit                   : 700.00 W\n"),
        "{q}"
    );
}

#[test]
fn every_bus_id_spelling_selects_the_same_gpu() {
    let n = node("h100x8-healthy");
    let bus = n.snapshot.gpu(5).unwrap().pci_bus_id.clone();
    assert_eq!(bus, "00000000:AB:00.0");
    for flag in ["-i", "--id="] {
        for id in [
            "00000000:AB:00.0",
            "00000000:ab:00.0",
            "0000:ab:00.0",
            "0000:AB:00.0",
            "ab:00.0",
            "AB:00.0",
        ] {
            let mut argv = vec![
                "nvidia-smi".to_string(),
                "--query-gpu=index".into(),
                "--format=csv,noheader".into(),
            ];
            if flag == "-i" {
                argv.extend(["-i".to_string(), id.to_string()]);
            } else {
                argv.push(format!("--id={id}"));
            }
            let out = n.run(&argv);
            assert_eq!(
                (out.exit_code, out.stdout.as_str()),
                (0, "5\n"),
                "{flag} {id}"
            );
        }
    }
    for unknown in [
        "0000:ac:00.0",
        "ab:00.1",
        "GPU-00000000-0000-0000-0000-000000000000",
    ] {
        let out = run("h100x8-healthy", &format!("nvidia-smi -L -i {unknown}"));
        assert_eq!(
            (out.exit_code, out.stdout.as_str()),
            (6, "No devices were found\n"),
            "{unknown}"
        );
    }
}

// ---------------------------------------------------------------- canned and the rest

#[test]
fn canned_commands_answer_exactly() {
    let fm = ok("h100x8-healthy", "systemctl status nvidia-fabricmanager");
    assert!(fm.contains("Active: active (running)"));
    let ps = ok(
        "h100x8-stuck-memory",
        "ps -o pid,ppid,stat,etime,cmd -p 48213",
    );
    assert!(ps.contains("python3 train.py"));
    assert!(ok("mi300x-healthy", "rocm-smi").contains("ROCm System Management Interface"));
    assert!(ok("h100x8-healthy", "free -h").contains("Mem:"));
    let other = run("h100x8-healthy", "systemctl status sshd");
    assert_eq!(other.exit_code, 127, "only the exact canned argv answers");
}

#[test]
fn canned_entries_accept_argv_and_override_the_simulators() {
    let text = format!(
        "{MINIMAL}\n[[canned]]\nargv = [\"ibstat\", \"-s\"]\nstdout = \"up\\n\"\n\n[[canned]]\ncommand = \"lspci -nn\"\nstdout = \"canned lspci\\n\"\nexit_code = 0\n\n[[canned]]\ncommand = \"dcgmi diag -r '1'\"\nstderr = \"no host engine\\n\"\nexit_code = 255\n"
    );
    let (_dir, _path, loaded) = load_text(&text);
    let n = loaded.unwrap();
    let argv = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(n.run(&argv(&["ibstat", "-s"])).stdout, "up\n");
    assert_eq!(n.run(&argv(&["lspci", "-nn"])).stdout, "canned lspci\n");
    let d = n.run(&argv(&["dcgmi", "diag", "-r", "1"]));
    assert_eq!((d.exit_code, d.stderr.as_str()), (255, "no host engine\n"));
}

#[test]
fn unknown_commands_are_not_found() {
    let out = run("h100x8-healthy", "rm -rf /");
    assert_eq!(out.exit_code, 127);
    assert_eq!(out.stderr, "bash: rm: command not found\n");
    assert!(out.stdout.is_empty());
    assert_eq!(node("h100x8-healthy").run(&[]), CommandOutput::default());
}

#[test]
fn programs_are_found_by_path_too() {
    let n = node("h100x8-healthy");
    let out = n.run(&["/usr/bin/nvidia-smi".to_string(), "-L".to_string()]);
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.stdout.lines().count(), 8);
}

#[test]
fn the_new_forms_are_commands_the_guard_allows() {
    for command in [
        "nvidia-smi -q -d RESET_STATUS",
        "nvidia-smi -q -d RESET_STATUS -i 2",
        "nvidia-smi dmon -s p -c 5",
        "nvidia-smi dmon -s pucvmet -c 1 -i 2 -d 5 -o DT",
        "nvidia-smi pmon -c 1",
        "nvidia-smi pmon -c 1 -s um -i 1",
        "nvidia-smi topo -p2p n",
        "nvidia-smi topo -p2p r",
        "nvidia-smi topo -p2p a",
        "lspci -t",
        "lspci -tvnn -s 3d:00.0",
        "journalctl --list-boots --no-pager",
        "nvidia-smi --query-gpu=index,pcie.replay_counter --format=csv",
        "nvidia-smi --query-gpu=index,power.min_limit,power.max_limit,temperature.gpu.tlimit,fabric.state,fabric.status --format=csv",
        "nvidia-smi --query-remapped-rows=gpu_bus_id,gpu_uuid,remapped_rows.correctable,remapped_rows.uncorrectable,remapped_rows.pending,remapped_rows.failure --format=csv,noheader -i 1",
        "nvidia-smi nvlink -c -i 0",
        "nvidia-smi -i 0000:3d:00.0 -q -d POWER",
    ] {
        let v = sigma::guard::check(command);
        assert_eq!(
            v.tier,
            sigma::guard::Tier::ReadOnly,
            "{command}: {}",
            v.rule
        );
        assert_eq!(run("l40s-pcie-degraded", command).exit_code, 0, "{command}");
    }
}
