//! llama.cpp loaded at run time from a shared library: the peer built for
//! this machine (`scripts/build-llama-cpp-peer.sh`) that `sigma bench
//! --peer DIR` measures against.
//!
//! The library is built from the same llama.cpp source as the statically
//! linked one, so the C structures that cross the boundary (model and
//! context parameters, `llama_batch`) have `llama-cpp-sys-2`'s layout; the
//! build script records the crate version beside the library and
//! [`LlamaLibrary::open`] refuses a library built from another.

use std::ffi::{CString, c_char, c_void};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use anyhow::{Context, bail};
use libloading::{Library, Symbol};
use llama_cpp_sys_2 as sys;

/// The `llama-cpp-sys-2` version sigma links (Cargo.toml pins it exactly;
/// a test keeps the two equal).
const SYS_VERSION: &str = "0.1.161";

/// The file the build script writes beside the library: the crate it was
/// built from, then the instruction sets it was built with.
const STAMP: &str = "sigma-peer.txt";

/// The C functions used, resolved once.
struct Api {
    model_default_params: unsafe extern "C" fn() -> sys::llama_model_params,
    context_default_params: unsafe extern "C" fn() -> sys::llama_context_params,
    load_model:
        unsafe extern "C" fn(*const c_char, sys::llama_model_params) -> *mut sys::llama_model,
    free_model: unsafe extern "C" fn(*mut sys::llama_model),
    new_context: unsafe extern "C" fn(
        *mut sys::llama_model,
        sys::llama_context_params,
    ) -> *mut sys::llama_context,
    free_context: unsafe extern "C" fn(*mut sys::llama_context),
    batch_init: unsafe extern "C" fn(i32, i32, i32) -> sys::llama_batch,
    batch_free: unsafe extern "C" fn(sys::llama_batch),
    decode: unsafe extern "C" fn(*mut sys::llama_context, sys::llama_batch) -> i32,
    memory: unsafe extern "C" fn(*const sys::llama_context) -> sys::llama_memory_t,
    memory_clear: unsafe extern "C" fn(sys::llama_memory_t, bool),
    logits: unsafe extern "C" fn(*mut sys::llama_context, i32) -> *mut f32,
    vocab: unsafe extern "C" fn(*const sys::llama_model) -> *const sys::llama_vocab,
    vocab_size: unsafe extern "C" fn(*const sys::llama_vocab) -> i32,
}

/// A llama.cpp shared library, loaded.
pub struct LlamaLibrary {
    api: Api,
    /// The instruction sets it was built with, as its build recorded them.
    pub instruction_sets: String,
    /// Its path.
    pub path: PathBuf,
    // Last: the functions above point into it.
    _lib: Library,
}

/// Silences llama.cpp's logging (it writes to stderr by default).
unsafe extern "C" fn quiet(_level: sys::ggml_log_level, _text: *const c_char, _data: *mut c_void) {}

