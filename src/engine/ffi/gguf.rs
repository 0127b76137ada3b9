//! Safe reader and writer for GGUF files.
//!
//! [`GgufFile::open`] checks the file itself first (exists, `GGUF` magic,
//! long enough for every tensor it declares) so the common failures get our
//! own one-line message, then lets ggml parse the header with `no_alloc`
//! (tensor data is never read here). Values are read with [`GgufFile::get`]
//! or [`GgufFile::require`], typed by [`FromMeta`]; a wrong type is an error,
//! never a ggml assertion.
//!
//! # Example
//!
//! ```no_run
//! use sigma::engine::ffi::gguf::GgufFile;
//! let gguf = GgufFile::open("model.gguf".as_ref())?;
//! let arch: String = gguf.require("general.architecture")?;
//! let layers: u32 = gguf.require(&format!("{arch}.block_count"))?;
//! # Ok::<(), sigma::engine::ffi::gguf::GgufError>(())
//! ```

use std::ffi::{CStr, CString, c_char};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use llama_cpp_sys_2 as sys;

use super::ggml::{Context, GgmlError, GgmlType};

/// The four bytes every GGUF file starts with.
const MAGIC: &[u8; 4] = b"GGUF";

/// Why a GGUF file could not be opened or a value could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The path does not exist.
    #[error(
        "model file '{0}' not found; pass an existing .gguf path or run `sigma model pull NAME`"
    )]
    NotFound(PathBuf),
    /// The file could not be read.
    #[error("cannot read '{path}': {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file does not start with the GGUF magic.
    #[error("'{path}' is not a GGUF file (starts with {found:?}, expected \"GGUF\")")]
    NotGguf {
        /// The file.
        path: PathBuf,
        /// The first bytes found, lossily decoded.
        found: String,
    },
    /// The file ends before the data its header declares.
    #[error(
        "'{path}' is truncated: {size} bytes on disk but its tensors end at byte {needed}; download it again"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its size on disk.
        size: u64,
        /// The size the header requires.
        needed: u64,
    },
    /// ggml rejected the header.
    #[error(
        "'{0}' has a damaged or unsupported GGUF header (ggml could not parse it); download it again"
    )]
    BadHeader(PathBuf),
    /// A required key is absent.
    #[error("'{path}' has no GGUF key '{key}'")]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A key holds a value no model can have.
    #[error("GGUF key '{key}' in '{path}' {problem}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A key holds a value of another type than the one asked for.
    #[error("GGUF key '{key}' in '{path}' holds {found}, expected {expected}")]
    WrongType {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What the caller asked for.
        expected: &'static str,
        /// What the file holds.
        found: String,
    },
}

/// One scalar GGUF value, widened so that every stored type fits.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// Any of the integer types (u8..u64, i8..i64).
    Int(i128),
    /// f32 or f64.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A string (invalid UTF-8 is replaced).
    Str(String),
}

/// A GGUF value: a scalar or an array of scalars.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A single value.
    Scalar(Scalar),
    /// An array; all elements share one type.
    Array(Vec<Scalar>),
}

impl Value {
    /// A short description of the value's type, for error messages.
    fn describe(&self) -> String {
        fn scalar(s: &Scalar) -> &'static str {
            match s {
                Scalar::Int(_) => "an integer",
                Scalar::Float(_) => "a float",
                Scalar::Bool(_) => "a bool",
                Scalar::Str(_) => "a string",
            }
        }
        match self {
            Value::Scalar(s) => scalar(s).to_string(),
            Value::Array(items) => match items.first() {
                Some(first) => format!("an array of {} ({} items)", scalar(first), items.len()),
                None => "an empty array".to_string(),
            },
        }
    }
}

/// A Rust type a GGUF value converts to.
pub trait FromMeta: Sized {
    /// The type's name in error messages ("u32", "array of strings").
    const EXPECTED: &'static str;
    /// Converts the value, or returns `None` when its type does not fit.
    fn from_meta(value: Value) -> Option<Self>;
}

/// Converts a scalar integer to `T` when it is in range.
fn int_scalar<T: TryFrom<i128>>(s: Scalar) -> Option<T> {
    match s {
        Scalar::Int(v) => T::try_from(v).ok(),
        _ => None,
    }
}

