//! ggml's CPU kernels, chosen at run time for the CPU the binary runs on.
//!
//! `build.rs` builds ggml's CPU backend once per instruction-set level
//! (x86-64-v3, AVX-512, AVX-512 with VBMI/VNNI, with BF16 too) and renames
//! each copy's symbols, so one binary holds them all. At the first use the best
//! variant this CPU and its kernel support is picked (`is_x86_feature_detected!`
//! also asks the OS, so a CPU that advertises instructions the kernel has not
//! enabled is not trusted), or the one `SIGMA_CPU_VARIANT` names. It is then
//! registered with ggml's backend registry, so llama.cpp in the same process
//! (the peer of `sigma bench` and of the oracle tests) runs the same kernels.

use std::ffi::c_int;
use std::sync::OnceLock;

use llama_cpp_sys_2 as sys;

use super::ggml::GgmlError;

/// The environment variable that picks a variant by name instead of the best.
pub const VARIANT_ENV: &str = "SIGMA_CPU_VARIANT";

/// One build of ggml's CPU backend and its renamed entry points.
pub struct Variant {
    /// The name users see and `SIGMA_CPU_VARIANT` takes (`x86-64-v3`, `avx512`...).
    pub name: &'static str,
    /// The CPU features it needs.
    pub features: &'static [Feature],
    /// The f32 lanes of ggml's vectors in this build (8 with AVX2, 16 with
    /// AVX-512): the order in which its dot products sum.
    pub vector_lanes: usize,
    pub(super) api: Api,
}

/// A CPU feature by the name `is_x86_feature_detected!` uses, and its check.
pub struct Feature {
    /// The name (`avx2`, `avx512vnni`...).
    pub name: &'static str,
    detected: fn() -> bool,
}

/// The entry points of one variant that the engine calls.
pub(super) struct Api {
    reg: unsafe extern "C" fn() -> sys::ggml_backend_reg_t,
    pub(super) threadpool_new:
        unsafe extern "C" fn(*mut sys::ggml_threadpool_params) -> *mut sys::ggml_threadpool,
    pub(super) threadpool_free: unsafe extern "C" fn(*mut sys::ggml_threadpool),
    pub(super) set_n_threads: unsafe extern "C" fn(sys::ggml_backend_t, c_int),
    pub(super) set_threadpool: unsafe extern "C" fn(sys::ggml_backend_t, *mut sys::ggml_threadpool),
    pub(super) fp16_to_fp32: unsafe extern "C" fn(*const sys::ggml_fp16_t, *mut f32, i64),
}

/// Expands the table `build.rs` writes (per variant: its name, features and
/// renamed symbols) into extern declarations and [`VARIANTS`].
macro_rules! cpu_variants {
    ($($name:literal $lanes:literal [$($feature:tt),*] {
        ggml_backend_cpu_reg: $reg:ident,
        ggml_threadpool_new: $tp_new:ident,
        ggml_threadpool_free: $tp_free:ident,
        ggml_backend_cpu_set_n_threads: $n_threads:ident,
        ggml_backend_cpu_set_threadpool: $set_tp:ident,
        ggml_cpu_fp16_to_fp32: $fp16:ident,
    })*) => {
        unsafe extern "C" {
            $(
                fn $reg() -> sys::ggml_backend_reg_t;
                fn $tp_new(params: *mut sys::ggml_threadpool_params) -> *mut sys::ggml_threadpool;
                fn $tp_free(pool: *mut sys::ggml_threadpool);
                fn $n_threads(backend: sys::ggml_backend_t, n: c_int);
                fn $set_tp(backend: sys::ggml_backend_t, pool: *mut sys::ggml_threadpool);
                fn $fp16(src: *const sys::ggml_fp16_t, dst: *mut f32, n: i64);
            )*
        }

        /// Every variant built into this binary, best last.
        pub static VARIANTS: &[Variant] = &[$(Variant {
            name: $name,
            vector_lanes: $lanes,
            features: &[$(Feature {
                name: $feature,
                detected: || std::is_x86_feature_detected!($feature),
            }),*],
            api: Api {
                reg: $reg,
                threadpool_new: $tp_new,
                threadpool_free: $tp_free,
                set_n_threads: $n_threads,
                set_threadpool: $set_tp,
                fp16_to_fp32: $fp16,
            },
        }),*];
    };
}

