//! `sigma bench`: prefill and decode speed of the engine, optionally beside
//! llama.cpp on the same GGUF in the same process: the statically linked
//! one (`--vs-llama-cpp`, built with Sigma's own flags) and one built for
//! this machine (`--peer DIR`, from `scripts/build-llama-cpp-peer.sh`).
//!
//! Each run starts from an empty cache, evaluates `--prompt-tokens`
//! synthetic tokens in one call (prefill), then `--gen-tokens` single-token
//! calls (decode). Runs of the engines alternate so that all see the same
//! machine load; the medians are reported with their spread (see
//! [`super::bench_stats`]), each ratio ours/theirs as the median of each
//! pair's own ratio, and the load average around the runs.
//! Peak RSS (`VmHWM`) is read after our warm-up, before llama.cpp loads.

use std::io::Write;
use std::time::Instant;

use anyhow::anyhow;

use super::bench_stats::{Load, Spread};
use crate::engine::ffi::gguf::GgufFile;
use crate::engine::ffi::llama_lib::{LibContext, LlamaLibrary};
use crate::engine::peer::{LlamaCppPeer, PeerContext};
use crate::engine::session::{Session, SessionOptions};

/// Arguments of `sigma bench`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// Another benchmark than whole-model prefill/decode.
    #[command(subcommand)]
    pub what: Option<BenchWhat>,
    /// The model: a name from `sigma model list` (pulled on first use) or a
    /// GGUF file; the default model when absent.
    #[arg(long, value_name = "NAME|PATH")]
    pub model: Option<String>,
    /// CPU threads (both engines).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub threads: usize,
    /// Tokens evaluated in the prefill step.
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub prompt_tokens: usize,
    /// Tokens decoded one at a time after the prefill.
    #[arg(long, value_name = "N", default_value_t = 128)]
    pub gen_tokens: usize,
    /// Measured runs per engine (after one warm-up).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub runs: usize,
    /// Also run the statically linked llama.cpp (the same ggml build and CPU kernels as Sigma)
    /// and report the ratio.
    #[arg(long)]
    pub vs_llama_cpp: bool,
    /// Also run llama.cpp built for this machine, from the directory
    /// `scripts/build-llama-cpp-peer.sh` printed, and report the ratio.
    #[arg(long, value_name = "DIR")]
    pub peer: Option<std::path::PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Decode with the cache already holding N positions of synthetic
    /// values (needs --synthetic-kv): long-context decode without the
    /// prefill. Prefill is then not measured.
    #[arg(long, value_name = "N", requires = "synthetic_kv")]
    pub context: Option<usize>,
    /// Fill the cache synthetically up to --context.
    #[arg(long, requires = "context")]
    pub synthetic_kv: bool,
    /// KV cache and attention options.
    #[command(flatten)]
    pub session: super::session_args::SessionArgs,
}

/// The other benchmarks.
#[derive(clap::Subcommand, Debug)]
pub enum BenchWhat {
    /// The paper's attention-layer experiment: one decode step of a
    /// Sigma-1.5B-shaped layer against its GQA twin, with and without
    /// selective V, at growing cached prefixes.
    Diffqkv(super::bench_diffqkv::DiffqkvArgs),
    /// Output quality of selective V and of compressed K or V caches
    /// against full attention on an f16 cache, on real node output.
    Quality(super::bench_quality::QualityArgs),
}

/// Seconds spent in prefill and in decode by one run.
#[derive(Clone, Copy, Debug)]
struct RunTime {
    prefill_s: f64,
    decode_s: f64,
}

/// A rate pair as JSON: the medians (null when not measured) and their
/// spreads.
fn rates_json(prefill: Spread, decode: Spread) -> serde_json::Value {
    serde_json::json!({
        "prefill_tok_s": prefill.median.is_finite().then_some(prefill.median),
        "decode_tok_s": decode.median,
        "prefill_spread": prefill.median.is_finite().then_some(prefill),
        "decode_spread": decode,
    })
}

/// Tokens per second for `n` tokens in `s` seconds.
fn rate(n: usize, s: f64) -> f64 {
    if s > 0.0 { n as f64 / s } else { 0.0 }
}