/// Implements [`FromMeta`] for an integer type and for a `Vec` of it.
macro_rules! int_meta {
    ($t:ty, $name:literal, $arr:literal) => {
        impl FromMeta for $t {
            const EXPECTED: &'static str = $name;
            fn from_meta(value: Value) -> Option<Self> {
                match value {
                    Value::Scalar(s) => int_scalar(s),
                    Value::Array(_) => None,
                }
            }
        }
        impl FromMeta for Vec<$t> {
            const EXPECTED: &'static str = $arr;
            fn from_meta(value: Value) -> Option<Self> {
                match value {
                    Value::Array(items) => items.into_iter().map(int_scalar).collect(),
                    Value::Scalar(_) => None,
                }
            }
        }
    };
}

int_meta!(u32, "u32", "an array of u32");
int_meta!(i32, "i32", "an array of i32");
int_meta!(u64, "u64", "an array of u64");
int_meta!(i64, "i64", "an array of i64");

/// Converts a scalar float (or integer) to f32.
fn float_scalar(s: Scalar) -> Option<f32> {
    match s {
        Scalar::Float(v) => Some(v as f32),
        Scalar::Int(v) => Some(v as f32),
        _ => None,
    }
}

impl FromMeta for f32 {
    const EXPECTED: &'static str = "a float";
    fn from_meta(value: Value) -> Option<Self> {
        match value {
            Value::Scalar(s) => float_scalar(s),
            Value::Array(_) => None,
        }
    }
}

impl FromMeta for Vec<f32> {
    const EXPECTED: &'static str = "an array of floats";
    fn from_meta(value: Value) -> Option<Self> {
        match value {
            Value::Array(items) => items.into_iter().map(float_scalar).collect(),
            Value::Scalar(_) => None,
        }
    }
}

impl FromMeta for bool {
    const EXPECTED: &'static str = "a bool";
    fn from_meta(value: Value) -> Option<Self> {
        match value {
            Value::Scalar(Scalar::Bool(b)) => Some(b),
            _ => None,
        }
    }
}

impl FromMeta for String {
    const EXPECTED: &'static str = "a string";
    fn from_meta(value: Value) -> Option<Self> {
        match value {
            Value::Scalar(Scalar::Str(s)) => Some(s),
            _ => None,
        }
    }
}

impl FromMeta for Vec<String> {
    const EXPECTED: &'static str = "an array of strings";
    fn from_meta(value: Value) -> Option<Self> {
        match value {
            Value::Array(items) => items
                .into_iter()
                .map(|s| match s {
                    Scalar::Str(s) => Some(s),
                    _ => None,
                })
                .collect(),
            Value::Scalar(_) => None,
        }
    }
}

impl FromMeta for Value {
    const EXPECTED: &'static str = "any value";
    fn from_meta(value: Value) -> Option<Self> {
        Some(value)
    }
}

/// One entry of the tensor directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name (`blk.0.attn_q.weight`).
    pub name: String,
    /// The ggml type id (`ggml_type`).
    pub ggml_type: u32,
    /// The ggml type's name (`q4_K`, `f32`, ...).
    pub type_name: String,
    /// Elements per dimension, innermost first, trailing 1s dropped.
    pub shape: Vec<u64>,
    /// Byte offset of the data from the start of the data section.
    pub offset: u64,
    /// Size of the data in bytes.
    pub size: u64,
}

/// An open GGUF file: its parsed header, with no tensor data loaded.
pub struct GgufFile {
    /// The ggml context, owned; freed on drop.
    ctx: NonNull<sys::gguf_context>,
    /// Where the file lives.
    path: PathBuf,
    /// Its size on disk in bytes.
    file_size: u64,
}

// SAFETY: the context is owned uniquely and only read after `open`; ggml's
// gguf readers keep no thread-local state.
unsafe impl Send for GgufFile {}
// SAFETY: every method takes `&self` and only reads the context.
unsafe impl Sync for GgufFile {}

impl Drop for GgufFile {
    fn drop(&mut self) {
        // SAFETY: `ctx` came from `gguf_init_from_file` and is freed once.
        unsafe { sys::gguf_free(self.ctx.as_ptr()) }
    }
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("file_size", &self.file_size)
            .finish_non_exhaustive()
    }
}

