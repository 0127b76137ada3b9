//! A generation session: a model, its KV cache and the reusable compute
//! memory for one sequence.
//!
//! [`Session::eval`] appends tokens (a prompt: prefill, in batches of
//! [`Session::N_BATCH`]; or one sampled token: decode) and returns the logits
//! of the last one. Graph metadata and the compute buffer are allocated once
//! and reused; only the last position's logits are copied back to the host.
//!
//! # Example
//!
//! ```no_run
//! use sigma::engine::ffi::gguf::GgufFile;
//! use sigma::engine::model::{LoadOptions, Model};
//! use sigma::engine::session::Session;
//! let gguf = GgufFile::open("model.gguf".as_ref())?;
//! let model = Model::load(&gguf, &LoadOptions::threads(2))?;
//! let mut s = Session::new(&model, 2048)?;
//! let logits = s.eval(&[1, 2, 3])?;
//! let next = sigma::engine::sampling::argmax(logits);
//! s.eval(&[next])?;
//! # Ok::<(), sigma::engine::EngineError>(())
//! ```

use super::error::EngineError;
use super::ffi::ggml::{GgmlType, Graph, GraphRunner, GraphScratch};
use super::kv_cache::{CacheTypes, KvCache};
use super::model::{ForwardInputs, FusedDecode, Model, StockAttention};
use super::sampling::Sampler;

/// KV positions visible to attention are rounded up to this (as llama.cpp
/// does) so that consecutive decode graphs keep one shape.
const KV_PAD: usize = 256;

/// Most tokens in one batch with batch invariance
/// ([`Session::set_batch_invariant`]): measured on Qwen2.5's Q4_K_M (Q5_0
/// and Q8_0 tensors), a position's logits are the same bit for bit in
/// batches of 2 to 7 tokens and differ from 8 on (ggml's tiled products
/// change kernel).
const INVARIANT_BATCH: usize = 7;

/// One sequence being evaluated by a model.
pub struct Session<'m> {
    model: &'m Model,
    kv: KvCache,
    runner: GraphRunner<'m>,
    scratch: GraphScratch,
    /// Logits of the positions the last evaluation asked for (the last
    /// one by default), `n_vocab` values each.
    logits: Vec<f32>,
    /// Host staging for one batch's logits.
    batch_logits: Vec<f32>,
    /// Host staging for the causal mask (f32, then f16).
    mask: Vec<f32>,
    mask_f16: Vec<u16>,
    /// Decode steps through the fused attention op, if chosen.
    fused_decode: Option<FusedDecode>,
    /// Attention from stock ops, if chosen (always on a GPU).
    stock_attention: Option<StockAttention>,
    /// Compute each row as it would be computed in any other batch
    /// ([`set_batch_invariant`](Self::set_batch_invariant)).
    batch_invariant: bool,
}

/// How a [`Session`] caches and attends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SessionOptions {
    /// Element types of the K and V caches (f16 by default).
    pub cache: CacheTypes,
    /// Run decode steps (one token) through the fused attention op, which
    /// reads each K and V head once and can fetch V selectively; needs f16
    /// caches. `None`: ggml's flash attention.
    pub fused_decode: Option<FusedDecode>,
    /// Attend with stock ggml ops instead (both prefill and decode), the
    /// path for a GPU. A model whose blocks run on a GPU always does: its
    /// fused settings (selective V) carry over, and flash attention is not
    /// used there (ggml's CUDA kernel maps V heads by the K ratio).
    pub stock_attention: Option<StockAttention>,
}

impl Default for SessionOptions {
    /// f16 caches, decode steps through the fused op without selective V:
    /// it rounds exactly as ggml's flash attention does (so the tokens are
    /// llama.cpp's) and is faster.
    fn default() -> Self {
        Self {
            cache: CacheTypes::default(),
            fused_decode: Some(FusedDecode::default()),
            stock_attention: None,
        }
    }
}

impl<'m> Session<'m> {
    /// Tokens evaluated per graph during prefill.
    pub const N_BATCH: usize = 512;

    /// A session with a context of `n_ctx` positions (at least 1) and the
    /// default options (f16 KV cache, fused decode attention).
    pub fn new(model: &'m Model, n_ctx: usize) -> Result<Self, EngineError> {
        Self::with_options(model, n_ctx, SessionOptions::default())
    }