/// Peak resident set size of this process in MiB (`VmHWM`), if readable.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Synthetic prompt: `n` token ids spread over the vocabulary (speed does
/// not depend on which tokens they are).
fn synthetic_tokens(n: usize, n_vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|i| ((i * 7919 + 13) % n_vocab.max(1)) as u32)
        .collect()
}

/// One timed run of our engine; with `synthetic` positions the prompt is
/// replaced by a synthetic cache of that length.
fn run_ours(
    session: &mut Session<'_>,
    prompt: &[u32],
    n_gen: usize,
    synthetic: Option<usize>,
) -> anyhow::Result<RunTime> {
    session.reset();
    let t0 = Instant::now();
    match synthetic {
        Some(n) => session.fill_synthetic(n)?,
        None => {
            session.eval(prompt)?;
        }
    }
    let t1 = Instant::now();
    for i in 0..n_gen {
        session.eval(&[prompt[i % prompt.len()]])?;
    }
    Ok(RunTime {
        prefill_s: t1.duration_since(t0).as_secs_f64(),
        decode_s: t1.elapsed().as_secs_f64(),
    })
}

/// A llama.cpp sequence the benchmark times.
trait PeerSequence {
    /// Empties its cache.
    fn reset(&mut self);
    /// Evaluates `tokens` after what is cached.
    fn append(&mut self, tokens: &[u32]) -> anyhow::Result<()>;
}

impl PeerSequence for PeerContext<'_> {
    fn reset(&mut self) {
        PeerContext::reset(self);
    }
    fn append(&mut self, tokens: &[u32]) -> anyhow::Result<()> {
        self.eval(tokens).map(drop)
    }
}

impl PeerSequence for LibContext<'_> {
    fn reset(&mut self) {
        LibContext::reset(self);
    }
    fn append(&mut self, tokens: &[u32]) -> anyhow::Result<()> {
        self.eval(tokens).map(drop)
    }
}

/// One llama.cpp the benchmark runs beside Sigma, and its timed runs.
struct Peer<'a> {
    /// Its name in the table.
    name: &'static str,
    /// Its key in the JSON object.
    key: &'static str,
    /// The key of our ratio to it.
    ratio_key: &'static str,
    /// How it was built.
    build: String,
    sequence: Box<dyn PeerSequence + 'a>,
    runs: Vec<RunTime>,
}

/// One timed run of llama.cpp.
fn run_peer(ctx: &mut dyn PeerSequence, prompt: &[u32], n_gen: usize) -> anyhow::Result<RunTime> {
    ctx.reset();
    let t0 = Instant::now();
    ctx.append(prompt)?;
    let t1 = Instant::now();
    for i in 0..n_gen {
        ctx.append(&[prompt[i % prompt.len()]])?;
    }
    Ok(RunTime {
        prefill_s: t1.duration_since(t0).as_secs_f64(),
        decode_s: t1.elapsed().as_secs_f64(),
    })
}

/// The attention path `options` choose, as reports name it.
fn attention_name(options: &SessionOptions) -> &'static str {
    if options.fused_decode.is_some() {
        "fused"
    } else if options.stock_attention.is_some() {
        "stock"
    } else {
        "flash"
    }
}