/// Reads a C string owned by ggml into an owned `String`.
///
/// # Safety
/// `p` must be null or point to a NUL-terminated string that stays alive for
/// the duration of the call.
unsafe fn c_string(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl GgufFile {
    /// Opens `path` and parses its header.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let io = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(GgufError::NotFound(path.to_path_buf()));
            }
            Err(e) => return Err(io(e)),
        };
        let file_size = file.metadata().map_err(io)?.len();
        let mut magic = Vec::with_capacity(4);
        (&mut file).take(4).read_to_end(&mut magic).map_err(io)?;
        if magic != MAGIC {
            return Err(GgufError::NotGguf {
                path: path.to_path_buf(),
                found: String::from_utf8_lossy(&magic).into_owned(),
            });
        }
        drop(file);

        let c_path = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| GgufError::BadHeader(path.to_path_buf()))?;
        let params = sys::gguf_init_params {
            no_alloc: true,
            ctx: std::ptr::null_mut(),
        };
        // SAFETY: `c_path` is a valid C string; with `ctx` null ggml allocates
        // no tensor data and returns null on any parse error.
        let raw = unsafe { sys::gguf_init_from_file(c_path.as_ptr(), params) };
        let ctx = NonNull::new(raw).ok_or_else(|| GgufError::BadHeader(path.to_path_buf()))?;
        let gguf = Self {
            ctx,
            path: path.to_path_buf(),
            file_size,
        };
        let needed = gguf.data_end();
        if needed > file_size {
            return Err(GgufError::Truncated {
                path: path.to_path_buf(),
                size: file_size,
                needed,
            });
        }
        Ok(gguf)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's size on disk in bytes.
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// The GGUF format version.
    pub fn version(&self) -> u32 {
        // SAFETY: `ctx` is valid for the life of `self`.
        unsafe { sys::gguf_get_version(self.ctx.as_ptr()) }
    }

    /// Byte offset of the tensor data section.
    pub fn data_offset(&self) -> u64 {
        // SAFETY: `ctx` is valid for the life of `self`.
        unsafe { sys::gguf_get_data_offset(self.ctx.as_ptr()) as u64 }
    }

    /// The byte just past the last tensor's data.
    fn data_end(&self) -> u64 {
        let tensors_end = self
            .tensors()
            .iter()
            .map(|t| t.offset + t.size)
            .max()
            .unwrap_or(0);
        self.data_offset() + tensors_end
    }

    /// All metadata keys, in file order.
    pub fn keys(&self) -> Vec<String> {
        // SAFETY: `ctx` is valid; ids below `gguf_get_n_kv` are in range.
        unsafe {
            let n = sys::gguf_get_n_kv(self.ctx.as_ptr());
            (0..n)
                .map(|i| c_string(sys::gguf_get_key(self.ctx.as_ptr(), i)))
                .collect()
        }
    }

    /// Whether `key` is present.
    pub fn has(&self, key: &str) -> bool {
        self.key_id(key).is_some()
    }

    /// The id of `key`, if present.
    fn key_id(&self, key: &str) -> Option<i64> {
        let c_key = CString::new(key).ok()?;
        // SAFETY: `ctx` is valid and `c_key` is a C string.
        let id = unsafe { sys::gguf_find_key(self.ctx.as_ptr(), c_key.as_ptr()) };
        (id >= 0).then_some(id)
    }

    /// Reads the value of `key` as `T`; `Ok(None)` when the key is absent.
    pub fn get<T: FromMeta>(&self, key: &str) -> Result<Option<T>, GgufError> {
        let Some(id) = self.key_id(key) else {
            return Ok(None);
        };
        let value = self.value(id);
        let found = value.describe();
        T::from_meta(value)
            .map(Some)
            .ok_or_else(|| GgufError::WrongType {
                path: self.path.clone(),
                key: key.to_string(),
                expected: T::EXPECTED,
                found,
            })
    }

    /// Reads the value of `key` as `T`; a missing key is an error.
    pub fn require<T: FromMeta>(&self, key: &str) -> Result<T, GgufError> {
        self.get(key)?.ok_or_else(|| GgufError::MissingKey {
            path: self.path.clone(),
            key: key.to_string(),
        })
    }

    /// Reads the value with id `id` (which must be in range).
    fn value(&self, id: i64) -> Value {
        let ctx = self.ctx.as_ptr();
        // SAFETY: `id` came from `gguf_find_key`, so it is in range.
        let kind = unsafe { sys::gguf_get_kv_type(ctx, id) };
        if kind != sys::GGUF_TYPE_ARRAY {
            return Value::Scalar(self.scalar(id, kind));
        }
        // SAFETY: `id` is in range and holds an array.
        let (elem, n) = unsafe {
            (
                sys::gguf_get_arr_type(ctx, id),
                sys::gguf_get_arr_n(ctx, id),
            )
        };
        let items = if elem == sys::GGUF_TYPE_STRING {
            (0..n)
                // SAFETY: `i < n` and the array holds strings.
                .map(|i| Scalar::Str(unsafe { c_string(sys::gguf_get_arr_str(ctx, id, i)) }))
                .collect()
        } else if elem == sys::GGUF_TYPE_ARRAY {
            // Nested arrays cannot be read through ggml's API.
            Vec::new()
        } else {
            // SAFETY: the array holds `n` plain values of type `elem`.
            let data = unsafe { sys::gguf_get_arr_data(ctx, id) }.cast::<u8>();
            (0..n)
                // SAFETY: element `i < n` lies inside the array's buffer.
                .map(|i| unsafe { read_plain(data, i, elem) })
                .collect()
        };
        Value::Array(items)
    }

    /// Reads the scalar with id `id` and type `kind` (not an array).
    fn scalar(&self, id: i64, kind: sys::gguf_type) -> Scalar {
        let ctx = self.ctx.as_ptr();
        // SAFETY: `id` is in range and each getter matches `kind`.
        unsafe {
            match kind {
                sys::GGUF_TYPE_UINT8 => Scalar::Int(sys::gguf_get_val_u8(ctx, id).into()),
                sys::GGUF_TYPE_INT8 => Scalar::Int(sys::gguf_get_val_i8(ctx, id).into()),
                sys::GGUF_TYPE_UINT16 => Scalar::Int(sys::gguf_get_val_u16(ctx, id).into()),
                sys::GGUF_TYPE_INT16 => Scalar::Int(sys::gguf_get_val_i16(ctx, id).into()),
                sys::GGUF_TYPE_UINT32 => Scalar::Int(sys::gguf_get_val_u32(ctx, id).into()),
                sys::GGUF_TYPE_INT32 => Scalar::Int(sys::gguf_get_val_i32(ctx, id).into()),
                sys::GGUF_TYPE_UINT64 => Scalar::Int(sys::gguf_get_val_u64(ctx, id).into()),
                sys::GGUF_TYPE_INT64 => Scalar::Int(sys::gguf_get_val_i64(ctx, id).into()),
                sys::GGUF_TYPE_FLOAT32 => Scalar::Float(sys::gguf_get_val_f32(ctx, id).into()),
                sys::GGUF_TYPE_FLOAT64 => Scalar::Float(sys::gguf_get_val_f64(ctx, id)),
                sys::GGUF_TYPE_BOOL => Scalar::Bool(sys::gguf_get_val_bool(ctx, id)),
                _ => Scalar::Str(c_string(sys::gguf_get_val_str(ctx, id))),
            }
        }
    }

    /// The tensor directory, in file order.
    pub fn tensors(&self) -> Vec<TensorInfo> {
        let ctx = self.ctx.as_ptr();
        // SAFETY: `ctx` is valid; ids below `gguf_get_n_tensors` are in range;
        // `gguf_get_tensor_ne` returns `GGML_MAX_DIMS` (4) values.
        unsafe {
            let n = sys::gguf_get_n_tensors(ctx);
            (0..n)
                .map(|i| {
                    let ggml_type = sys::gguf_get_tensor_type(ctx, i);
                    let ne = std::slice::from_raw_parts(sys::gguf_get_tensor_ne(ctx, i), 4);
                    let dims = ne.iter().rposition(|&d| d != 1).map_or(1, |p| p + 1);
                    TensorInfo {
                        name: c_string(sys::gguf_get_tensor_name(ctx, i)),
                        ggml_type: ggml_type as u32,
                        type_name: c_string(sys::ggml_type_name(ggml_type)),
                        shape: ne[..dims].iter().map(|&d| d.max(0) as u64).collect(),
                        offset: sys::gguf_get_tensor_offset(ctx, i) as u64,
                        size: sys::gguf_get_tensor_size(ctx, i) as u64,
                    }
                })
                .collect()
        }
    }
}

