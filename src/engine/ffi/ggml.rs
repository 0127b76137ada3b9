//! Safe wrapper over ggml: backends, buffers, tensors, graphs.
//!
//! # What lives here
//!
//! - [`Backend`]: a compute backend, the CPU's (with its thread count and
//!   persistent thread pool) or a GPU's ([`Device::gpus`] lists them: CUDA
//!   with the `cuda` feature).
//! - [`TensorArena`]: a set of long-lived tensors (weights, KV cache) in one
//!   backend buffer, addressed by [`TensorId`].
//! - [`Graph`]: a compute graph built op by op from [`Tensor`] handles, over a
//!   reusable [`GraphScratch`] metadata buffer, allocated by a
//!   [`GraphAllocator`] and run by [`Backend::compute`], or both by a
//!   [`GraphRunner`] (which splits a graph between a GPU and the CPU).
//!
//! # Safety model
//!
//! A [`Tensor<'a>`] borrows the arena or graph that owns it, so a handle can
//! not outlive its memory. ggml checks shapes inside every op and aborts on a
//! mismatch (an abort, never undefined behaviour); callers validate shapes
//! that come from files before building graphs. Host <-> tensor copies check
//! sizes and allocation here and return [`GgmlError`] instead.
//!
//! # Example
//!
//! ```no_run
//! use sigma::engine::ffi::ggml::{Backend, GgmlType, Graph, GraphAllocator, GraphScratch};
//! let backend = Backend::cpu(2).unwrap();
//! let mut scratch = GraphScratch::new(16);
//! let mut alloc = GraphAllocator::new(&backend).unwrap();
//! let g = Graph::new(&mut scratch);
//! let a = g.input(GgmlType::F32, &[4], "a");
//! let b = g.scale(a, 2.0);
//! g.expand(b);
//! alloc.allocate(&g).unwrap();
//! a.write_f32(&[1.0, 2.0, 3.0, 4.0]).unwrap();
//! backend.compute(&g).unwrap();
//! let mut out = Vec::new();
//! b.read_f32(&mut out).unwrap();
//! assert_eq!(out, [2.0, 4.0, 6.0, 8.0]);
//! ```

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Once;

use llama_cpp_sys_2 as sys;

/// Errors from the ggml layer: allocation failures and misuse caught before C
/// sees it.
#[derive(Clone, Debug, thiserror::Error)]
pub enum GgmlError {
    /// This CPU lacks instructions a CPU kernel variant needs.
    #[error(
        "this CPU lacks {missing}, which sigma's {variant} kernels need; sigma runs on x86-64-v3 CPUs (AVX2, FMA, F16C, BMI2) and later{}",
        if *variant == "x86-64-v3" { "" } else { "; unset SIGMA_CPU_VARIANT to pick the best this CPU supports" }
    )]
    CpuUnsupported {
        /// The variant asked for (or the least one, when none fits).
        variant: &'static str,
        /// Its features this CPU lacks, comma-separated.
        missing: String,
    },
    /// `SIGMA_CPU_VARIANT` names no variant built into this binary.
    #[error(
        "SIGMA_CPU_VARIANT={name} names no CPU kernel variant of this sigma; use one of {known}, or unset it"
    )]
    UnknownCpuVariant {
        /// The name given.
        name: String,
        /// The variants built in, comma-separated.
        known: String,
    },
    /// ggml could not create the CPU backend.
    #[error("could not start the ggml CPU backend; check that the process may create threads")]
    BackendInit,
    /// ggml could not start the backend of a GPU.
    #[error(
        "could not start ggml on {0}; check `nvidia-smi` (a GPU in exclusive mode may be held by another process) or use --device cpu"
    )]
    GpuInit(String),
    /// A backend buffer could not be allocated.
    #[error(
        "could not allocate {bytes} bytes for {what} in '{buffer_type}'; free memory or use a smaller model/context"
    )]
    Alloc {
        /// What the buffer was for.
        what: String,
        /// Requested size.
        bytes: usize,
        /// Buffer type name.
        buffer_type: String,
    },
    /// The graph allocator could not place the graph's intermediate tensors.
    #[error(
        "could not allocate the compute graph ({nodes} nodes); free memory or use a smaller batch"
    )]
    GraphAlloc {
        /// Node count of the graph.
        nodes: usize,
    },
    /// Graph computation failed.
    #[error("ggml graph computation failed with status {0}")]
    Compute(i32),
    /// A host copy had the wrong size.
    #[error("tensor '{name}' holds {expected} bytes but {got} bytes were given")]
    SizeMismatch {
        /// Tensor name.
        name: String,
        /// Tensor size in bytes.
        expected: usize,
        /// Host slice size in bytes.
        got: usize,
    },
    /// A tensor was read or written before its buffer was allocated.
    #[error("tensor '{0}' has no memory yet; allocate its arena or graph first")]
    Unallocated(String),
    /// Too many tensors for an arena.
    #[error("tensor arena is full ({0} tensors); create it with a larger capacity")]
    ArenaFull(usize),
    /// A dimension list was empty or longer than 4.
    #[error("tensor '{name}' has {dims} dimensions; ggml supports 1 to 4")]
    BadRank {
        /// Tensor name.
        name: String,
        /// Number of dimensions given.
        dims: usize,
    },
    /// Data could not be encoded in a type.
    #[error("cannot encode as {ty}: {why}; choose another --type")]
    Quantize {
        /// The target type.
        ty: String,
        /// Why not.
        why: String,
    },
}

/// Why ggml's GPU backend found no device, as it logged it (the CUDA
/// runtime's reason: no driver, a driver too old, no GPU).
static GPU_INIT_ERROR: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Routes ggml's log through a filter once per process: only errors are
/// printed (on stderr), so a run's stdout carries nothing but model output.
/// A GPU backend that finds no device is expected on CPU-only nodes: its
/// message is kept for [`Device::gpu_unavailable_reason`], not printed.
fn quiet_logs() {
    static ONCE: Once = Once::new();
    unsafe extern "C" fn log(level: sys::ggml_log_level, text: *const c_char, _: *mut c_void) {
        if level == sys::GGML_LOG_LEVEL_ERROR && !text.is_null() {
            // SAFETY: ggml passes a NUL-terminated message.
            let msg = unsafe { CStr::from_ptr(text) }.to_string_lossy();
            if let Some((_, why)) = msg.split_once("failed to initialize CUDA: ") {
                let mut slot = GPU_INIT_ERROR.lock().unwrap_or_else(|e| e.into_inner());
                *slot = Some(why.trim().to_string());
                return;
            }
            eprint!("ggml: {msg}");
        }
    }
    ONCE.call_once(|| {
        // SAFETY: `log` matches the callback signature and ignores user data.
        unsafe { sys::ggml_log_set(Some(log), std::ptr::null_mut()) };
    });
}

/// A ggml element type (`GGML_TYPE_*`), including quantized block types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GgmlType(pub u32);

impl GgmlType {
    /// 32-bit float.
    pub const F32: Self = Self(sys::GGML_TYPE_F32);
    /// 16-bit IEEE float.
    pub const F16: Self = Self(sys::GGML_TYPE_F16);
    /// 32-bit signed integer (token ids, positions).
    pub const I32: Self = Self(sys::GGML_TYPE_I32);
    /// 64-bit signed integer (row indices for `set_rows`).
    pub const I64: Self = Self(sys::GGML_TYPE_I64);
    /// 8-bit block quantization, one scale per 32 values.
    pub const Q8_0: Self = Self(sys::GGML_TYPE_Q8_0);
    /// 4-bit block quantization, one scale per 32 values.
    pub const Q4_0: Self = Self(sys::GGML_TYPE_Q4_0);

