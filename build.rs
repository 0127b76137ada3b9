//! Builds ggml's CPU backend once per x86-64 instruction-set level, so one
//! `sigma` binary carries kernels for every CPU it may meet and picks the best
//! one at run time (`src/engine/ffi/cpu.rs`).
//!
//! `llama-cpp-sys-2` builds llama.cpp and ggml's core without a CPU backend
//! (`GGML_CPU=OFF` in `.cargo/config.toml`). This script configures the same
//! llama.cpp source with the same compiler, flags and build type (read from
//! that build's CMake cache) and builds only the `ggml-cpu` target, once per
//! variant with that variant's `GGML_AVX*` options, like ggml's own
//! `GGML_CPU_ALL_VARIANTS`. That option needs ggml's backends as shared
//! libraries next to the binary; here each variant's symbols are
//! instead renamed with a prefix (`objcopy --redefine-syms`), so all of them
//! link statically into one binary without clashing. None of ggml-cpu's
//! objects has a static constructor, so no variant's code runs unless chosen.
//!
//! It writes `$OUT_DIR/cpu_variants.rs`: the `cpu_variants!` table of names,
//! run-time feature checks and renamed entry points that `cpu.rs` expands.

use std::collections::BTreeSet;
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One build of ggml-cpu: the name users see (`SIGMA_CPU_VARIANT`), and what
/// it adds to the level before it: ggml's options, and the features
/// `is_x86_feature_detected!` must find.
struct Level {
    name: &'static str,
    adds_options: &'static [&'static str],
    adds_features: &'static [&'static str],
}

/// x86-64, each level with everything of the ones before it, best last. The
/// first is the least Sigma runs on (every x86-64 GPU host of the last
/// decade); the AVX-512 levels are ggml's `skylakex`, `icelake` and `zen4`
/// variants (Intel Xeon since Skylake-SP, AMD EPYC since Genoa). AMX
/// (`sapphirerapids`) is left out: its kernels need the kernel's permission to
/// use the tile registers, which no machine here grants, so it could never be
/// tested.
const X86_64: &[Level] = &[
    Level {
        name: "x86-64-v3",
        adds_options: &["SSE42", "AVX", "F16C", "FMA", "AVX2", "BMI2"],
        adds_features: &["sse4.2", "avx", "f16c", "fma", "avx2", "bmi2"],
    },
    Level {
        name: "avx512",
        adds_options: &["AVX512"],
        adds_features: &["avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"],
    },
    Level {
        name: "avx512-vnni",
        adds_options: &["AVX512_VBMI", "AVX512_VNNI"],
        adds_features: &["avx512vbmi", "avx512vnni"],
    },
    Level {
        name: "avx512-bf16",
        adds_options: &["AVX512_BF16"],
        adds_features: &["avx512bf16"],
    },
];

/// Other architectures: one build with ggml's defaults for the target.
const GENERIC: &[Level] = &[Level {
    name: "generic",
    adds_options: &[],
    adds_features: &[],
}];

/// A level with everything of the levels before it.
struct Variant {
    name: &'static str,
    ggml_options: Vec<&'static str>,
    cpu_features: Vec<&'static str>,
}

/// The variants of `levels`, each accumulating the ones before.
fn variants(levels: &[Level]) -> Vec<Variant> {
    let (mut options, mut features) = (Vec::new(), Vec::new());
    levels
        .iter()
        .map(|level| {
            options.extend_from_slice(level.adds_options);
            features.extend_from_slice(level.adds_features);
            Variant {
                name: level.name,
                ggml_options: options.clone(),
                cpu_features: features.clone(),
            }
        })
        .collect()
}

/// Every x86 option a variant may turn on; the others are turned off.
const X86_OPTIONS: &[&str] = &[
    "SSE42",
    "AVX",
    "F16C",
    "FMA",
    "AVX2",
    "BMI2",
    "AVX_VNNI",
    "AVX512",
    "AVX512_VBMI",
    "AVX512_VNNI",
    "AVX512_BF16",
    "AMX_TILE",
    "AMX_INT8",
    "AMX_BF16",
];

/// ggml-cpu options copied from `llama-cpp-sys-2`'s build, so the variants
/// match the core they link with.
const SHARED_OPTIONS: &[&str] = &[
    "GGML_OPENMP",
    "GGML_LLAMAFILE",
    "GGML_CPU_REPACK",
    "GGML_CPU_HBM",
    "GGML_CPU_KLEIDIAI",
    "GGML_SCHED_MAX_COPIES",
];