/// Builds a GGUF file in memory and writes it (used by `sigma model convert`
/// and `sigma model tiny`).
///
/// Keys are typed by the setter used; tensors are added with their encoded
/// bytes (see [`GgmlType::quantize`]). [`GgufWriter::write`] goes through a
/// temporary file and a rename, so a failed write never leaves a file that
/// looks complete.
pub struct GgufWriter {
    ctx: NonNull<sys::gguf_context>,
    /// Tensor headers handed to `gguf_add_tensor`.
    meta: Context,
    /// Tensor data, kept alive until the file is written.
    data: Vec<(CString, Vec<u8>)>,
    capacity: usize,
}

impl Drop for GgufWriter {
    fn drop(&mut self) {
        // SAFETY: owned context, freed once.
        unsafe { sys::gguf_free(self.ctx.as_ptr()) }
    }
}

/// A C string for a key or name (NUL bytes replaced).
fn c_str(s: &str) -> CString {
    CString::new(s.replace('\0', "?")).unwrap_or_default()
}

impl GgufWriter {
    /// An empty file with room for `max_tensors` tensors.
    pub fn new(max_tensors: usize) -> Self {
        // SAFETY: plain constructor; aborts rather than return NULL.
        let ctx = NonNull::new(unsafe { sys::gguf_init_empty() }).expect("gguf_init_empty");
        // SAFETY: plain size computation.
        let bytes = unsafe { sys::ggml_tensor_overhead() } * max_tensors.max(1);
        Self {
            ctx,
            meta: Context::new(bytes, std::ptr::null_mut()),
            data: Vec::new(),
            capacity: max_tensors,
        }
    }