/// Runs `sigma bench`; returns the exit code.
pub fn run(args: BenchArgs) -> anyhow::Result<i32> {
    match &args.what {
        Some(BenchWhat::Diffqkv(d)) => return super::bench_diffqkv::run(d),
        Some(BenchWhat::Quality(q)) => return super::bench_quality::run(q),
        None => {}
    }
    if args.prompt_tokens == 0 || args.runs == 0 {
        return Err(anyhow!("--prompt-tokens and --runs must be at least 1"));
    }
    anyhow::ensure!(
        args.context.is_none() || !(args.vs_llama_cpp || args.peer.is_some()),
        "--context with --synthetic-kv has no llama.cpp counterpart; drop --vs-llama-cpp and --peer"
    );
    // The peer library first: a wrong directory fails before the long load.
    let library = args.peer.as_deref().map(LlamaLibrary::open).transpose()?;
    let n_ctx = args.context.unwrap_or(args.prompt_tokens) + args.gen_tokens;
    let path = crate::engine::registry::Registry::load()?.locate(args.model.as_deref(), true)?;
    let gguf = GgufFile::open(&path)?;
    let t_load = Instant::now();
    let (model, device) = args.session.load_model(&gguf, args.threads, n_ctx)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let cpu = crate::engine::ffi::cpu::chosen()?;
    let options = args.session.options(model.gpu().is_some())?;
    let mut session = Session::with_options(&model, n_ctx, options)?;
    let hp = model.hparams();
    let per_token = |ty: crate::engine::ffi::ggml::GgmlType, heads: usize, dim: usize| {
        hp.n_layer * heads * ty.row_size(dim as i64).unwrap_or(0)
    };
    let k_bytes = per_token(options.cache.k, hp.n_head_k, hp.head_dim_k);
    let v_bytes = per_token(options.cache.v, hp.n_head_v, hp.head_dim_v);
    let cache_desc = format!(
        "KV per token: K {} B ({}) + V {} B ({}), attention {}",
        k_bytes,
        options.cache.k.name(),
        v_bytes,
        options.cache.v.name(),
        attention_name(&options)
    );
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    let (plain, repacked) = model.weights().size_bytes();
    let memory = match model.weights().extra_buffer() {
        Some(extra) => format!(
            "weights {:.0} MiB + {:.0} MiB in {extra}",
            mib(plain),
            mib(repacked)
        ),
        None => format!("weights {:.0} MiB", mib(plain)),
    };
    let memory = match model.weights().gpu_bytes() {
        0 => memory,
        gpu => format!("{memory} + {:.0} MiB on the GPU", mib(gpu)),
    };
    let prompt = synthetic_tokens(args.prompt_tokens, model.hparams().n_vocab);

    run_ours(&mut session, &prompt, args.gen_tokens.min(4), args.context)?; // warm-up
    let rss = peak_rss_mib();
    let (kv, compute) = session.memory_bytes();
    let memory = format!(
        "{memory}, KV cache {:.0} MiB, compute {:.0} MiB",
        mib(kv),
        mib(compute)
    );

    let linked = args
        .vs_llama_cpp
        .then(|| LlamaCppPeer::load(&path))
        .transpose()?;
    let library_model = library.as_ref().map(|l| l.load_model(&path)).transpose()?;
    let mut peers = Vec::new();
    if let Some(p) = &linked {
        peers.push(Peer {
            name: "llama.cpp",
            key: "llama_cpp",
            ratio_key: "ratio",
            build: format!(
                "statically linked, the same CPU kernels ({})",
                cpu.variant.name
            ),
            sequence: Box::new(p.context(n_ctx, args.threads)?),
            runs: Vec::new(),
        });
    }
    if let (Some(l), Some(m)) = (&library, &library_model) {
        peers.push(Peer {
            name: "peer",
            key: "peer",
            ratio_key: "ratio_peer",
            build: format!("{} ({})", l.path.display(), l.instruction_sets),
            sequence: Box::new(m.context(n_ctx, args.threads)?),
            runs: Vec::new(),
        });
    }
    for p in &mut peers {
        run_peer(p.sequence.as_mut(), &prompt, args.gen_tokens.min(4))?; // warm-up
    }

    let load = Load::start();
    let mut ours = Vec::new();
    for _ in 0..args.runs {
        ours.push(run_ours(
            &mut session,
            &prompt,
            args.gen_tokens,
            args.context,
        )?);
        for p in &mut peers {
            p.runs
                .push(run_peer(p.sequence.as_mut(), &prompt, args.gen_tokens)?);
        }
    }

    let load = load.finish();

    // Rates with their spread; ratios paired run by run (the runs
    // alternate, so each pair saw the same moment of the machine).
    let summarize = |runs: &[RunTime]| {
        let pre: Vec<f64> = runs.iter().map(|r| r.prefill_s).collect();
        let dec: Vec<f64> = runs.iter().map(|r| r.decode_s).collect();
        (
            Spread::of(&pre).map_decreasing(|s| rate(args.prompt_tokens, s)),
            Spread::of(&dec).map_decreasing(|s| rate(args.gen_tokens, s)),
        )
    };
    let (mut our_pp, our_tg) = summarize(&ours);
    // with a synthetic cache there is no prefill to report
    if args.context.is_some() {
        our_pp = Spread::of(&[]);
    }
    let paired = |theirs: &[RunTime], pick: fn(&RunTime) -> f64| {
        let ratios: Vec<f64> = ours
            .iter()
            .zip(theirs)
            .map(|(o, t)| pick(t) / pick(o))
            .collect();
        Spread::of(&ratios)
    };
    // Per peer: its rates, then our ratio to it.
    let compared: Vec<_> = peers
        .iter()
        .map(|p| {
            let (pp, tg) = summarize(&p.runs);
            let ratio = (
                paired(&p.runs, |r| r.prefill_s),
                paired(&p.runs, |r| r.decode_s),
            );
            (p, (pp, tg), ratio)
        })
        .collect();

    let mut out = std::io::stdout().lock();
    if args.json {
        let mut j = serde_json::json!({
            "model": path.display().to_string(),
            "threads": args.threads,
            "prompt_tokens": args.prompt_tokens,
            "gen_tokens": args.gen_tokens,
            "runs": args.runs,
            "load_s": load_s,
            "peak_rss_mib": rss,
            "memory": memory,
            "context": args.context,
            "cache_type_k": options.cache.k.name(),
            "cache_type_v": options.cache.v.name(),
            "kv_k_bytes_per_token": k_bytes,
            "kv_v_bytes_per_token": v_bytes,
            "attention": attention_name(&options),
            "device": device.label,
            "device_reason": device.reason,
            "cpu_kernels": cpu.variant.name,
            "cpu_kernels_reason": cpu.reason,
            "select_v": args.session.select_v,
            "load": load,
            "busy": load.busy(),
            "ours": rates_json(our_pp, our_tg),
        });
        for (p, (pp, tg), (rp, rd)) in &compared {
            j[p.key] = rates_json(*pp, *tg);
            j[p.key]["build"] = p.build.clone().into();
            j[p.ratio_key] = serde_json::json!({
                "prefill": rp.median.is_finite().then_some(rp.median),
                "decode": rd.median,
                "prefill_spread": rp,
                "decode_spread": rd,
            });
        }
        writeln!(out, "{j}")?;
    } else {
        writeln!(
            out,
            "model {} | {device} | threads {} | pp {} tg {} | {} runs: medians [{}]",
            path.display(),
            args.threads,
            args.prompt_tokens,
            args.gen_tokens,
            args.runs,
            our_tg.kind()
        )?;
        writeln!(out, "cpu kernels {cpu}")?;
        writeln!(out, "{load}")?;
        writeln!(
            out,
            "{:<15} {:>22} {:>22}",
            "engine", "prefill tok/s", "decode tok/s"
        )?;
        let cell = |s: Spread, decimals: usize| {
            if s.median.is_finite() {
                format!("{:.decimals$} {}", s.median, s.interval(decimals))
            } else {
                "-".into()
            }
        };
        writeln!(
            out,
            "{:<15} {:>22} {:>22}",
            "sigma",
            cell(our_pp, 1),
            cell(our_tg, 1)
        )?;
        for (p, (pp, tg), (rp, rd)) in &compared {
            writeln!(
                out,
                "{:<15} {:>22} {:>22}",
                p.name,
                cell(*pp, 1),
                cell(*tg, 1)
            )?;
            let ratio = format!("sigma/{}", p.name);
            writeln!(
                out,
                "{:<15} {:>22} {:>22}",
                ratio,
                cell(*rp, 2),
                cell(*rd, 2)
            )?;
        }
        for p in &peers {
            writeln!(out, "{}: {}", p.name, p.build)?;
        }
        writeln!(out, "{memory}")?;
        writeln!(out, "{cache_desc}")?;
        match rss {
            Some(mib) => writeln!(
                out,
                "load {load_s:.2} s, peak RSS {mib:.0} MiB (sigma only)"
            )?,
            None => writeln!(out, "load {load_s:.2} s, peak RSS unavailable")?,
        }
    }
    Ok(0)
}