    /// Weight types the engine loads and multiplies; others are refused at
    /// load time with an error that lists these.
    pub const SUPPORTED_WEIGHTS: [Self; 14] = [
        Self(sys::GGML_TYPE_F32),
        Self(sys::GGML_TYPE_F16),
        Self(sys::GGML_TYPE_BF16),
        Self(sys::GGML_TYPE_Q4_0),
        Self(sys::GGML_TYPE_Q4_1),
        Self(sys::GGML_TYPE_Q5_0),
        Self(sys::GGML_TYPE_Q5_1),
        Self(sys::GGML_TYPE_Q8_0),
        Self(sys::GGML_TYPE_Q2_K),
        Self(sys::GGML_TYPE_Q3_K),
        Self(sys::GGML_TYPE_Q4_K),
        Self(sys::GGML_TYPE_Q5_K),
        Self(sys::GGML_TYPE_Q6_K),
        Self(sys::GGML_TYPE_IQ4_NL),
    ];

    /// ggml's name for the type ("f16", "q4_K", ...), or "type#N" if unknown.
    pub fn name(self) -> String {
        if self.0 >= sys::GGML_TYPE_COUNT {
            return format!("type#{}", self.0);
        }
        // SAFETY: in-range types have a static name (possibly NULL for removed ids).
        let p = unsafe { sys::ggml_type_name(self.0) };
        if p.is_null() {
            return format!("type#{}", self.0);
        }
        // SAFETY: non-NULL names are static NUL-terminated strings.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    /// Whether the engine can load weights of this type.
    pub fn is_supported_weight(self) -> bool {
        Self::SUPPORTED_WEIGHTS.contains(&self)
    }

    /// Bytes of one row of `n` elements (`n` must be a multiple of the block
    /// size), or `None` for an unknown type or a ragged row.
    pub fn row_size(self, n: i64) -> Option<usize> {
        if self.0 >= sys::GGML_TYPE_COUNT || n < 0 {
            return None;
        }
        // SAFETY: in-range type ids are valid arguments.
        let blck = unsafe { sys::ggml_blck_size(self.0) };
        // SAFETY: as above.
        let size = unsafe { sys::ggml_type_size(self.0) };
        if blck <= 0 || size == 0 || n % blck != 0 {
            return None;
        }
        usize::try_from(n / blck).ok()?.checked_mul(size)
    }

    /// The list of supported weight type names, for error messages.
    pub fn supported_weight_names() -> String {
        Self::SUPPORTED_WEIGHTS
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The type named `name` (ggml's spelling, case-insensitive: `f16`,
    /// `q4_K`, `q8_0`), if it exists.
    pub fn from_name(name: &str) -> Option<Self> {
        (0..sys::GGML_TYPE_COUNT)
            .map(Self)
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// Encodes `data` (rows of `n_per_row` values) in this type with ggml's
    /// own quantization routines (f32 and f16 included).
    pub fn quantize(self, data: &[f32], n_per_row: usize) -> Result<Vec<u8>, GgmlError> {
        let bad = |why: String| GgmlError::Quantize {
            ty: self.name(),
            why,
        };
        if n_per_row == 0 || !data.len().is_multiple_of(n_per_row) {
            return Err(bad(format!(
                "{} values are not whole rows of {n_per_row}",
                data.len()
            )));
        }
        let row = self.row_size(n_per_row as i64).ok_or_else(|| {
            bad(format!(
                "rows of {n_per_row} values are not a multiple of its block size"
            ))
        })?;
        // SAFETY: in-range type (row_size checked it).
        if unsafe { sys::ggml_quantize_requires_imatrix(self.0) } {
            return Err(bad("it needs an importance matrix".into()));
        }
        let n_rows = data.len() / n_per_row;
        let mut out = vec![0u8; row * n_rows];
        // SAFETY: `data` holds n_rows * n_per_row floats and `out` exactly
        // the bytes ggml writes for them; no importance matrix.
        let written = unsafe {
            sys::ggml_quantize_chunk(
                self.0,
                data.as_ptr(),
                out.as_mut_ptr().cast(),
                0,
                n_rows as i64,
                n_per_row as i64,
                std::ptr::null(),
            )
        };
        debug_assert_eq!(written, out.len());
        Ok(out)
    }

    /// Decodes `bytes` (rows of `n_per_row` values in this type) to f32 with
    /// ggml's own routines.
    pub fn dequantize(self, bytes: &[u8], n_per_row: usize) -> Result<Vec<f32>, GgmlError> {
        let bad = |why: String| GgmlError::Quantize {
            ty: self.name(),
            why,
        };
        let row = self.row_size(n_per_row as i64).ok_or_else(|| {
            bad(format!(
                "rows of {n_per_row} values are not a multiple of its block size"
            ))
        })?;
        if row == 0 || !bytes.len().is_multiple_of(row) {
            return Err(bad(format!(
                "{} bytes are not whole rows of {row}",
                bytes.len()
            )));
        }
        let n = bytes.len() / row * n_per_row;
        if self == Self::F32 {
            // ggml has no conversion from f32 to itself
            return Ok(bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect());
        }
        // SAFETY: in-range type (row_size checked it); the traits are static.
        let to_float = unsafe { (*sys::ggml_get_type_traits(self.0)).to_float }
            .ok_or_else(|| bad("ggml cannot decode it".into()))?;
        let mut out = vec![0f32; n];
        // SAFETY: `bytes` holds exactly the encoding of `n` values of this
        // type and `out` has room for them.
        unsafe { to_float(bytes.as_ptr().cast(), out.as_mut_ptr(), n as i64) };
        Ok(out)
    }
}

/// A backend buffer type (where tensor memory lives: host RAM, CPU repacked
/// layout, GPU memory).
#[derive(Clone, Copy, Debug)]
pub struct BufferType(NonNull<sys::ggml_backend_buffer_type>);

impl BufferType {
    /// The buffer type's name ("CPU", "CPU_REPACK", "CUDA0", ...).
    pub fn name(self) -> String {
        // SAFETY: buffer types are static singletons with static names.
        let p = unsafe { sys::ggml_backend_buft_name(self.0.as_ptr()) };
        if p.is_null() {
            return String::from("?");
        }
        // SAFETY: non-NULL, NUL-terminated.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// A device of ggml's backend registry: a GPU of a backend compiled in
/// (CUDA with the `cuda` feature). Devices are static for the process.
#[derive(Clone, Copy, Debug)]
pub struct Device(NonNull<sys::ggml_backend_device>);

/// Reads a C string ggml owns, `"?"` for NULL.
fn c_str(p: *const c_char) -> String {
    if p.is_null() {
        return String::from("?");
    }
    // SAFETY: non-NULL strings from ggml are NUL-terminated and static.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl Device {
    /// The GPUs ggml can run on, in its order (`CUDA0`, `CUDA1`, ...):
    /// none in a build without a GPU backend, or where the CUDA runtime
    /// finds no usable GPU ([`Device::gpu_unavailable_reason`] says why).
    pub fn gpus() -> Vec<Self> {
        quiet_logs();
        // SAFETY: the registry initialises itself on first use; indices below
        // the count are valid and devices are static.
        let n = unsafe { sys::ggml_backend_dev_count() };
        (0..n)
            .filter_map(|i| NonNull::new(unsafe { sys::ggml_backend_dev_get(i) }))
            .map(Self)
            .filter(|d| {
                // SAFETY: live static device.
                let ty = unsafe { sys::ggml_backend_dev_type(d.0.as_ptr()) };
                ty == sys::GGML_BACKEND_DEVICE_TYPE_GPU
            })
            .collect()
    }

    /// What the GPU backend said when it found no GPU, if it did.
    pub fn gpu_unavailable_reason() -> Option<String> {
        GPU_INIT_ERROR
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// ggml's name for the device (`CUDA0`).
    pub fn name(&self) -> String {
        // SAFETY: live static device.
        c_str(unsafe { sys::ggml_backend_dev_name(self.0.as_ptr()) })
    }

    /// The product (`NVIDIA H200`).
    pub fn description(&self) -> String {
        // SAFETY: live static device.
        c_str(unsafe { sys::ggml_backend_dev_description(self.0.as_ptr()) })
    }

    /// Free and total memory in bytes, as the device reports them now.
    pub fn memory(&self) -> (usize, usize) {
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: live static device and two writable outputs.
        unsafe { sys::ggml_backend_dev_memory(self.0.as_ptr(), &mut free, &mut total) };
        (free, total)
    }

    /// The PCI bus id (`0000:18:00.0`, lower case), when the backend knows it.
    pub fn pci_bus_id(&self) -> Option<String> {
        // SAFETY: a plain-data struct the call fills in.
        let mut props: sys::ggml_backend_dev_props = unsafe { std::mem::zeroed() };
        // SAFETY: live static device, writable props.
        unsafe { sys::ggml_backend_dev_get_props(self.0.as_ptr(), &mut props) };
        (!props.device_id.is_null()).then(|| c_str(props.device_id))
    }

    /// The device's memory for tensors.
    pub fn buffer_type(&self) -> BufferType {
        // SAFETY: live static device; every device has a default buffer type.
        let p = unsafe { sys::ggml_backend_dev_buffer_type(self.0.as_ptr()) };
        BufferType(NonNull::new(p).expect("ggml devices always have a buffer type"))
    }
}

/// The CPU backend runs graphs on `n_threads` threads kept in a persistent
/// ggml thread pool (created once, not per graph; idle workers sleep rather
/// after a short spin, so an idle model costs no CPU).
pub struct Backend {
    raw: NonNull<sys::ggml_backend>,
    threadpool: Option<NonNull<sys::ggml_threadpool>>,
    n_threads: usize,
}

impl Backend {
    /// Starts the CPU backend with `n_threads` worker threads (at least 1).
    pub fn cpu(n_threads: usize) -> Result<Self, GgmlError> {
        let cpu = super::cpu::chosen()?;
        quiet_logs();
        let n_threads = n_threads.max(1);
        // SAFETY: the chosen variant's registry is static and has one device.
        let dev = unsafe { sys::ggml_backend_reg_dev_get(cpu.reg(), 0) };
        if dev.is_null() {
            return Err(GgmlError::BackendInit);
        }
        // SAFETY: live static device, no parameters; NULL signals failure.
        let raw = NonNull::new(unsafe { sys::ggml_backend_dev_init(dev, std::ptr::null()) })
            .ok_or(GgmlError::BackendInit)?;
        let mut backend = Self {
            raw,
            threadpool: None,
            n_threads,
        };
        let threads = c_int::try_from(n_threads).unwrap_or(c_int::MAX);
        // SAFETY: plain constructor of a parameter struct.
        let mut params = unsafe { sys::ggml_threadpool_params_default(threads) };
        // Workers spin only briefly (~0.1 ms, enough to bridge the gap
        // between two decode steps) before sleeping on a condition variable:
        // the cores are shared (UI, probes, other engines). ggml's default
        // (50) spins for milliseconds after every graph.
        params.poll = 1;
        let api = &cpu.variant.api;
        // SAFETY: params is a valid, initialised struct; NULL signals failure.
        let pool = NonNull::new(unsafe { (api.threadpool_new)(&mut params) })
            .ok_or(GgmlError::BackendInit)?;
        backend.threadpool = Some(pool);
        // SAFETY: both handles are live and of the same variant; the pool
        // outlives its use (freed in Drop after the backend).
        unsafe {
            (api.set_n_threads)(raw.as_ptr(), threads);
            (api.set_threadpool)(raw.as_ptr(), pool.as_ptr());
        }
        Ok(backend)
    }

    /// Starts ggml's backend on `device` (a GPU from [`Device::gpus`]).
    pub fn gpu(device: Device) -> Result<Self, GgmlError> {
        quiet_logs();
        // SAFETY: live static device, no parameters; NULL signals failure.
        let raw = NonNull::new(unsafe {
            sys::ggml_backend_dev_init(device.0.as_ptr(), std::ptr::null())
        })
        .ok_or_else(|| {
            GgmlError::GpuInit(format!("{} ({})", device.name(), device.description()))
        })?;
        Ok(Self {
            raw,
            threadpool: None,
            n_threads: 1,
        })
    }

    /// Whether this is a GPU's backend (not the CPU's).
    pub fn is_gpu(&self) -> bool {
        // SAFETY: live backend; its device is static.
        let dev = unsafe { sys::ggml_backend_get_device(self.raw.as_ptr()) };
        // SAFETY: as above.
        !dev.is_null()
            && unsafe { sys::ggml_backend_dev_type(dev) } == sys::GGML_BACKEND_DEVICE_TYPE_GPU
    }

    /// ggml's name for the backend (`CPU`, `CUDA0`).
    pub fn name(&self) -> String {
        // SAFETY: live backend.
        c_str(unsafe { sys::ggml_backend_name(self.raw.as_ptr()) })
    }

    /// Number of compute threads (1 for a GPU).
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// The backend's default buffer type (plain host memory for the CPU).
    pub fn buffer_type(&self) -> BufferType {
        // SAFETY: live backend; the default buffer type is a static singleton.
        let p = unsafe { sys::ggml_backend_get_default_buffer_type(self.raw.as_ptr()) };
        BufferType(NonNull::new(p).expect("ggml backends always have a default buffer type"))
    }

    /// Extra buffer types of the backend's device, best first: for the CPU the
    /// "repack" type that stores quantized weights interleaved for faster
    /// matrix products (what llama.cpp uses by default).
    pub fn extra_buffer_types(&self) -> Vec<BufferType> {
        type GetExtra =
            unsafe extern "C" fn(sys::ggml_backend_dev_t) -> *mut sys::ggml_backend_buffer_type_t;
        let name = c"ggml_backend_dev_get_extra_bufts";
        // SAFETY: live backend; registries and devices are static.
        let dev = unsafe { sys::ggml_backend_get_device(self.raw.as_ptr()) };
        // SAFETY: as above.
        let reg = unsafe { sys::ggml_backend_dev_backend_reg(dev) };
        // SAFETY: valid registry and NUL-terminated name.
        let f = unsafe { sys::ggml_backend_reg_get_proc_address(reg, name.as_ptr()) };
        if f.is_null() || dev.is_null() {
            return Vec::new();
        }
        // SAFETY: ggml documents this proc address with exactly this signature.
        let get: GetExtra = unsafe { std::mem::transmute::<*mut c_void, GetExtra>(f) };
        // SAFETY: returns a NULL-terminated static array.
        let mut p = unsafe { get(dev) };
        let mut out = Vec::new();
        while !p.is_null() {
            // SAFETY: p points into the NULL-terminated array.
            let item = unsafe { *p };
            let Some(buft) = NonNull::new(item) else {
                break;
            };
            out.push(BufferType(buft));
            // SAFETY: the terminator has not been reached, so p+1 is in bounds.
            p = unsafe { p.add(1) };
        }
        out
    }

    /// Whether a matrix product of a weight of type `ty` and shape `ne`
    /// (2-D) stored in `buft` by an f32 activation runs on this backend.
    ///
    /// This is how llama.cpp decides which weights go to the repack buffer:
    /// build the op on a zero-sized buffer of that type and ask the device.
    pub fn supports_matmul_weight(&self, buft: BufferType, ty: GgmlType, ne: [i64; 2]) -> bool {
        let mut scratch = GraphScratch::new(4);
        let g = Graph::new(&mut scratch);
        let w = g.tensor(ty, &ne, "probe_weight");
        let x = g.tensor(GgmlType::F32, &[ne[0], 1], "probe_x");
        let y = g.mul_mat(w, x);
        // SAFETY: a zero-sized buffer of a static type; freed below.
        let buf = unsafe { sys::ggml_backend_buft_alloc_buffer(buft.0.as_ptr(), 0) };
        if buf.is_null() {
            return false;
        }
        // SAFETY: w is a live metadata-only tensor of the scratch graph; we only
        // point its buffer at `buf` for the query and clear it before freeing.

        unsafe {
            (*w.raw.as_ptr()).buffer = buf;
            let dev = sys::ggml_backend_get_device(self.raw.as_ptr());
            let ok = sys::ggml_backend_dev_supports_op(dev, y.raw.as_ptr());
            (*w.raw.as_ptr()).buffer = std::ptr::null_mut();
            sys::ggml_backend_buffer_free(buf);
            ok
        }
    }

    /// Runs an allocated graph.
    pub fn compute(&self, graph: &Graph<'_>) -> Result<(), GgmlError> {
        // SAFETY: live backend and graph; the graph was allocated by a GraphAllocator
        // (compute on unallocated tensors is rejected by ggml's asserts).
        let status =
            unsafe { sys::ggml_backend_graph_compute(self.raw.as_ptr(), graph.gf.as_ptr()) };
        if status == sys::GGML_STATUS_SUCCESS {
            Ok(())
        } else {
            Err(GgmlError::Compute(status))
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // SAFETY: handles are owned and freed once; the backend goes before its pool.
        unsafe {
            sys::ggml_backend_free(self.raw.as_ptr());
            if let Some(pool) = self.threadpool {
                // A pool exists only on a CPU backend, made by the chosen variant.
                if let Ok(cpu) = super::cpu::chosen() {
                    (cpu.variant.api.threadpool_free)(pool.as_ptr());
                }
            }
        }
    }
}

/// A handle to a ggml tensor owned by a [`TensorArena`] or a [`Graph`].
///
/// Copyable; the lifetime ties it to its owner.
#[derive(Clone, Copy, Debug)]
pub struct Tensor<'a> {
    raw: NonNull<sys::ggml_tensor>,
    _owner: PhantomData<&'a sys::ggml_tensor>,
}

impl<'a> Tensor<'a> {
    fn from_raw(p: *mut sys::ggml_tensor) -> Self {
        Self {
            raw: NonNull::new(p).expect("ggml returned a NULL tensor (out of context memory)"),
            _owner: PhantomData,
        }
    }

    fn get(&self) -> &sys::ggml_tensor {
        // SAFETY: the owner is alive for 'a and ggml never moves tensors.
        unsafe { self.raw.as_ref() }
    }

    /// Sizes of the 4 dimensions (ggml order: ne[0] is the fastest).
    pub fn ne(&self) -> [i64; 4] {
        self.get().ne
    }

    /// Strides in bytes of the 4 dimensions.
    pub fn nb(&self) -> [usize; 4] {
        self.get().nb
    }

    /// Element type.
    pub fn ty(&self) -> GgmlType {
        GgmlType(self.get().type_)
    }

    /// Size of the tensor's data in bytes.
    pub fn nbytes(&self) -> usize {
        // SAFETY: live tensor.
        unsafe { sys::ggml_nbytes(self.raw.as_ptr()) }
    }

    /// The tensor's name.
    pub fn name(&self) -> String {
        // SAFETY: ggml keeps `name` NUL-terminated within its 64 bytes.
        unsafe { CStr::from_ptr(self.get().name.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    fn check_io(&self, bytes: usize) -> Result<(), GgmlError> {
        let t = self.get();
        if t.buffer.is_null() && (t.view_src.is_null() || unsafe { (*t.view_src).buffer.is_null() })
        {
            return Err(GgmlError::Unallocated(self.name()));
        }
        if bytes != self.nbytes() {
            return Err(GgmlError::SizeMismatch {
                name: self.name(),
                expected: self.nbytes(),
                got: bytes,
            });
        }
        Ok(())
    }

    /// Copies raw bytes into the tensor (whole tensor; a repack buffer
    /// converts the layout on the way in).
    pub fn write_bytes(&self, data: &[u8]) -> Result<(), GgmlError> {
        self.check_io(data.len())?;
        // SAFETY: allocated tensor and a host slice of exactly nbytes.
        unsafe {
            sys::ggml_backend_tensor_set(self.raw.as_ptr(), data.as_ptr().cast(), 0, data.len())
        };
        Ok(())
    }

    /// Reads `len` bytes at byte `offset` of the tensor (a leading range of
    /// rows, as the KV cache saves its prefix).
    pub fn read_range(&self, offset: usize, len: usize) -> Result<Vec<u8>, GgmlError> {
        self.check_range(offset, len)?;
        let mut out = vec![0u8; len];
        // SAFETY: allocated tensor; offset+len checked against nbytes.
        unsafe {
            sys::ggml_backend_tensor_get(self.raw.as_ptr(), out.as_mut_ptr().cast(), offset, len)
        };
        Ok(out)
    }

    /// Writes `data` at byte `offset` of the tensor.
    pub fn write_range(&self, offset: usize, data: &[u8]) -> Result<(), GgmlError> {
        self.check_range(offset, data.len())?;
        // SAFETY: allocated tensor; offset+len checked against nbytes.
        unsafe {
            sys::ggml_backend_tensor_set(
                self.raw.as_ptr(),
                data.as_ptr().cast(),
                offset,
                data.len(),
            )
        };
        Ok(())
    }

    /// Checks that the tensor is allocated and `[offset, offset+len)` lies in it.
    fn check_range(&self, offset: usize, len: usize) -> Result<(), GgmlError> {
        self.check_io(self.nbytes())?;
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.nbytes())
        {
            return Err(GgmlError::SizeMismatch {
                name: self.name(),
                expected: self.nbytes(),
                got: offset.saturating_add(len),
            });
        }
        Ok(())
    }

    /// Copies f32 values into an f32 tensor.
    pub fn write_f32(&self, data: &[f32]) -> Result<(), GgmlError> {
        self.write_bytes(as_bytes(data))
    }

    /// Copies i32 values into an i32 tensor.
    pub fn write_i32(&self, data: &[i32]) -> Result<(), GgmlError> {
        self.write_bytes(as_bytes(data))
    }

    /// Copies i64 values into an i64 tensor.
    pub fn write_i64(&self, data: &[i64]) -> Result<(), GgmlError> {
        self.write_bytes(as_bytes(data))
    }

    /// Converts f32 values to f16 (in `scratch`) and copies them into an f16
    /// tensor.
    pub fn write_f32_as_f16(&self, data: &[f32], scratch: &mut Vec<u16>) -> Result<(), GgmlError> {
        scratch.clear();
        scratch.resize(data.len(), 0);
        // SAFETY: both slices hold data.len() elements; ggml_fp16_t is u16.
        unsafe {
            sys::ggml_fp32_to_fp16_row(data.as_ptr(), scratch.as_mut_ptr(), data.len() as i64)
        };
        self.write_bytes(as_bytes(scratch))
    }

    /// Reads an f32 tensor into `out` (resized to fit).
    pub fn read_f32(&self, out: &mut Vec<f32>) -> Result<(), GgmlError> {
        if self.ty() != GgmlType::F32 {
            return Err(GgmlError::SizeMismatch {
                name: self.name(),
                expected: self.nbytes(),
                got: 0,
            });
        }
        let n = self.nbytes() / 4;
        out.clear();
        out.resize(n, 0.0);
        self.check_io(n * 4)?;
        // SAFETY: allocated f32 tensor, host slice of exactly nbytes.
        unsafe {
            sys::ggml_backend_tensor_get(self.raw.as_ptr(), out.as_mut_ptr().cast(), 0, n * 4)
        };
        Ok(())
    }
}

/// Views a slice of plain numbers as bytes.
fn as_bytes<T: Copy>(data: &[T]) -> &[u8] {
    // SAFETY: only used with f32/i32/i64/u16 (no padding, any bit pattern valid as u8).
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast(), std::mem::size_of_val(data)) }
}

/// A no-alloc ggml context: tensor metadata only.
pub(super) struct Context(pub(super) NonNull<sys::ggml_context>);

impl Context {
    /// A context of `mem_size` bytes, in `mem_buffer` if non-NULL (which must
    /// then hold `mem_size` bytes and outlive the context).
    pub(super) fn new(mem_size: usize, mem_buffer: *mut c_void) -> Self {
        let params = sys::ggml_init_params {
            mem_size,
            mem_buffer,
            no_alloc: true,
        };
        // SAFETY: valid params; ggml aborts rather than return NULL on OOM.
        Self(NonNull::new(unsafe { sys::ggml_init(params) }).expect("ggml_init returned NULL"))
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: owned context, freed once (does not free a caller-given mem_buffer).
        unsafe { sys::ggml_free(self.0.as_ptr()) };
    }
}

/// Index of a tensor in a [`TensorArena`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TensorId(usize);

/// Long-lived tensors sharing one backend buffer (model weights, KV cache).
///
/// Declare tensors with [`TensorArena::add`], then [`TensorArena::allocate`]
/// once; afterwards write data and use [`TensorArena::get`] in graphs.
pub struct TensorArena {
    ctx: Context,
    tensors: Vec<NonNull<sys::ggml_tensor>>,
    capacity: usize,
    buffer: Option<NonNull<sys::ggml_backend_buffer>>,
}

impl TensorArena {
    /// An arena for at most `capacity` tensors.
    pub fn new(capacity: usize) -> Self {
        Self {
            // SAFETY: plain size computation.
            ctx: Context::new(
                unsafe { sys::ggml_tensor_overhead() } * capacity.max(1),
                std::ptr::null_mut(),
            ),
            tensors: Vec::new(),
            capacity,
            buffer: None,
        }
    }

    /// Declares a tensor of type `ty` and dims `ne` (1 to 4, ggml order).
    pub fn add(&mut self, ty: GgmlType, ne: &[i64], name: &str) -> Result<TensorId, GgmlError> {
        if self.tensors.len() >= self.capacity {
            return Err(GgmlError::ArenaFull(self.capacity));
        }
        if ne.is_empty() || ne.len() > 4 {
            return Err(GgmlError::BadRank {
                name: name.to_owned(),
                dims: ne.len(),
            });
        }
        // SAFETY: live context with room (capacity checked); ne has 1..=4 entries.
        let t = unsafe {
            sys::ggml_new_tensor(self.ctx.0.as_ptr(), ty.0, ne.len() as c_int, ne.as_ptr())
        };
        let t = Tensor::from_raw(t);
        set_name(t.raw, name);
        self.tensors.push(t.raw);
        Ok(TensorId(self.tensors.len() - 1))
    }

    /// Allocates one buffer of type `buft` for all declared tensors; `what`
    /// names the arena in errors. Weight arenas should pass `weights = true`
    /// (the scheduler then keeps weights where they are).
    pub fn allocate(
        &mut self,
        buft: BufferType,
        what: &str,
        weights: bool,
    ) -> Result<(), GgmlError> {
        if self.tensors.is_empty() {
            return Ok(());
        }
        // SAFETY: live context whose tensors have no data yet; static buffer type.
        let buf = unsafe {
            sys::ggml_backend_alloc_ctx_tensors_from_buft(self.ctx.0.as_ptr(), buft.0.as_ptr())
        };
        let buf = NonNull::new(buf).ok_or_else(|| GgmlError::Alloc {
            what: what.to_owned(),
            bytes: self
                .tensors
                .iter()
                .map(|t| Tensor::from_raw(t.as_ptr()).nbytes())
                .sum(),
            buffer_type: buft.name(),
        })?;
        if weights {
            // SAFETY: live buffer.
            unsafe {
                sys::ggml_backend_buffer_set_usage(
                    buf.as_ptr(),
                    sys::GGML_BACKEND_BUFFER_USAGE_WEIGHTS,
                )
            };
        }
        self.buffer = Some(buf);
        Ok(())
    }

    /// The tensor `id`.
    pub fn get(&self, id: TensorId) -> Tensor<'_> {
        Tensor::from_raw(self.tensors[id.0].as_ptr())
    }

    /// Sets every byte of the arena's buffer to zero.
    pub fn clear(&self) {
        if let Some(buf) = self.buffer {
            // SAFETY: live buffer.
            unsafe { sys::ggml_backend_buffer_clear(buf.as_ptr(), 0) };
        }
    }

    /// Bytes of backend memory held.
    pub fn size_bytes(&self) -> usize {
        // SAFETY: live buffer.
        self.buffer.map_or(0, |b| unsafe {
            sys::ggml_backend_buffer_get_size(b.as_ptr())
        })
    }
}

impl Drop for TensorArena {
    fn drop(&mut self) {
        if let Some(buf) = self.buffer.take() {
            // SAFETY: owned buffer, freed once, before the context (dropped after).
            unsafe { sys::ggml_backend_buffer_free(buf.as_ptr()) };
        }
    }
}

fn set_name(t: NonNull<sys::ggml_tensor>, name: &str) {
    let c = CString::new(name.replace('\0', "?")).unwrap_or_default();
    // SAFETY: live tensor; ggml copies (and truncates) the name.
    unsafe { sys::ggml_set_name(t.as_ptr(), c.as_ptr()) };
}

/// Reusable memory for graph metadata (tensor headers and the node list).
pub struct GraphScratch {
    buf: Vec<u64>,
    max_nodes: usize,
}

impl GraphScratch {
    /// Room for graphs of up to `max_nodes` nodes.
    pub fn new(max_nodes: usize) -> Self {
        // SAFETY: plain size computations.
        let bytes = unsafe {
            sys::ggml_tensor_overhead() * max_nodes
                + sys::ggml_graph_overhead_custom(max_nodes, false)
        };
        Self {
            buf: vec![0u64; bytes.div_ceil(8) + 1],
            max_nodes,
        }
    }
}

/// A compute graph under construction (or built), borrowing its scratch.
///
/// Ops return new [`Tensor`]s; [`Graph::expand`] adds a result and everything
/// it depends on to the graph.
pub struct Graph<'g> {
    ctx: Context,
    gf: NonNull<sys::ggml_cgraph>,
    /// Rust ops of [`Graph::custom`] nodes; their addresses are the nodes'
    /// userdata, so they live as long as the graph. Boxed twice: userdata
    /// is a thin pointer, and it must not move when the Vec grows.
    #[allow(clippy::vec_box)]
    ops: std::cell::RefCell<Vec<Box<Box<dyn CustomOp + 'g>>>>,
    _scratch: PhantomData<&'g mut GraphScratch>,
}

impl<'g> Graph<'g> {
    /// Starts an empty graph in `scratch` (the previous graph's metadata there
    /// is overwritten).
    pub fn new(scratch: &'g mut GraphScratch) -> Self {
        quiet_logs();
        let bytes = scratch.buf.len() * 8;
        let ctx = Context::new(bytes, scratch.buf.as_mut_ptr().cast());
        // SAFETY: live context sized for max_nodes tensors plus the graph.
        let gf = unsafe { sys::ggml_new_graph_custom(ctx.0.as_ptr(), scratch.max_nodes, false) };
        Self {
            ctx,
            gf: NonNull::new(gf).expect("ggml_new_graph_custom returned NULL"),
            ops: std::cell::RefCell::new(Vec::new()),
            _scratch: PhantomData,
        }
    }

    fn c(&self) -> *mut sys::ggml_context {
        self.ctx.0.as_ptr()
    }

    /// A new tensor of this graph (no data; computed or set as input).
    pub fn tensor(&self, ty: GgmlType, ne: &[i64], name: &str) -> Tensor<'g> {
        assert!(
            (1..=4).contains(&ne.len()),
            "graph tensors have 1 to 4 dims"
        );
        // SAFETY: live context; 1..=4 dims.
        let t = Tensor::from_raw(unsafe {
            sys::ggml_new_tensor(self.c(), ty.0, ne.len() as c_int, ne.as_ptr())
        });
        set_name(t.raw, name);
        t
    }

    /// A new input tensor: the allocator gives it its own memory, to be filled
    /// with `write_*` after allocation and before compute.
    pub fn input(&self, ty: GgmlType, ne: &[i64], name: &str) -> Tensor<'g> {
        let t = self.tensor(ty, ne, name);
        // SAFETY: live tensor.
        unsafe { sys::ggml_set_input(t.raw.as_ptr()) };
        t
    }

    /// Marks `t` as an output (its memory is not reused inside the graph) and
    /// adds it to the graph.
    pub fn output(&self, t: Tensor<'g>) {
        // SAFETY: live tensor.
        unsafe { sys::ggml_set_output(t.raw.as_ptr()) };
        self.expand(t);
    }

    /// Adds `t` and its dependencies to the graph.
    pub fn expand(&self, t: Tensor<'g>) {
        // SAFETY: live graph and tensor.
        unsafe { sys::ggml_build_forward_expand(self.gf.as_ptr(), t.raw.as_ptr()) };
    }

    /// Number of nodes in the graph.
    pub fn n_nodes(&self) -> usize {
        // SAFETY: live graph.
        usize::try_from(unsafe { sys::ggml_graph_n_nodes(self.gf.as_ptr()) }).unwrap_or(0)
    }

    /// Names a tensor (for graph dumps and debugging); returns it.
    pub fn named(&self, t: Tensor<'g>, name: &str) -> Tensor<'g> {
        set_name(t.raw, name);
        t
    }

    fn wrap(&self, p: *mut sys::ggml_tensor) -> Tensor<'g> {
        Tensor::from_raw(p)
    }

    /// `a @ b` in ggml's convention: result[i, j] = dot(a row i, b row j);
    /// `a` (ne0 = k, ne1 = m) may be quantized, `b` (k, n) is f32.
    pub fn mul_mat(&self, a: Tensor<'g>, b: Tensor<'g>) -> Tensor<'g> {
        // SAFETY: live context and tensors; ggml checks shapes.
        self.wrap(unsafe { sys::ggml_mul_mat(self.c(), a.raw.as_ptr(), b.raw.as_ptr()) })
    }

    /// Element-wise `a + b` (b broadcast).
    pub fn add(&self, a: Tensor<'g>, b: Tensor<'g>) -> Tensor<'g> {
        // SAFETY: as mul_mat.
        self.wrap(unsafe { sys::ggml_add(self.c(), a.raw.as_ptr(), b.raw.as_ptr()) })
    }

    /// Element-wise `a * b` (b broadcast).
    pub fn mul(&self, a: Tensor<'g>, b: Tensor<'g>) -> Tensor<'g> {
        // SAFETY: as mul_mat.
        self.wrap(unsafe { sys::ggml_mul(self.c(), a.raw.as_ptr(), b.raw.as_ptr()) })
    }