impl LlamaLibrary {
    /// Loads `libllama.so` from `dir` (what the build script printed).
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let fix = "build one with scripts/build-llama-cpp-peer.sh and pass the directory it prints";
        let path = dir.join("libllama.so");
        let stamp = std::fs::read_to_string(dir.join(STAMP)).with_context(|| {
            format!(
                "'{}' holds no llama.cpp peer ({STAMP} is missing): {fix}",
                dir.display()
            )
        })?;
        let mut lines = stamp.lines();
        let built_from = lines.next().unwrap_or_default();
        let ours = format!("llama-cpp-sys-2-{SYS_VERSION}");
        if built_from != ours {
            bail!(
                "the peer in '{}' was built from {built_from}, sigma links {ours}: {fix}",
                dir.display()
            );
        }
        // SAFETY: loading runs the library's initialisers; it is llama.cpp
        // built from the pinned source by our script (checked above).
        let lib = unsafe { Library::new(&path) }
            .with_context(|| format!("cannot load '{}': {fix}", path.display()))?;
        // SAFETY: each symbol is looked up with its C signature from the
        // bindings of the same llama.cpp source.
        let api = unsafe {
            fn get<T: Copy>(lib: &Library, name: &[u8]) -> anyhow::Result<T> {
                // SAFETY: the caller names the symbol's true type.
                let s: Symbol<'_, T> = unsafe { lib.get(name) }.with_context(|| {
                    format!("the library lacks {}", String::from_utf8_lossy(name))
                })?;
                Ok(*s)
            }
            let log_set: unsafe extern "C" fn(sys::ggml_log_callback, *mut c_void) =
                get(&lib, b"llama_log_set\0")?;
            log_set(Some(quiet), std::ptr::null_mut());
            let backend_init: unsafe extern "C" fn() = get(&lib, b"llama_backend_init\0")?;
            backend_init();
            Api {
                model_default_params: get(&lib, b"llama_model_default_params\0")?,
                context_default_params: get(&lib, b"llama_context_default_params\0")?,
                load_model: get(&lib, b"llama_model_load_from_file\0")?,
                free_model: get(&lib, b"llama_model_free\0")?,
                new_context: get(&lib, b"llama_init_from_model\0")?,
                free_context: get(&lib, b"llama_free\0")?,
                batch_init: get(&lib, b"llama_batch_init\0")?,
                batch_free: get(&lib, b"llama_batch_free\0")?,
                decode: get(&lib, b"llama_decode\0")?,
                memory: get(&lib, b"llama_get_memory\0")?,
                memory_clear: get(&lib, b"llama_memory_clear\0")?,
                logits: get(&lib, b"llama_get_logits_ith\0")?,
                vocab: get(&lib, b"llama_model_get_vocab\0")?,
                vocab_size: get(&lib, b"llama_vocab_n_tokens\0")?,
            }
        };
        Ok(Self {
            api,
            instruction_sets: lines.next().unwrap_or_default().trim().to_string(),
            path,
            _lib: lib,
        })
    }

    /// Loads the GGUF at `path` with llama.cpp's defaults (mmap, CPU).
    pub fn load_model(&self, path: &Path) -> anyhow::Result<LibModel<'_>> {
        let c_path = CString::new(path.as_os_str().as_encoded_bytes())
            .context("the model path holds a NUL byte")?;
        // SAFETY: a NUL-terminated path and the library's default parameters.
        let raw =
            unsafe { (self.api.load_model)(c_path.as_ptr(), (self.api.model_default_params)()) };
        let raw = NonNull::new(raw)
            .with_context(|| format!("the llama.cpp peer cannot load '{}'", path.display()))?;
        Ok(LibModel { lib: self, raw })
    }
}

/// A model loaded by the peer library.
pub struct LibModel<'l> {
    lib: &'l LlamaLibrary,
    raw: NonNull<sys::llama_model>,
}

impl Drop for LibModel<'_> {
    fn drop(&mut self) {
        // SAFETY: made by llama_model_load_from_file, freed once; contexts
        // borrow the model, so none is left.
        unsafe { (self.lib.api.free_model)(self.raw.as_ptr()) }
    }
}

/// Tokens per `llama_decode` call, as the in-process peer uses.
const BATCH: usize = 512;

impl LibModel<'_> {
    /// A context of `n_ctx` positions on `n_threads` threads, with the same
    /// settings as the in-process peer's (batch 512, llama.cpp's defaults
    /// otherwise).
    pub fn context(&self, n_ctx: usize, n_threads: usize) -> anyhow::Result<LibContext<'_>> {
        let api = &self.lib.api;
        let threads = i32::try_from(n_threads).unwrap_or(i32::MAX);
        // SAFETY: plain data from the library.
        let mut params = unsafe { (api.context_default_params)() };
        params.n_ctx = u32::try_from(n_ctx).unwrap_or(u32::MAX).max(1);
        params.n_batch = BATCH as u32;
        params.n_ubatch = BATCH as u32;
        params.n_threads = threads;
        params.n_threads_batch = threads;
        // SAFETY: a live model and parameters the library made.
        let raw = NonNull::new(unsafe { (api.new_context)(self.raw.as_ptr(), params) })
            .context("the llama.cpp peer cannot create a context (out of memory?)")?;
        // SAFETY: one sequence, token ids (no embeddings).
        let batch = unsafe { (api.batch_init)(BATCH as i32, 0, 1) };
        // SAFETY: a live model; its vocabulary lives as long as it does.
        let n_vocab = unsafe { (api.vocab_size)((api.vocab)(self.raw.as_ptr())) };
        Ok(LibContext {
            api,
            raw,
            batch,
            n_vocab: usize::try_from(n_vocab).unwrap_or(0),
            n_past: 0,
            _model: std::marker::PhantomData,
        })
    }
}