    /// A session with the cache types and attention of `opts`.
    pub fn with_options(
        model: &'m Model,
        n_ctx: usize,
        opts: SessionOptions,
    ) -> Result<Self, EngineError> {
        let n_ctx = n_ctx.max(1);
        if opts.fused_decode.is_some() && opts.stock_attention.is_some() {
            return Err(EngineError::TwoAttentionPaths);
        }
        let opts = match model.gpu() {
            Some(_) => SessionOptions {
                stock_attention: Some(opts.stock_attention.unwrap_or(StockAttention {
                    select_v: opts.fused_decode.and_then(|f| f.select_v),
                })),
                fused_decode: None,
                ..opts
            },
            None => opts,
        };
        let f16 = CacheTypes::default();
        if opts.fused_decode.is_some() && opts.cache != f16 {
            return Err(EngineError::FusedNeedsF16 {
                k: opts.cache.k.name(),
                v: opts.cache.v.name(),
            });
        }
        let kv = KvCache::new(
            model.backend(),
            model.gpu(),
            &model.hparams().kv_layouts(opts.cache),
            n_ctx,
        )?;
        Ok(Self {
            model,
            kv,
            fused_decode: opts.fused_decode,
            stock_attention: opts.stock_attention,
            runner: GraphRunner::new(&model.backends(), model.max_graph_nodes())?,
            scratch: GraphScratch::new(model.max_graph_nodes()),
            batch_invariant: false,
            logits: Vec::new(),
            batch_logits: Vec::new(),
            mask: Vec::new(),
            mask_f16: Vec::new(),
        })
    }

    /// Whether [`set_batch_invariant`](Self::set_batch_invariant) holds for
    /// this model: every block on the CPU, no repacked weights.
    pub fn can_be_batch_invariant(&self) -> bool {
        self.model.gpu().is_none() && self.model.weights().extra_buffer().is_none()
    }

    /// Context size in positions.
    pub fn n_ctx(&self) -> usize {
        self.kv.n_ctx()
    }

    /// Positions used so far.
    pub fn n_past(&self) -> usize {
        self.kv.used()
    }

    /// Keeps the first `n` positions and forgets the rest, so a shared
    /// prompt prefix is evaluated once (see [`KvCache::truncate`]).
    pub fn truncate(&mut self, n: usize) {
        self.kv.truncate(n);
    }

    /// The KV cache of the first `n` positions, as bytes to save.
    pub fn export_prefix(&self, n: usize) -> Result<Vec<u8>, EngineError> {
        Ok(self.kv.export_prefix(n)?)
    }

    /// Restores `n` positions saved by [`export_prefix`](Self::export_prefix)
    /// with the same model and cache types.
    pub fn import_prefix(&mut self, n: usize, data: &[u8]) -> Result<(), EngineError> {
        self.logits.clear();
        Ok(self.kv.import_prefix(n, data)?)
    }

    /// Starts from `n` cached positions of synthetic values (see
    /// [`KvCache::fill_synthetic`]): decode speed at long context without
    /// the prefill.
    pub fn fill_synthetic(&mut self, n: usize) -> Result<(), EngineError> {
        self.logits.clear();
        Ok(self.kv.fill_synthetic(n, 1)?)
    }

    /// Forgets the sequence (the cache is reused, see [`KvCache::reset`]).
    pub fn reset(&mut self) {
        self.kv.reset();
        self.logits.clear();
    }

    /// Bytes held by the KV cache and the compute buffer.
    pub fn memory_bytes(&self) -> (usize, usize) {
        (self.kv.size_bytes(), self.runner.size_bytes())
    }

    /// Appends `tokens` to the sequence and returns the logits (`n_vocab`
    /// values) predicting the token after the last one.
    pub fn eval(&mut self, tokens: &[u32]) -> Result<&[f32], EngineError> {
        let last = tokens.len().saturating_sub(1);
        self.eval_rows(tokens, &[last])
    }