    /// `a * s`.
    pub fn scale(&self, a: Tensor<'g>, s: f32) -> Tensor<'g> {
        // SAFETY: as mul_mat.
        self.wrap(unsafe { sys::ggml_scale(self.c(), a.raw.as_ptr(), s) })
    }

    /// RMS normalisation over ne0.
    pub fn rms_norm(&self, a: Tensor<'g>, eps: f32) -> Tensor<'g> {
        // SAFETY: as mul_mat.
        self.wrap(unsafe { sys::ggml_rms_norm(self.c(), a.raw.as_ptr(), eps) })
    }

    /// `silu(a) * b` (SwiGLU with separate gate and up tensors).
    pub fn swiglu(&self, gate: Tensor<'g>, up: Tensor<'g>) -> Tensor<'g> {
        // SAFETY: as mul_mat.
        self.wrap(unsafe { sys::ggml_swiglu_split(self.c(), gate.raw.as_ptr(), up.raw.as_ptr()) })
    }

    /// Rows of `a` selected by the i32 indices `rows`.
    pub fn get_rows(&self, a: Tensor<'g>, rows: Tensor<'g>) -> Tensor<'g> {
        // SAFETY: as mul_mat.
        self.wrap(unsafe { sys::ggml_get_rows(self.c(), a.raw.as_ptr(), rows.raw.as_ptr()) })
    }

