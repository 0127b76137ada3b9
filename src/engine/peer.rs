//! llama.cpp through `llama-cpp-2`: the peer that `sigma bench
//! --vs-llama-cpp` measures against and the oracle the tests compare with.
//! Sigma never serves answers with it.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;

/// llama.cpp through `llama-cpp-2`: the reference engine for tests and
/// benchmarks (never used to serve Sigma itself).
pub struct LlamaCppPeer {
    model: LlamaModel,
}

/// The process-wide llama.cpp backend (it may be initialised only once).
fn llama_backend() -> anyhow::Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    if let Some(b) = BACKEND.get() {
        return Ok(b);
    }
    // llama.cpp finds its CPU device in ggml's registry: register the CPU
    // kernel variant Sigma chose, so both engines run the same kernels.
    crate::engine::ffi::cpu::chosen()?;
    let mut b = LlamaBackend::init().context("cannot start llama.cpp")?;
    b.void_logs();
    Ok(BACKEND.get_or_init(|| b))
}

impl LlamaCppPeer {
    /// Loads `path` with llama.cpp's defaults (mmap, CPU).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let backend = llama_backend()?;
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .with_context(|| format!("llama.cpp cannot load '{}'", path.display()))?;
        Ok(Self { model })
    }

    /// Tokenizes `text` the llama.cpp way (special tokens parsed; BOS added
    /// if the model asks for it).
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), true, true)
            .into_iter()
            .map(|t| t.0 as u32)
            .collect()
    }

    /// A context of `n_ctx` positions on `n_threads` threads, with
    /// llama.cpp's defaults otherwise (f16 KV cache, flash attention auto,
    /// batch 512).
    pub fn context(&self, n_ctx: usize, n_threads: usize) -> anyhow::Result<PeerContext<'_>> {
        let threads = i32::try_from(n_threads).unwrap_or(i32::MAX);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(
                u32::try_from(n_ctx).unwrap_or(u32::MAX).max(1),
            ))
            .with_n_batch(512)
            .with_n_ubatch(512)
            .with_n_threads(threads)
            .with_n_threads_batch(threads);
        let ctx = self
            .model
            .new_context(llama_backend()?, params)
            .context("llama.cpp cannot create a context")?;
        Ok(PeerContext {
            ctx,
            batch: LlamaBatch::new(512, 1),
            n_past: 0,
        })
    }
}

/// One llama.cpp sequence.
pub struct PeerContext<'m> {
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    n_past: i32,
}

impl PeerContext<'_> {
    /// Empties the KV cache.
    pub fn reset(&mut self) {
        self.ctx.clear_kv_cache();
        self.n_past = 0;
    }

    /// Appends `tokens` (in batches of 512) and returns the logits after the
    /// last one.
    pub fn eval(&mut self, tokens: &[u32]) -> anyhow::Result<&[f32]> {
        let chunks = tokens.chunks(512).count();
        for (ci, chunk) in tokens.chunks(512).enumerate() {
            self.batch.clear();
            for (i, &t) in chunk.iter().enumerate() {
                let last = ci + 1 == chunks && i + 1 == chunk.len();
                self.batch
                    .add(LlamaToken(t as i32), self.n_past, &[0], last)?;
                self.n_past += 1;
            }
            self.ctx
                .decode(&mut self.batch)
                .context("llama.cpp decode failed")?;
        }
        Ok(self.ctx.get_logits_ith(self.batch.n_tokens() - 1))
    }
}
