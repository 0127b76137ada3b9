//! One binary, ggml's CPU kernels chosen at run time (`src/engine/ffi/cpu.rs`):
//! the variant `sigma` picks is the best this CPU has, judged here from
//! `/proc/cpuinfo` (not the detection the binary uses); `SIGMA_CPU_VARIANT`
//! overrides it, and a wrong value is a one-line error naming the fix.
//! Token identity with llama.cpp on each variant is in `tests/engine_oracle.rs`.
//! CPUs this machine is not are emulated with `qemu-x86_64 -cpu MODEL`
//! (user mode; its TCG has AVX2 but no AVX-512): one without AVX-512 and one
//! below x86-64-v3.

use std::process::{Command, Output};

use sigma::engine::ffi::cpu::{VARIANT_ENV, VARIANTS};

/// `sigma model info --device cpu --json` on a small model, with `variant`
/// in `SIGMA_CPU_VARIANT` (or none).
fn model_info(variant: Option<&str>) -> Output {
    let home = std::env::var("HOME").unwrap();
    let model = format!("{home}/.cache/sigma/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        std::path::Path::new(&model).exists(),
        "{model} is missing: run `sigma model pull smollm2-135m` (scripts/test.sh does)"
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sigma"));
    cmd.args(["model", "info", "--device", "cpu", "--json", &model])
        .env_remove(VARIANT_ENV);
    if let Some(v) = variant {
        cmd.env(VARIANT_ENV, v);
    }
    cmd.output().unwrap()
}

fn kernels(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    info["cpu_kernels"].clone()
}

/// The CPU's flags as the kernel lists them (x86-64 Linux).
fn cpuinfo_flags() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("flags"))
        .expect("/proc/cpuinfo lists flags");
    line.split_whitespace().skip(2).map(String::from).collect()
}

/// `/proc/cpuinfo`'s name for a feature named as `is_x86_feature_detected!` names it.
fn cpuinfo_name(feature: &str) -> String {
    match feature {
        "sse4.2" => "sse4_2".into(),
        "avx512vnni" => "avx512_vnni".into(),
        "avx512bf16" => "avx512_bf16".into(),
        other => other.into(),
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn picks_the_best_variant_cpuinfo_allows() {
    let flags = cpuinfo_flags();
    let has = |v: &&sigma::engine::ffi::cpu::Variant| {
        v.features
            .iter()
            .all(|f| flags.contains(&cpuinfo_name(f.name)))
    };
    let want = VARIANTS
        .iter()
        .rev()
        .find(has)
        .expect("this machine is at least x86-64-v3");
    let got = kernels(&model_info(None));
    assert_eq!(got["variant"], want.name, "{got}");
    assert!(
        got["reason"]
            .as_str()
            .unwrap()
            .starts_with("the best this CPU supports"),
        "{got}"
    );
    eprintln!("picked {}", got["variant"]);
}

#[test]
fn the_environment_variable_picks_x86_64_v3() {
    let got = kernels(&model_info(Some("x86-64-v3")));
    assert_eq!(got["variant"], "x86-64-v3", "{got}");
    assert_eq!(
        got["reason"],
        format!("set by {VARIANT_ENV}=x86-64-v3"),
        "{got}"
    );
}

/// `sigma generate` (which needs the kernels, unlike `model info`), greedy,
/// with `variant` in `SIGMA_CPU_VARIANT`, on this CPU or on `emulated`
/// (`qemu-x86_64 -cpu MODEL`).
fn generate(variant: Option<&str>, emulated: Option<&str>) -> Output {
    let sigma = env!("CARGO_BIN_EXE_sigma");
    let mut cmd = match emulated {
        Some(model) => {
            let mut qemu = Command::new("qemu-x86_64");
            qemu.args(["-cpu", model, sigma]);
            qemu
        }
        None => Command::new(sigma),
    };
    cmd.args(["generate", "--model", "smollm2-135m", "--prompt", "The GPU"])
        .args(["--max-tokens", "4"])
        .env_remove(VARIANT_ENV);
    if let Some(v) = variant {
        cmd.env(VARIANT_ENV, v);
    }
    cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e}; qemu-x86_64 comes with qemu-user (scripts/setup.sh installs it)")
    })
}

fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn an_unknown_variant_is_a_one_line_error_listing_the_known_ones() {
    let err = one_line_error(&generate(Some("avx9000"), None));
    assert!(
        err.contains("SIGMA_CPU_VARIANT=avx9000 names no CPU kernel variant"),
        "{err}"
    );
    for v in VARIANTS {
        assert!(err.contains(v.name), "{err}");
    }
}

/// A variant this CPU lacks is refused with the missing features named,
/// never run into SIGILL. Needs a variant the CPU lacks: on a CPU that has
/// them all, the test says so and checks nothing else.
#[test]
fn a_variant_this_cpu_lacks_is_refused_with_what_it_lacks() {
    let Some(lacking) = VARIANTS.iter().find(|v| !v.is_supported()) else {
        eprintln!("NOTE: this CPU supports every variant; nothing to refuse here");
        return;
    };
    let err = one_line_error(&generate(Some(lacking.name), None));
    assert!(
        err.contains(&format!("this CPU lacks {}", lacking.missing())),
        "{err}"
    );
    assert!(err.contains("unset SIGMA_CPU_VARIANT"), "{err}");
}

/// On a CPU without AVX-512 (an emulated Haswell) the same binary picks
/// x86-64-v3 by itself, never executes an AVX-512 instruction (the emulator
/// would stop it with SIGILL) and writes what x86-64-v3 writes here.
#[cfg(target_arch = "x86_64")]
#[test]
fn on_a_cpu_without_avx512_it_picks_x86_64_v3_by_itself() {
    let emulated = generate(None, Some("Haswell"));
    assert!(
        emulated.status.success(),
        "{}",
        String::from_utf8_lossy(&emulated.stderr)
    );
    let native = generate(Some("x86-64-v3"), None);
    assert!(native.status.success());
    assert!(!native.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&emulated.stdout),
        String::from_utf8_lossy(&native.stdout)
    );
}

/// Below x86-64-v3 (an emulated Nehalem: SSE4.2, no AVX): a one-line error
/// naming what is missing, not SIGILL.
#[cfg(target_arch = "x86_64")]
#[test]
fn below_x86_64_v3_it_says_what_the_cpu_lacks() {
    let out = generate(None, Some("Nehalem"));
    let err = String::from_utf8_lossy(&out.stderr);
    let err: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("qemu-x86_64: warning"))
        .collect();
    assert!(!out.status.success());
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(
        err[0].contains(
            "this CPU lacks avx, f16c, fma, avx2, bmi2, which sigma's x86-64-v3 kernels need"
        ),
        "{err:?}"
    );
}