    /// Writes the rows of `src` into `dst` at the i64 row indices `rows`
    /// (converting type); returns the updated `dst` view.
    pub fn set_rows(&self, dst: Tensor<'g>, src: Tensor<'g>, rows: Tensor<'g>) -> Tensor<'g> {
        // SAFETY: as mul_mat.
        self.wrap(unsafe {
            sys::ggml_set_rows(
                self.c(),
                dst.raw.as_ptr(),
                src.raw.as_ptr(),
                rows.raw.as_ptr(),
            )
        })
    }

    /// Rotary position embedding over the first `n_rot` values of each head
    /// (`a`: head_dim x n_head x n_tokens; `pos`: i32 per token). `mode` is
    /// ggml's rope type (0 normal/interleaved, 2 NeoX).
    pub fn rope(
        &self,
        a: Tensor<'g>,
        pos: Tensor<'g>,
        n_rot: i32,
        mode: i32,
        rope: &RopeParams,
    ) -> Tensor<'g> {
        // SAFETY: as mul_mat; no frequency-factor tensor.
        self.wrap(unsafe {
            sys::ggml_rope_ext(
                self.c(),
                a.raw.as_ptr(),
                pos.raw.as_ptr(),
                std::ptr::null_mut(),
                n_rot,
                mode,
                rope.n_ctx_orig,
                rope.freq_base,
                rope.freq_scale,
                rope.ext_factor,
                rope.attn_factor,
                rope.beta_fast,
                rope.beta_slow,
            )
        })
    }