/// The entry points `cpu.rs` calls in each variant (renamed with its prefix).
const ENTRY_POINTS: &[&str] = &[
    "ggml_backend_cpu_reg",
    "ggml_threadpool_new",
    "ggml_threadpool_free",
    "ggml_backend_cpu_set_n_threads",
    "ggml_backend_cpu_set_threadpool",
    "ggml_cpu_fp16_to_fp32",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let sys = SysBuild::read();
    let variants = variants(match env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("x86_64") => X86_64,
        _ => GENERIC,
    });
    let jobs = env::var("NUM_JOBS").unwrap_or_else(|_| "2".into());
    let mut table = String::from("cpu_variants! {\n");
    for variant in &variants {
        let prefix = format!("sigma_{}_", variant.name.replace('-', "_"));
        let lib = build_variant(&sys, variant, &out, &jobs);
        let renamed = out.join(format!(
            "libsigma_ggml_cpu_{}.a",
            variant.name.replace('-', "_")
        ));
        rename_symbols(&lib, &renamed, &prefix, &out);
        println!(
            "cargo:rustc-link-lib=static=sigma_ggml_cpu_{}",
            variant.name.replace('-', "_")
        );
        let features: Vec<String> = variant
            .cpu_features
            .iter()
            .map(|f| format!("{f:?}"))
            .collect();
        // ggml's f32 vectors: 16 lanes where it is built with AVX-512, else 8
        // (the fused attention op sums in ggml's order for that width).
        let lanes = if variant.ggml_options.contains(&"AVX512") {
            16
        } else {
            8
        };
        let _ = writeln!(
            table,
            "    {:?} {lanes} [{}] {{",
            variant.name,
            features.join(", ")
        );
        for entry in ENTRY_POINTS {
            let _ = writeln!(table, "        {entry}: {prefix}{entry},");
        }
        table.push_str("    }\n");
    }
    table.push_str("}\n");
    println!("cargo:rustc-link-search=native={}", out.display());
    fs::write(out.join("cpu_variants.rs"), table).expect("cannot write cpu_variants.rs");
}

/// What `llama-cpp-sys-2`'s CMake build used: its source, compilers, flags
/// and options, read from its `CMakeCache.txt`.
struct SysBuild {
    cache: String,
}

impl SysBuild {
    fn read() -> Self {
        // llama-cpp-sys-2 exports `<OUT_DIR>/lib/cmake` (or lib64) to its
        // direct dependents; its CMake build directory is `<OUT_DIR>/build`.
        let cmake_dir = env::var("DEP_LLAMA_GGML_CMAKE_DIR")
            .expect("llama-cpp-sys-2 did not export its ggml build (DEP_LLAMA_GGML_CMAKE_DIR)");
        let sys_out = Path::new(&cmake_dir)
            .ancestors()
            .nth(2)
            .expect("DEP_LLAMA_GGML_CMAKE_DIR is <out>/lib/cmake");
        let path = sys_out.join("build").join("CMakeCache.txt");
        println!("cargo:rerun-if-changed={}", path.display());
        let cache = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let this = Self { cache };
        if this.value("GGML_CPU").as_deref() != Some("OFF") {
            panic!(
                "llama-cpp-sys-2 built ggml's CPU backend itself, whose symbols would clash with \
                 the variants: build from the repository (its .cargo/config.toml sets \
                 GGML_CPU=OFF) or set GGML_CPU=OFF; a build directory from before needs \
                 `cargo clean -p llama-cpp-sys-2` once (CMake keeps its old cache)"
            );
        }
        this
    }

    /// The value of `KEY:TYPE=value` in the cache.
    fn value(&self, key: &str) -> Option<String> {
        self.cache.lines().find_map(|line| {
            let (name, value) = line.split_once('=')?;
            (name.split(':').next() == Some(key)).then(|| value.to_string())
        })
    }

    fn required(&self, key: &str) -> String {
        self.value(key)
            .unwrap_or_else(|| panic!("llama-cpp-sys-2's CMake cache has no {key}"))
    }
}