    /// Sets `key` to an unsigned 32-bit value.
    pub fn set_u32(&mut self, key: &str, v: u32) {
        // SAFETY: live context, NUL-terminated key.
        unsafe { sys::gguf_set_val_u32(self.ctx.as_ptr(), c_str(key).as_ptr(), v) }
    }

    /// Sets `key` to a 32-bit float.
    pub fn set_f32(&mut self, key: &str, v: f32) {
        // SAFETY: as above.
        unsafe { sys::gguf_set_val_f32(self.ctx.as_ptr(), c_str(key).as_ptr(), v) }
    }

    /// Sets `key` to a boolean.
    pub fn set_bool(&mut self, key: &str, v: bool) {
        // SAFETY: as above.
        unsafe { sys::gguf_set_val_bool(self.ctx.as_ptr(), c_str(key).as_ptr(), v) }
    }

    /// Sets `key` to a string.
    pub fn set_str(&mut self, key: &str, v: &str) {
        // SAFETY: as above; ggml copies the value.
        unsafe { sys::gguf_set_val_str(self.ctx.as_ptr(), c_str(key).as_ptr(), c_str(v).as_ptr()) }
    }

    /// Sets `key` to an array of strings.
    pub fn set_str_array(&mut self, key: &str, items: &[String]) {
        let owned: Vec<CString> = items.iter().map(|s| c_str(s)).collect();
        let ptrs: Vec<*const c_char> = owned.iter().map(|s| s.as_ptr()).collect();
        // SAFETY: `ptrs` holds `len` live NUL-terminated strings; ggml copies them.
        unsafe {
            sys::gguf_set_arr_str(
                self.ctx.as_ptr(),
                c_str(key).as_ptr(),
                ptrs.as_ptr().cast_mut(),
                ptrs.len(),
            )
        }
    }

    /// Sets `key` to an array of 32-bit integers.
    pub fn set_i32_array(&mut self, key: &str, items: &[i32]) {
        // SAFETY: `items` holds `len` i32 values; ggml copies them.
        unsafe {
            sys::gguf_set_arr_data(
                self.ctx.as_ptr(),
                c_str(key).as_ptr(),
                sys::GGUF_TYPE_INT32,
                items.as_ptr().cast(),
                items.len(),
            )
        }
    }

    /// Copies every metadata key of `src`, types and values unchanged.
    pub fn copy_keys(&mut self, src: &GgufFile) {
        // SAFETY: both contexts are live; ggml copies the values.
        unsafe { sys::gguf_set_kv(self.ctx.as_ptr(), src.ctx.as_ptr()) }
    }

    /// Removes `key` if present.
    pub fn remove_key(&mut self, key: &str) {
        // SAFETY: live context, NUL-terminated key.
        unsafe { sys::gguf_remove_key(self.ctx.as_ptr(), c_str(key).as_ptr()) };
    }