    /// Same data, new shape (contiguous `a`).
    pub fn reshape(&self, a: Tensor<'g>, ne: &[i64]) -> Tensor<'g> {
        // SAFETY: as mul_mat; ggml checks the element count.
        self.wrap(unsafe {
            match *ne {
                [n0, n1] => sys::ggml_reshape_2d(self.c(), a.raw.as_ptr(), n0, n1),
                [n0, n1, n2] => sys::ggml_reshape_3d(self.c(), a.raw.as_ptr(), n0, n1, n2),
                _ => panic!("reshape supports 2 or 3 dims, got {}", ne.len()),
            }
        })
    }

    /// A 3-D view of `a` with strides `nb1`, `nb2` (bytes) from `offset`.
    pub fn view_3d(
        &self,
        a: Tensor<'g>,
        ne: [i64; 3],
        nb1: usize,
        nb2: usize,
        offset: usize,
    ) -> Tensor<'g> {
        // SAFETY: as mul_mat; ggml checks the view stays in bounds.
        self.wrap(unsafe {
            sys::ggml_view_3d(
                self.c(),
                a.raw.as_ptr(),
                ne[0],
                ne[1],
                ne[2],
                nb1,
                nb2,
                offset,
            )
        })
    }

    /// Permutes axes: axis i of `a` becomes axis `axes[i]`.
    pub fn permute(&self, a: Tensor<'g>, axes: [i32; 4]) -> Tensor<'g> {
        // SAFETY: as mul_mat.
        self.wrap(unsafe {
            sys::ggml_permute(self.c(), a.raw.as_ptr(), axes[0], axes[1], axes[2], axes[3])
        })
    }

    /// Fused attention: softmax(q k^T * scale + mask) v with f32 accumulation.
    ///
    /// q: head_dim_k x n_tokens x n_head; k: head_dim_k x n_kv x n_head_k;
    /// v: head_dim_v x n_kv x n_head_v; mask: n_kv x n_tokens (f16). Returns
    /// head_dim_v x n_head x n_tokens. K and V head counts may differ (each
    /// must divide n_head): ggml's CPU kernel maps query head `i` to K head
    /// `i / (n_head / n_head_k)` and V head `i / (n_head / n_head_v)` apart.
    pub fn flash_attn(
        &self,
        q: Tensor<'g>,
        k: Tensor<'g>,
        v: Tensor<'g>,
        mask: Tensor<'g>,
        scale: f32,
    ) -> Tensor<'g> {
        // SAFETY: as mul_mat.
        let t = unsafe {
            sys::ggml_flash_attn_ext(
                self.c(),
                q.raw.as_ptr(),
                k.raw.as_ptr(),
                v.raw.as_ptr(),
                mask.raw.as_ptr(),
                scale,
                0.0,
                0.0,
            )
        };
        // SAFETY: live flash-attention node.
        unsafe { sys::ggml_prec_set_acc(t, sys::GGML_PREC_F32) };
        self.wrap(t)
    }