/// One sequence of the peer library.
pub struct LibContext<'m> {
    api: &'m Api,
    raw: NonNull<sys::llama_context>,
    batch: sys::llama_batch,
    n_vocab: usize,
    n_past: i32,
    _model: std::marker::PhantomData<&'m LibModel<'m>>,
}

impl Drop for LibContext<'_> {
    fn drop(&mut self) {
        // SAFETY: both made in `context`, freed once.
        unsafe {
            (self.api.batch_free)(self.batch);
            (self.api.free_context)(self.raw.as_ptr());
        }
    }
}

impl LibContext<'_> {
    /// Empties the KV cache.
    pub fn reset(&mut self) {
        // SAFETY: a live context.
        unsafe { (self.api.memory_clear)((self.api.memory)(self.raw.as_ptr()), true) };
        self.n_past = 0;
    }

    /// Appends `tokens` (at least one) in batches of 512 and returns the
    /// logits after the last one.
    pub fn eval(&mut self, tokens: &[u32]) -> anyhow::Result<&[f32]> {
        anyhow::ensure!(!tokens.is_empty(), "nothing to evaluate");
        let n = tokens.len();
        for (ci, chunk) in tokens.chunks(BATCH).enumerate() {
            let b = &mut self.batch;
            // SAFETY: the batch holds BATCH slots of one sequence each and a
            // chunk is at most BATCH long.
            unsafe {
                for (i, &t) in chunk.iter().enumerate() {
                    *b.token.add(i) = t as sys::llama_token;
                    *b.pos.add(i) = self.n_past + i as i32;
                    *b.n_seq_id.add(i) = 1;
                    **b.seq_id.add(i) = 0;
                    *b.logits.add(i) = i8::from(ci * BATCH + i + 1 == n);
                }
            }
            b.n_tokens = chunk.len() as i32;
            // SAFETY: a live context and a filled batch.
            let rc = unsafe { (self.api.decode)(self.raw.as_ptr(), *b) };
            if rc != 0 {
                bail!("the llama.cpp peer's decode failed (code {rc})");
            }
            self.n_past += chunk.len() as i32;
        }
        // SAFETY: the last batch asked for the logits of its last token;
        // llama.cpp keeps n_vocab of them until the next decode, and the
        // borrow of self ends before one can happen.
        unsafe {
            let row = (self.api.logits)(self.raw.as_ptr(), -1);
            anyhow::ensure!(!row.is_null(), "the llama.cpp peer returned no logits");
            Ok(std::slice::from_raw_parts(row, self.n_vocab))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_checked_is_the_one_cargo_pins() {
        let manifest = include_str!("../../../Cargo.toml");
        let pin = format!("llama-cpp-sys-2 = {{ version = \"={SYS_VERSION}\"");
        assert!(manifest.contains(&pin), "Cargo.toml no longer pins {pin}");
    }

    #[test]
    fn a_directory_without_a_peer_says_how_to_build_one() {
        let dir = tempfile::tempdir().unwrap();
        let e = LlamaLibrary::open(dir.path()).err().unwrap().to_string();
        assert!(
            e.contains("sigma-peer.txt is missing") && e.contains("build-llama-cpp-peer.sh"),
            "{e}"
        );
        std::fs::write(dir.path().join(STAMP), "llama-cpp-sys-2-0.1.1\nAVX2\n").unwrap();
        let e = LlamaLibrary::open(dir.path()).err().unwrap().to_string();
        assert!(
            e.contains("built from llama-cpp-sys-2-0.1.1, sigma links"),
            "{e}"
        );
    }
}