include!(concat!(env!("OUT_DIR"), "/cpu_variants.rs"));

impl Feature {
    /// Whether this CPU has it and its OS has enabled it.
    pub fn is_detected(&self) -> bool {
        (self.detected)()
    }
}

impl Variant {
    /// Whether this CPU (and its OS) supports every instruction the variant uses.
    pub fn is_supported(&self) -> bool {
        self.features.iter().all(Feature::is_detected)
    }

    /// The features this CPU lacks, comma-separated.
    pub fn missing(&self) -> String {
        let lacking: Vec<&str> = self
            .features
            .iter()
            .filter(|f| !f.is_detected())
            .map(|f| f.name)
            .collect();
        lacking.join(", ")
    }
}

/// The variant in use and why it was chosen.
pub struct Chosen {
    /// The variant.
    pub variant: &'static Variant,
    /// Why: the best this CPU supports, or named by `SIGMA_CPU_VARIANT`.
    pub reason: String,
    reg: Registry,
}

/// ggml's registry handle of the chosen variant (a static object).
struct Registry(sys::ggml_backend_reg_t);

// SAFETY: a backend registry is a static, immutable object that ggml shares
// between threads; the handle is only passed back to ggml.
unsafe impl Send for Registry {}
// SAFETY: as above.
unsafe impl Sync for Registry {}

impl std::fmt::Display for Chosen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.variant.name, self.reason)
    }
}

impl Chosen {
    /// The chosen variant's ggml registry entry.
    pub(super) fn reg(&self) -> sys::ggml_backend_reg_t {
        self.reg.0
    }
}

/// Picks the variant (once per process) and registers it with ggml.
pub fn chosen() -> Result<&'static Chosen, GgmlError> {
    static CHOSEN: OnceLock<Result<Chosen, GgmlError>> = OnceLock::new();
    CHOSEN
        .get_or_init(|| {
            let requested = std::env::var(VARIANT_ENV).ok().filter(|v| !v.is_empty());
            let (variant, reason) = pick(requested.as_deref())?;
            // SAFETY: the variant's registry constructor takes no arguments and
            // returns a static object; it runs instructions of its level only
            // after `pick` checked this CPU has them.
            let reg = unsafe { (variant.api.reg)() };
            if reg.is_null() {
                return Err(GgmlError::BackendInit);
            }
            // SAFETY: a valid, static registry, registered once (OnceLock).
            unsafe { sys::ggml_backend_register(reg) };
            Ok(Chosen {
                variant,
                reason,
                reg: Registry(reg),
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The variant `requested` names (checked against this CPU), or the best one
/// this CPU supports; with the reason, in words.
fn pick(requested: Option<&str>) -> Result<(&'static Variant, String), GgmlError> {
    let names = || {
        VARIANTS
            .iter()
            .map(|v| v.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(name) = requested {
        let variant = VARIANTS.iter().find(|v| v.name == name).ok_or_else(|| {
            GgmlError::UnknownCpuVariant {
                name: name.to_string(),
                known: names(),
            }
        })?;
        if !variant.is_supported() {
            return Err(GgmlError::CpuUnsupported {
                variant: variant.name,
                missing: variant.missing(),
            });
        }
        return Ok((variant, format!("set by {VARIANT_ENV}={name}")));
    }
    let best = VARIANTS.iter().rev().find(|v| v.is_supported());
    match best {
        Some(variant) => {
            let reason = match VARIANTS.iter().find(|v| !v.is_supported()) {
                Some(next) => format!(
                    "the best this CPU supports of {}; {} needs {}",
                    names(),
                    next.name,
                    next.missing()
                ),
                None => format!("the best of {}: this CPU supports them all", names()),
            };
            Ok((variant, reason))
        }
        None => Err(GgmlError::CpuUnsupported {
            variant: VARIANTS[0].name,
            missing: VARIANTS[0].missing(),
        }),
    }
}