    /// `mul_mat` accumulated in f32 even where the backend would use f16
    /// (cuBLAS with f16 weights): attention scores need the range.
    pub fn mul_mat_f32_acc(&self, a: Tensor<'g>, b: Tensor<'g>) -> Tensor<'g> {
        let t = self.mul_mat(a, b);
        // SAFETY: live mul_mat node.
        unsafe { sys::ggml_prec_set_acc(t.raw.as_ptr(), sys::GGML_PREC_F32) };
        t
    }

    /// Softmax over ne0 of `a * scale + mask` (mask: ne0 x ne1, f16 or f32,
    /// broadcast over the higher dims).
    pub fn soft_max_ext(&self, a: Tensor<'g>, mask: Tensor<'g>, scale: f32) -> Tensor<'g> {
        // SAFETY: as mul_mat; no ALiBi (max_bias 0).
        self.wrap(unsafe {
            sys::ggml_soft_max_ext(self.c(), a.raw.as_ptr(), mask.raw.as_ptr(), scale, 0.0)
        })
    }

    /// Swaps ne0 and ne1 (a view; [`Graph::cont`] makes it contiguous).
    pub fn transpose(&self, a: Tensor<'g>) -> Tensor<'g> {
        // SAFETY: as mul_mat.
        self.wrap(unsafe { sys::ggml_transpose(self.c(), a.raw.as_ptr()) })
    }

    /// A contiguous copy of a view.
    pub fn cont(&self, a: Tensor<'g>) -> Tensor<'g> {
        // SAFETY: as mul_mat.
        self.wrap(unsafe { sys::ggml_cont(self.c(), a.raw.as_ptr()) })
    }

    /// Indices (i32) of the `k` largest values of each row (ne0) of `a`,
    /// in no particular order: `(k, rows...)`.
    pub fn top_k(&self, a: Tensor<'g>, k: usize) -> Tensor<'g> {
        let k = c_int::try_from(k).unwrap_or(c_int::MAX);
        // SAFETY: as mul_mat; ggml checks k <= ne0.
        self.wrap(unsafe { sys::ggml_top_k(self.c(), a.raw.as_ptr(), k) })
    }

    /// Sum of each row (ne0 becomes 1).
    pub fn sum_rows(&self, a: Tensor<'g>) -> Tensor<'g> {
        // SAFETY: as mul_mat.
        self.wrap(unsafe { sys::ggml_sum_rows(self.c(), a.raw.as_ptr()) })
    }

    /// Element-wise `a / b` (b broadcast).
    pub fn div(&self, a: Tensor<'g>, b: Tensor<'g>) -> Tensor<'g> {
        // SAFETY: as mul_mat.
        self.wrap(unsafe { sys::ggml_div(self.c(), a.raw.as_ptr(), b.raw.as_ptr()) })
    }
}

impl<'g> Graph<'g> {
    /// A node computed by Rust code: `op` runs on every compute thread with
    /// the node's inputs `args` (in order) and an f32 output of dims `ne`.
    /// Each thread must write a disjoint part of the output.
    pub fn custom(
        &self,
        ne: [i64; 4],
        args: &[Tensor<'g>],
        op: Box<dyn CustomOp + 'g>,
    ) -> Tensor<'g> {
        assert!(args.len() <= 10, "ggml nodes take at most 10 inputs");
        let mut raw: Vec<*mut sys::ggml_tensor> = args.iter().map(|t| t.raw.as_ptr()).collect();
        let boxed: Box<Box<dyn CustomOp + 'g>> = Box::new(op);
        let userdata = (&*boxed as *const Box<dyn CustomOp + 'g>)
            .cast_mut()
            .cast::<c_void>();
        self.ops.borrow_mut().push(boxed);
        // SAFETY: live context and tensors; `userdata` points into a box the
        // graph keeps until it is dropped, after every compute of it.
        self.wrap(unsafe {
            sys::ggml_custom_4d(
                self.c(),
                sys::GGML_TYPE_F32,
                ne[0],
                ne[1],
                ne[2],
                ne[3],
                raw.as_mut_ptr(),
                raw.len() as c_int,
                Some(run_custom_op),
                -1,
                userdata,
            )
        })
    }
}

/// Rust code run as a graph node (see [`Graph::custom`]).
pub trait CustomOp: Send + Sync {
    /// Computes this thread's share (`ith` of `nth`) of the node.
    fn run(&self, io: &CustomIo<'_>, ith: usize, nth: usize);
}

/// What a [`CustomOp`] sees: its inputs, read-only, and its output.
pub struct CustomIo<'a> {
    dst: NonNull<sys::ggml_tensor>,
    _node: PhantomData<&'a sys::ggml_tensor>,
}

impl CustomIo<'_> {
    /// Input `i` (the order given to [`Graph::custom`]).
    fn src(&self, i: usize) -> &sys::ggml_tensor {
        // SAFETY: a live node whose first inputs are the custom op's args.
        let src = unsafe { (*self.dst.as_ptr()).src[i] };
        assert!(!src.is_null(), "custom op input {i} is missing");
        // SAFETY: non-null input tensor of a live node.
        unsafe { &*src }
    }

    /// Data of input `i`, all of it, as elements of `T` (the caller names the
    /// type the tensor holds: `f32` for F32, `u16` for F16 bits).
    fn src_data<T>(&self, i: usize, ty: GgmlType) -> &[T] {
        let t = self.src(i);
        assert_eq!(t.type_, ty.0, "custom op input {i} has another type");
        // SAFETY: live tensor; ggml_nbytes covers its data, which the
        // allocator placed before the node runs.
        let n = unsafe { sys::ggml_nbytes(t) } / std::mem::size_of::<T>();
        // SAFETY: allocated data of n elements of T, not written during the op.
        unsafe { std::slice::from_raw_parts(t.data.cast::<T>(), n) }
    }

    /// Input `i`, an F32 tensor, as values.
    pub fn src_f32(&self, i: usize) -> &[f32] {
        self.src_data(i, GgmlType::F32)
    }

    /// Input `i`, an F16 tensor, as raw half-precision bits.
    pub fn src_f16(&self, i: usize) -> &[u16] {
        self.src_data(i, GgmlType::F16)
    }

    /// Elements of the (f32) output.
    pub fn dst_len(&self) -> usize {
        // SAFETY: live node.
        unsafe { sys::ggml_nelements(self.dst.as_ptr()) as usize }
    }

    /// Writes `values` into the output from element `at` on.
    ///
    /// # Panics
    /// If the range is outside the output.
    pub fn write(&self, at: usize, values: &[f32]) {
        assert!(
            at + values.len() <= self.dst_len(),
            "custom op writes past its output"
        );
        // SAFETY: in-bounds range of the allocated f32 output; threads write
        // disjoint ranges (the CustomOp contract), so no two writes overlap.
        unsafe {
            let out = (*self.dst.as_ptr()).data.cast::<f32>().add(at);
            std::ptr::copy_nonoverlapping(values.as_ptr(), out, values.len());
        }
    }
}

/// ggml's callback for [`Graph::custom`] nodes.
unsafe extern "C" fn run_custom_op(
    dst: *mut sys::ggml_tensor,
    ith: c_int,
    nth: c_int,
    userdata: *mut c_void,
) {
    // SAFETY: userdata is the `Box<dyn CustomOp>` given in Graph::custom,
    // alive while the graph is; dst is the live node.
    let op = unsafe { &*userdata.cast::<Box<dyn CustomOp>>() };
    let Some(dst) = NonNull::new(dst) else { return };
    let io = CustomIo {
        dst,
        _node: PhantomData,
    };
    let run = std::panic::AssertUnwindSafe(|| op.run(&io, ith as usize, nth as usize));
    if std::panic::catch_unwind(run).is_err() {
        // Unwinding into C is undefined; a panicking kernel is a bug.
        eprintln!("sigma: internal error in a custom graph op; aborting");
        std::process::abort();
    }
}

/// Converts half-precision bits to f32 with the CPU kernels' vectorised routine.
///
/// For custom ops, which run inside a CPU backend's graph: that backend's
/// variant was chosen when it started.
pub fn f16_to_f32(src: &[u16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let cpu = super::cpu::chosen().expect("custom ops run on a started CPU backend");
    // SAFETY: both slices hold at least n elements; ggml_fp16_t is u16.
    unsafe { (cpu.variant.api.fp16_to_fp32)(src.as_ptr(), dst.as_mut_ptr(), n as i64) };
}

/// RoPE settings passed to every rope op (see ggml's `ggml_rope_ext`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeParams {
    /// Training context length (for YaRN scaling).
    pub n_ctx_orig: i32,
    /// Base of the rotation frequencies (theta).
    pub freq_base: f32,
    /// Position scale (1.0 = none).
    pub freq_scale: f32,
    /// YaRN extrapolation mix (0.0 = off).
    pub ext_factor: f32,
    /// Attention magnitude factor.
    pub attn_factor: f32,
    /// YaRN low correction dim.
    pub beta_fast: f32,
    /// YaRN high correction dim.
    pub beta_slow: f32,
}

/// Places a graph's intermediate tensors in one reusable backend buffer.
pub struct GraphAllocator(NonNull<sys::ggml_gallocr>);

impl GraphAllocator {
    /// An allocator using the backend's default buffer type.
    pub fn new(backend: &Backend) -> Result<Self, GgmlError> {
        // SAFETY: static buffer type.
        let p = unsafe { sys::ggml_gallocr_new(backend.buffer_type().0.as_ptr()) };
        NonNull::new(p).map(Self).ok_or_else(|| GgmlError::Alloc {
            what: "graph allocator".into(),
            bytes: 0,
            buffer_type: backend.buffer_type().name(),
        })
    }

    /// Allocates `graph` (growing the buffer when this graph needs more).
    pub fn allocate(&mut self, graph: &Graph<'_>) -> Result<(), GgmlError> {
        // SAFETY: live allocator and graph.
        if unsafe { sys::ggml_gallocr_alloc_graph(self.0.as_ptr(), graph.gf.as_ptr()) } {
            Ok(())
        } else {
            Err(GgmlError::GraphAlloc {
                nodes: graph.n_nodes(),
            })
        }
    }

    /// Bytes held by the compute buffer.
    pub fn size_bytes(&self) -> usize {
        // SAFETY: live allocator, buffer 0 always exists.
        unsafe { sys::ggml_gallocr_get_buffer_size(self.0.as_ptr(), 0) }
    }
}

impl Drop for GraphAllocator {
    fn drop(&mut self) {
        // SAFETY: owned, freed once.
        unsafe { sys::ggml_gallocr_free(self.0.as_ptr()) };
    }
}

/// Allocates and runs graphs: on one backend through a [`GraphAllocator`],
/// or, for a model split between a GPU and the CPU, through ggml's
/// scheduler, which runs each op where its weights are and copies
/// activations between the backends.
pub struct GraphRunner<'b> {
    inner: Runner<'b>,
}

enum Runner<'b> {
    One {
        backend: &'b Backend,
        alloc: GraphAllocator,
    },
    Split {
        sched: NonNull<sys::ggml_backend_sched>,
        backends: Vec<&'b Backend>,
    },
}