    /// Moves the scalar value of `from` (any numeric, bool or string type,
    /// kept) to the key `to`; arrays and absent keys are left alone.
    pub fn rename_key(&mut self, from: &str, to: &str) {
        let ctx = self.ctx.as_ptr();
        let (c_from, c_to) = (c_str(from), c_str(to));
        // SAFETY: live context; the id comes from ggml and each getter
        // matches the key's type; setters copy their arguments.
        unsafe {
            let id = sys::gguf_find_key(ctx, c_from.as_ptr());
            if id < 0 {
                return;
            }
            let k = c_to.as_ptr();
            match sys::gguf_get_kv_type(ctx, id) {
                sys::GGUF_TYPE_UINT8 => sys::gguf_set_val_u8(ctx, k, sys::gguf_get_val_u8(ctx, id)),
                sys::GGUF_TYPE_INT8 => sys::gguf_set_val_i8(ctx, k, sys::gguf_get_val_i8(ctx, id)),
                sys::GGUF_TYPE_UINT16 => {
                    sys::gguf_set_val_u16(ctx, k, sys::gguf_get_val_u16(ctx, id))
                }
                sys::GGUF_TYPE_INT16 => {
                    sys::gguf_set_val_i16(ctx, k, sys::gguf_get_val_i16(ctx, id))
                }
                sys::GGUF_TYPE_UINT32 => {
                    sys::gguf_set_val_u32(ctx, k, sys::gguf_get_val_u32(ctx, id))
                }
                sys::GGUF_TYPE_INT32 => {
                    sys::gguf_set_val_i32(ctx, k, sys::gguf_get_val_i32(ctx, id))
                }
                sys::GGUF_TYPE_UINT64 => {
                    sys::gguf_set_val_u64(ctx, k, sys::gguf_get_val_u64(ctx, id))
                }
                sys::GGUF_TYPE_INT64 => {
                    sys::gguf_set_val_i64(ctx, k, sys::gguf_get_val_i64(ctx, id))
                }
                sys::GGUF_TYPE_FLOAT32 => {
                    sys::gguf_set_val_f32(ctx, k, sys::gguf_get_val_f32(ctx, id))
                }
                sys::GGUF_TYPE_FLOAT64 => {
                    sys::gguf_set_val_f64(ctx, k, sys::gguf_get_val_f64(ctx, id))
                }
                sys::GGUF_TYPE_BOOL => {
                    sys::gguf_set_val_bool(ctx, k, sys::gguf_get_val_bool(ctx, id))
                }
                sys::GGUF_TYPE_STRING => {
                    let v = CString::from(CStr::from_ptr(sys::gguf_get_val_str(ctx, id)));
                    sys::gguf_set_val_str(ctx, k, v.as_ptr())
                }
                _ => return,
            }
            sys::gguf_remove_key(ctx, c_from.as_ptr());
        }
    }

    /// Adds tensor `name` of type `ty` and dims `ne` (ggml order) with its
    /// encoded bytes.
    pub fn add_tensor(
        &mut self,
        name: &str,
        ty: GgmlType,
        ne: &[i64],
        bytes: Vec<u8>,
    ) -> Result<(), GgmlError> {
        if self.data.len() >= self.capacity {
            return Err(GgmlError::ArenaFull(self.capacity));
        }
        if ne.is_empty() || ne.len() > 4 {
            return Err(GgmlError::BadRank {
                name: name.to_owned(),
                dims: ne.len(),
            });
        }
        let expected = ty
            .row_size(ne[0])
            .map(|r| r * ne[1..].iter().product::<i64>().max(1) as usize);
        if expected != Some(bytes.len()) {
            return Err(GgmlError::SizeMismatch {
                name: name.to_owned(),
                expected: expected.unwrap_or(0),
                got: bytes.len(),
            });
        }
        let c_name = c_str(name);
        // SAFETY: live no-alloc context with room (capacity checked); ne has
        // 1..=4 entries. The header only describes the tensor.
        unsafe {
            let t = sys::ggml_new_tensor(
                self.meta.0.as_ptr(),
                ty.0,
                ne.len() as std::ffi::c_int,
                ne.as_ptr(),
            );
            sys::ggml_set_name(t, c_name.as_ptr());
            sys::gguf_add_tensor(self.ctx.as_ptr(), t);
        }
        self.data.push((c_name, bytes));
        Ok(())
    }