    /// Appends `tokens` and returns the logits predicting the token after
    /// each of `rows` (indices into `tokens`, ascending), `n_vocab` values
    /// per row, in order. A speculative decoder verifies a draft this way:
    /// one evaluation gives the model's choice after every drafted token.
    /// Only the asked rows go through the output head.
    pub fn eval_rows(&mut self, tokens: &[u32], rows: &[usize]) -> Result<&[f32], EngineError> {
        if tokens.is_empty() {
            return Err(EngineError::EmptyInput);
        }
        let n_vocab = self.model.hparams().n_vocab;
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(EngineError::TokenOutOfRange { token, n_vocab });
        }
        if rows.is_empty()
            || !rows.is_sorted_by(|a, b| a < b)
            || rows[rows.len() - 1] >= tokens.len()
        {
            return Err(EngineError::BadOutputRows {
                n_tokens: tokens.len(),
            });
        }
        // A single token is evaluated with a copy of itself when invariant.
        let needed = tokens.len() + usize::from(self.batch_invariant && tokens.len() == 1);
        if self.kv.used() + needed > self.kv.n_ctx() {
            return Err(EngineError::ContextFull {
                needed,
                used: self.kv.used(),
                n_ctx: self.kv.n_ctx(),
            });
        }
        self.logits.clear();
        let mut start = 0;
        for len in self.batch_lengths(tokens.len()) {
            let batch = &tokens[start..start + len];
            let asked: Vec<usize> = rows
                .iter()
                .filter(|&&r| (start..start + len).contains(&r))
                .map(|&r| r - start)
                .collect();
            start += len;
            // A batch needs one output row; one nobody asked for is dropped.
            let mut out = match asked.is_empty() {
                true => vec![len - 1],
                false => asked.clone(),
            };
            // Batch invariance: at least two tokens and two output rows, so
            // every batch takes the kernels a longer one would (the extra
            // token, a copy of the one given, is then forgotten).
            let padded = [batch[0]; 2];
            let eval = match self.batch_invariant && len == 1 {
                true => &padded[..],
                false => batch,
            };
            if self.batch_invariant && out.len() == 1 {
                out.push(usize::from(out[0] == 0));
                out.sort_unstable();
            }
            self.eval_batch(eval, &out)?;
            if eval.len() > len {
                self.kv.truncate(self.kv.used() - 1);
            }
            for (j, r) in out.iter().enumerate() {
                if asked.contains(r) {
                    self.logits
                        .extend_from_slice(&self.batch_logits[j * n_vocab..(j + 1) * n_vocab]);
                }
            }
        }
        Ok(&self.logits)
    }

    /// How many graphs (model evaluations) [`eval_rows`](Self::eval_rows)
    /// computes for `n_tokens` tokens.
    pub fn graphs_for(&self, n_tokens: usize) -> usize {
        self.batch_lengths(n_tokens).len()
    }

    /// How `n` tokens are split into batches: [`Self::N_BATCH`] at most;
    /// with batch invariance, [`INVARIANT_BATCH`] at most and never a
    /// single one after others.
    fn batch_lengths(&self, n: usize) -> Vec<usize> {
        let max = match self.batch_invariant {
            true => INVARIANT_BATCH,
            false => Self::N_BATCH,
        };
        let mut lens = vec![max; n / max];
        match n % max {
            0 => {}
            1 if self.batch_invariant && !lens.is_empty() => {
                // 7 + 1 -> 6 + 2
                if let Some(last) = lens.last_mut() {
                    *last -= 1;
                }
                lens.push(2);
            }
            rest => lens.push(rest),
        }
        lens
    }

    /// While `on`, each position's logits are the same whatever else its
    /// batch holds (on the CPU). ggml's CPU kernels depend on the batch:
    /// from 2 tokens its matrix products take the tiled llamafile kernels
    /// (for the types they cover, with other tiles from 8), a single token
    /// takes row dot products and split attention. So every batch is kept
    /// between 2 and [`INVARIANT_BATCH`] tokens with two output rows or more: a
    /// single token is evaluated with a copy of itself, which is then
    /// forgotten (the fused decode attention is not used). A speculative
    /// decoder needs this: a drafted token verified inside a batch must
    /// get the logits it would get one step at a time. Off by default: a
    /// one-token step costs about twice as much with its copy.
    pub fn set_batch_invariant(&mut self, on: bool) {
        self.batch_invariant = on;
    }

    /// Logits of the positions the last evaluation asked for (empty before
    /// the first): after [`eval`](Self::eval), the last position's.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Evaluates `prompt`, then samples up to `max_new` tokens, calling
    /// `on_token` with each (return `false` to stop). Stops before emitting a
    /// token for which `is_end` holds. `max_new == 0` only evaluates the
    /// prompt (its logits stay in [`Session::logits`]).
    pub fn generate(
        &mut self,
        prompt: &[u32],
        sampler: &mut Sampler,
        max_new: usize,
        is_end: &dyn Fn(u32) -> bool,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Generation, EngineError> {
        let mut out = Generation {
            tokens: Vec::new(),
            stop: StopReason::MaxTokens,
        };
        for &t in prompt {
            sampler.accept(t);
        }
        let mut logits = self.eval(prompt)?;
        while out.tokens.len() < max_new {
            let t = sampler.sample(logits);
            if is_end(t) {
                out.stop = StopReason::EndOfText;
                break;
            }
            sampler.accept(t);
            out.tokens.push(t);
            if !on_token(t) {
                out.stop = StopReason::Stopped;
                break;
            }
            if out.tokens.len() == max_new {
                break;
            }
            if self.n_past() == self.n_ctx() {
                out.stop = StopReason::ContextFull;
                break;
            }
            logits = self.eval(&[t])?;
        }
        Ok(out)
    }

    /// Builds, allocates and runs the graph for one batch, leaving the
    /// logits of its `out` rows in `batch_logits`.
    fn eval_batch(&mut self, tokens: &[u32], out: &[usize]) -> Result<(), EngineError> {
        let n = tokens.len();
        let p0 = self.kv.used();
        let n_kv = (p0 + n).next_multiple_of(KV_PAD).min(self.kv.n_ctx());

        // causal mask: token i (position p0 + i) sees cache rows 0..=p0 + i
        self.mask.clear();
        self.mask.resize(n_kv * n, f32::NEG_INFINITY);
        for (i, row) in self.mask.chunks_mut(n_kv).enumerate() {
            row[..=p0 + i].fill(0.0);
        }
        let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
        let pos: Vec<i32> = (p0..p0 + n).map(|p| p as i32).collect();
        let rows: Vec<i64> = (p0..p0 + n).map(|p| p as i64).collect();
        let out_ids: Vec<i32> = out.iter().map(|&r| r as i32).collect();

        let n_i = n as i64;
        let g = Graph::new(&mut self.scratch);
        let inp = ForwardInputs {
            tokens: g.input(GgmlType::I32, &[n_i], "inp_tokens"),
            positions: g.input(GgmlType::I32, &[n_i], "inp_pos"),
            kv_rows: g.input(GgmlType::I64, &[n_i], "inp_kv_rows"),
            out_rows: g.input(GgmlType::I32, &[out.len() as i64], "inp_out_ids"),
            mask: g.input(GgmlType::F16, &[n_kv as i64, n_i], "inp_kq_mask"),
            n_kv,
            n_filled: p0 + n,
            fused_decode: self.fused_decode,
            stock_attention: self.stock_attention,
        };
        let logits = self.model.forward(&g, &self.kv, &inp);
        g.output(logits);
        self.runner.allocate(&g)?;
        inp.tokens.write_i32(&ids)?;
        inp.positions.write_i32(&pos)?;
        inp.kv_rows.write_i64(&rows)?;
        if n > 1 {
            // one token is its own output: the graph leaves the ids unused
            inp.out_rows.write_i32(&out_ids)?;
        }
        // the fused decode op sees exactly the filled rows and needs no mask
        // (the allocator then gives the unused mask no memory)
        if n > 1 || self.fused_decode.is_none() {
            inp.mask.write_f32_as_f16(&self.mask, &mut self.mask_f16)?;
        }
        self.runner.compute(&g)?;
        logits.read_f32(&mut self.batch_logits)?;
        drop(g);
        self.kv.advance(n);
        Ok(())
    }
}

/// Why [`Session::generate`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-text token.
    EndOfText,
    /// `max_new` tokens were produced.
    MaxTokens,
    /// The callback asked to stop.
    Stopped,
    /// The context window is full.
    ContextFull,
}

/// The result of [`Session::generate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    /// Generated tokens (without the end-of-text token).
    pub tokens: Vec<u32>,
    /// Why generation stopped.
    pub stop: StopReason,
}