impl<'b> GraphRunner<'b> {
    /// A runner over `backends`, preferred first, the CPU last; graphs have
    /// at most `max_nodes` nodes.
    ///
    /// # Panics
    /// When `backends` is empty: a model always has the CPU's.
    pub fn new(backends: &[&'b Backend], max_nodes: usize) -> Result<Self, GgmlError> {
        let inner = match backends {
            [] => panic!("a graph runner needs a backend"),
            [backend] => Runner::One {
                backend,
                alloc: GraphAllocator::new(backend)?,
            },
            _ => {
                let mut raw: Vec<*mut sys::ggml_backend> =
                    backends.iter().map(|b| b.raw.as_ptr()).collect();
                // the scheduler copies the graph and adds copies between backends
                let graph_size = max_nodes.saturating_mul(4).max(1024);
                // SAFETY: live backends that outlive the scheduler ('b); default
                // buffer types; the scheduler copies the array.
                let p = unsafe {
                    sys::ggml_backend_sched_new(
                        raw.as_mut_ptr(),
                        std::ptr::null_mut(),
                        raw.len() as c_int,
                        graph_size,
                        false,
                        true,
                    )
                };
                let sched = NonNull::new(p).ok_or(GgmlError::GraphAlloc { nodes: max_nodes })?;
                Runner::Split {
                    sched,
                    backends: backends.to_vec(),
                }
            }
        };
        Ok(Self { inner })
    }

    /// Allocates `graph`'s intermediate tensors (and, when split, assigns
    /// its ops to backends); the previous graph's memory is reused.
    pub fn allocate(&mut self, graph: &Graph<'_>) -> Result<(), GgmlError> {
        match &mut self.inner {
            Runner::One { alloc, .. } => alloc.allocate(graph),
            Runner::Split { sched, .. } => {
                // SAFETY: live scheduler and graph.
                let ok = unsafe {
                    sys::ggml_backend_sched_reset(sched.as_ptr());
                    sys::ggml_backend_sched_alloc_graph(sched.as_ptr(), graph.gf.as_ptr())
                };
                if ok {
                    Ok(())
                } else {
                    Err(GgmlError::GraphAlloc {
                        nodes: graph.n_nodes(),
                    })
                }
            }
        }
    }

    /// Runs an allocated graph to completion.
    pub fn compute(&self, graph: &Graph<'_>) -> Result<(), GgmlError> {
        match &self.inner {
            Runner::One { backend, .. } => backend.compute(graph),
            Runner::Split { sched, .. } => {
                // SAFETY: live scheduler; the graph was allocated by it.
                let status = unsafe {
                    sys::ggml_backend_sched_graph_compute(sched.as_ptr(), graph.gf.as_ptr())
                };
                if status == sys::GGML_STATUS_SUCCESS {
                    Ok(())
                } else {
                    Err(GgmlError::Compute(status))
                }
            }
        }
    }

    /// Bytes held by the compute buffers (all backends).
    pub fn size_bytes(&self) -> usize {
        match &self.inner {
            Runner::One { alloc, .. } => alloc.size_bytes(),
            Runner::Split { sched, backends } => backends
                .iter()
                // SAFETY: live scheduler and one of its backends.
                .map(|b| unsafe {
                    sys::ggml_backend_sched_get_buffer_size(sched.as_ptr(), b.raw.as_ptr())
                })
                .sum(),
        }
    }
}

impl Drop for GraphRunner<'_> {
    fn drop(&mut self) {
        if let Runner::Split { sched, .. } = &self.inner {
            // SAFETY: owned scheduler, freed once, before its backends ('b).
            unsafe { sys::ggml_backend_sched_free(sched.as_ptr()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_graph_runs_on_cpu() {
        let backend = Backend::cpu(2).unwrap();
        let mut scratch = GraphScratch::new(16);
        let mut alloc = GraphAllocator::new(&backend).unwrap();
        let g = Graph::new(&mut scratch);
        let a = g.input(GgmlType::F32, &[4], "a");
        let b = g.scale(a, 2.0);
        g.output(b);
        alloc.allocate(&g).unwrap();
        a.write_f32(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        backend.compute(&g).unwrap();
        let mut out = Vec::new();
        b.read_f32(&mut out).unwrap();
        assert_eq!(out, [2.0, 4.0, 6.0, 8.0]);
    }

    #[test]
    fn write_of_wrong_size_is_an_error() {
        let backend = Backend::cpu(1).unwrap();
        let mut arena = TensorArena::new(1);
        let id = arena.add(GgmlType::F32, &[3], "x").unwrap();
        assert!(matches!(
            arena.get(id).write_f32(&[1.0]),
            Err(GgmlError::Unallocated(_))
        ));
        arena
            .allocate(backend.buffer_type(), "test", false)
            .unwrap();
        let err = arena.get(id).write_f32(&[1.0]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "tensor 'x' holds 12 bytes but 4 bytes were given"
        );
    }

    #[test]
    fn row_size_rejects_ragged_rows() {
        assert_eq!(GgmlType::Q8_0.row_size(64), Some(68));
        assert_eq!(GgmlType::Q8_0.row_size(33), None);
        assert_eq!(GgmlType(999).row_size(32), None);
    }
}