/// Configures and builds `ggml-cpu` for `variant`; returns its static library.
fn build_variant(sys: &SysBuild, variant: &Variant, out: &Path, jobs: &str) -> PathBuf {
    let dir = out.join(format!("ggml-cpu-{}", variant.name));
    let mut configure = Command::new("cmake");
    configure
        .arg("-S")
        .arg(sys.required("CMAKE_HOME_DIRECTORY"))
        .arg("-B")
        .arg(&dir);
    let copied = [
        "CMAKE_BUILD_TYPE",
        "CMAKE_C_COMPILER",
        "CMAKE_CXX_COMPILER",
        "CMAKE_C_FLAGS",
        "CMAKE_CXX_FLAGS",
    ];
    for key in copied.iter().chain(SHARED_OPTIONS) {
        if let Some(value) = sys.value(key) {
            configure.arg(format!("-D{key}={value}"));
        }
    }
    for (key, value) in [
        ("BUILD_SHARED_LIBS", "OFF"),
        ("GGML_CPU", "ON"),
        ("GGML_NATIVE", "OFF"),
        ("GGML_BACKEND_DL", "OFF"),
        ("GGML_CCACHE", "OFF"),
        ("LLAMA_BUILD_COMMON", "OFF"),
        ("LLAMA_BUILD_TESTS", "OFF"),
        ("LLAMA_BUILD_EXAMPLES", "OFF"),
        ("LLAMA_BUILD_SERVER", "OFF"),
        ("LLAMA_BUILD_TOOLS", "OFF"),
        ("LLAMA_BUILD_APP", "OFF"),
        ("LLAMA_CURL", "OFF"),
        ("LLAMA_OPENSSL", "OFF"),
    ] {
        configure.arg(format!("-D{key}={value}"));
    }
    if !variant.cpu_features.is_empty() {
        for option in X86_OPTIONS {
            let on = variant.ggml_options.contains(option);
            configure.arg(format!("-DGGML_{option}={}", if on { "ON" } else { "OFF" }));
        }
    }
    run(
        configure.stdout(std::process::Stdio::null()),
        "configure ggml-cpu",
    );
    let mut build = Command::new("cmake");
    build
        .arg("--build")
        .arg(&dir)
        .args(["--target", "ggml-cpu", "--parallel", jobs]);
    run(build.stdout(std::process::Stdio::null()), "build ggml-cpu");
    let lib = dir.join("ggml").join("src").join("libggml-cpu.a");
    assert!(
        lib.is_file(),
        "the ggml-cpu build made no {}",
        lib.display()
    );
    lib
}

/// Copies `lib` to `renamed` with every symbol it defines prefixed: the
/// globals, and the locals too, since a local names each COMDAT group (C++
/// inline functions, constructors); were those left alone, the linker would
/// keep one variant's group and drop the others' code with it.
fn rename_symbols(lib: &Path, renamed: &Path, prefix: &str, out: &Path) {
    let nm = env::var("NM").unwrap_or_else(|_| "nm".into());
    let listing = Command::new(&nm)
        .args(["--defined-only", "--format=posix"])
        .arg(lib)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {nm} (binutils): {e}"));
    assert!(listing.status.success(), "{nm} failed on {}", lib.display());
    // Posix format: `name type value size` per symbol; archive members
    // appear as `archive[member.o]:` lines.
    let defined: BTreeSet<&str> = std::str::from_utf8(&listing.stdout)
        .expect("nm prints symbol names in UTF-8")
        .lines()
        .filter(|line| !line.ends_with(':'))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    for entry in ENTRY_POINTS {
        assert!(
            defined.contains(entry),
            "ggml-cpu no longer defines {entry}"
        );
    }
    let map: String = defined
        .iter()
        .map(|s| format!("{s} {prefix}{s}\n"))
        .collect();
    let map_path = out.join(format!("{prefix}symbols.txt"));
    fs::write(&map_path, map).expect("cannot write the symbol map");
    let objcopy = env::var("OBJCOPY").unwrap_or_else(|_| "objcopy".into());
    let mut rename = Command::new(&objcopy);
    rename
        .arg(format!("--redefine-syms={}", map_path.display()))
        .arg(lib)
        .arg(renamed);
    run(&mut rename, "rename ggml-cpu's symbols");
}

fn run(command: &mut Command, what: &str) {
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot {what}: {command:?}: {e}"));
    assert!(
        status.success(),
        "cannot {what}: {command:?} exited with {status}"
    );
}