    /// Writes the file to `path` (through `path.tmp` and a rename).
    pub fn write(&mut self, path: &Path) -> Result<(), GgufError> {
        for (name, bytes) in &self.data {
            // SAFETY: the tensor was added under this name with this size;
            // `bytes` lives until the writer is dropped.
            unsafe {
                sys::gguf_set_tensor_data(self.ctx.as_ptr(), name.as_ptr(), bytes.as_ptr().cast())
            };
        }
        let io = |source: std::io::Error| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let c_tmp = CString::new(tmp.as_os_str().as_encoded_bytes())
            .map_err(|e| io(std::io::Error::other(e)))?;
        // SAFETY: live context with every tensor's data set; valid path.
        let ok = unsafe { sys::gguf_write_to_file(self.ctx.as_ptr(), c_tmp.as_ptr(), false) };
        if !ok {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(std::io::Error::other(
                "ggml could not write the file (directory missing or not writable?)",
            )));
        }
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// Reads element `i` of a packed array of plain values of type `elem`.
///
/// # Safety
/// `data` must point to at least `i + 1` values of type `elem`, which must be
/// a numeric or bool type.
unsafe fn read_plain(data: *const u8, i: usize, elem: sys::gguf_type) -> Scalar {
    /// Reads the `i`-th `T`, unaligned.
    unsafe fn at<T: Copy>(data: *const u8, i: usize) -> T {
        // SAFETY: guaranteed by `read_plain`'s caller.
        unsafe { data.cast::<T>().add(i).read_unaligned() }
    }
    // SAFETY: guaranteed by the caller; each arm reads its own type.
    unsafe {
        match elem {
            sys::GGUF_TYPE_UINT8 => Scalar::Int(at::<u8>(data, i).into()),
            sys::GGUF_TYPE_INT8 => Scalar::Int(at::<i8>(data, i).into()),
            sys::GGUF_TYPE_UINT16 => Scalar::Int(at::<u16>(data, i).into()),
            sys::GGUF_TYPE_INT16 => Scalar::Int(at::<i16>(data, i).into()),
            sys::GGUF_TYPE_UINT32 => Scalar::Int(at::<u32>(data, i).into()),
            sys::GGUF_TYPE_INT32 => Scalar::Int(at::<i32>(data, i).into()),
            sys::GGUF_TYPE_UINT64 => Scalar::Int(at::<u64>(data, i).into()),
            sys::GGUF_TYPE_INT64 => Scalar::Int(at::<i64>(data, i).into()),
            sys::GGUF_TYPE_FLOAT32 => Scalar::Float(at::<f32>(data, i).into()),
            sys::GGUF_TYPE_FLOAT64 => Scalar::Float(at::<f64>(data, i)),
            _ => Scalar::Bool(at::<u8>(data, i) != 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `bytes` to a temporary file and returns it.
    fn temp_with(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        std::io::Write::write_all(&mut f, bytes).expect("write");
        f
    }

    #[test]
    fn missing_file_is_not_found() {
        let err = GgufFile::open(Path::new("/nonexistent/x.gguf")).unwrap_err();
        assert!(matches!(err, GgufError::NotFound(_)), "{err}");
        assert!(err.to_string().contains("/nonexistent/x.gguf"));
    }

    #[test]
    fn wrong_magic_is_not_gguf() {
        let f = temp_with(b"PK\x03\x04 this is a zip");
        let err = GgufFile::open(f.path()).unwrap_err();
        assert!(matches!(err, GgufError::NotGguf { .. }), "{err}");
        assert!(err.to_string().contains("not a GGUF file"), "{err}");
    }

    #[test]
    fn empty_file_is_not_gguf() {
        let f = temp_with(b"");
        let err = GgufFile::open(f.path()).unwrap_err();
        assert!(matches!(err, GgufError::NotGguf { .. }), "{err}");
    }

    #[test]
    fn header_cut_short_is_bad_header() {
        // Magic, version 3, then the file ends inside the tensor count.
        let f = temp_with(b"GGUF\x03\x00\x00\x00\x01\x00");
        let err = GgufFile::open(f.path()).unwrap_err();
        assert!(matches!(err, GgufError::BadHeader(_)), "{err}");
    }

    /// Appends a GGUF string (u64 length, bytes).
    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    /// A GGUF v3 file with a few keys and one f32 tensor of 4 elements, cut
    /// to `keep` bytes (all of it when `None`).
    fn tiny_gguf(keep: Option<usize>) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(1u64.to_le_bytes()); // tensors
        out.extend(4u64.to_le_bytes()); // keys
        put_str(&mut out, "general.architecture");
        out.extend(8u32.to_le_bytes());
        put_str(&mut out, "llama");
        put_str(&mut out, "llama.block_count");
        out.extend(4u32.to_le_bytes());
        out.extend(30u32.to_le_bytes());
        put_str(&mut out, "tokenizer.ggml.tokens");
        out.extend(9u32.to_le_bytes());
        out.extend(8u32.to_le_bytes());
        out.extend(2u64.to_le_bytes());
        put_str(&mut out, "a");
        put_str(&mut out, "<|im_end|>");
        put_str(&mut out, "tokenizer.ggml.token_type");
        out.extend(9u32.to_le_bytes());
        out.extend(5u32.to_le_bytes());
        out.extend(2u64.to_le_bytes());
        out.extend(1i32.to_le_bytes());
        out.extend(3i32.to_le_bytes());
        // tensor info: name, n_dims, ne, type (f32 = 0), offset
        put_str(&mut out, "token_embd.weight");
        out.extend(1u32.to_le_bytes());
        out.extend(4u64.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend(0u64.to_le_bytes());
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
        for v in [1.0f32, 2.0, 3.0, 4.0] {
            out.extend(v.to_le_bytes());
        }
        out.truncate(keep.unwrap_or(out.len()));
        out
    }

    #[test]
    fn reads_keys_and_tensors_of_a_tiny_file() {
        let f = temp_with(&tiny_gguf(None));
        let g = GgufFile::open(f.path()).expect("open");
        assert_eq!(g.version(), 3);
        assert_eq!(
            g.require::<String>("general.architecture").unwrap(),
            "llama"
        );
        assert_eq!(g.require::<u32>("llama.block_count").unwrap(), 30);
        assert_eq!(
            g.require::<Vec<String>>("tokenizer.ggml.tokens").unwrap(),
            ["a", "<|im_end|>"]
        );
        assert_eq!(
            g.require::<Vec<i32>>("tokenizer.ggml.token_type").unwrap(),
            [1, 3]
        );
        assert_eq!(g.get::<u32>("llama.nope").unwrap(), None);
        let t = g.tensors();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].name, "token_embd.weight");
        assert_eq!(t[0].type_name, "f32");
        assert_eq!(t[0].shape, [4]);
        assert_eq!(t[0].size, 16);
        assert_eq!(g.data_offset() + 16, g.file_size());
    }

    #[test]
    fn wrong_type_and_missing_key_are_named() {
        let f = temp_with(&tiny_gguf(None));
        let g = GgufFile::open(f.path()).expect("open");
        let err = g.require::<u32>("general.architecture").unwrap_err();
        assert!(
            err.to_string().contains("'general.architecture'")
                && err.to_string().contains("a string"),
            "{err}"
        );
        let err = g.require::<u32>("llama.context_length").unwrap_err();
        assert!(matches!(err, GgufError::MissingKey { .. }), "{err}");
    }

    #[test]
    fn data_cut_short_is_truncated() {
        let full = tiny_gguf(None);
        let f = temp_with(&tiny_gguf(Some(full.len() - 5)));
        let err = GgufFile::open(f.path()).unwrap_err();
        match err {
            GgufError::Truncated { size, needed, .. } => {
                assert_eq!(needed, full.len() as u64);
                assert_eq!(size, full.len() as u64 - 5);
            }
            other => panic!("expected Truncated, got {other}"),
        }
    }

    #[test]
    fn scalar_conversions_check_range_and_type() {
        assert_eq!(u32::from_meta(Value::Scalar(Scalar::Int(7))), Some(7));
        assert_eq!(u32::from_meta(Value::Scalar(Scalar::Int(-1))), None);
        assert_eq!(i32::from_meta(Value::Scalar(Scalar::Int(-1))), Some(-1));
        assert_eq!(bool::from_meta(Value::Scalar(Scalar::Int(1))), None);
        assert_eq!(
            String::from_meta(Value::Scalar(Scalar::Str("x".into()))),
            Some("x".to_string())
        );
        assert_eq!(
            Vec::<i32>::from_meta(Value::Array(vec![Scalar::Int(1), Scalar::Int(3)])),
            Some(vec![1, 3])
        );
        assert_eq!(
            Vec::<String>::from_meta(Value::Array(vec![Scalar::Int(1)])),
            None
        );
    }
}
