//! `sigma bench`: prefill and decode speed of the engine, optionally beside
//! llama.cpp (through `llama-cpp-2`) on the same GGUF in the same process.
//!
//! Each run starts from an empty cache, evaluates `--prompt-tokens`
//! synthetic tokens in one call (prefill), then `--gen-tokens` single-token
//! calls (decode). Runs of the two engines alternate so that both see the
//! same machine load; the medians are reported with the ratio ours/theirs.
//! Peak RSS (`VmHWM`) is read after our warm-up, before llama.cpp loads.

use std::io::Write;
use std::time::Instant;

use anyhow::anyhow;

use crate::engine::ffi::gguf::GgufFile;
use crate::engine::model::{LoadOptions, Model};
use crate::engine::peer::{LlamaCppPeer, PeerContext};
use crate::engine::session::Session;

/// Arguments of `sigma bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
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
    /// Also run llama.cpp (llama-cpp-2) and report the ratio.
    #[arg(long)]
    pub vs_llama_cpp: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Seconds spent in prefill and in decode by one run.
#[derive(Clone, Copy, Debug)]
struct RunTime {
    prefill_s: f64,
    decode_s: f64,
}

/// Median of a list of seconds.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
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

/// One timed run of our engine.
fn run_ours(session: &mut Session<'_>, prompt: &[u32], n_gen: usize) -> anyhow::Result<RunTime> {
    session.reset();
    let t0 = Instant::now();
    session.eval(prompt)?;
    let t1 = Instant::now();
    for i in 0..n_gen {
        session.eval(&[prompt[i % prompt.len()]])?;
    }
    Ok(RunTime {
        prefill_s: t1.duration_since(t0).as_secs_f64(),
        decode_s: t1.elapsed().as_secs_f64(),
    })
}

/// One timed run of llama.cpp.
fn run_peer(ctx: &mut PeerContext<'_>, prompt: &[u32], n_gen: usize) -> anyhow::Result<RunTime> {
    ctx.reset();
    let t0 = Instant::now();
    ctx.eval(prompt)?;
    let t1 = Instant::now();
    for i in 0..n_gen {
        ctx.eval(&[prompt[i % prompt.len()]])?;
    }
    Ok(RunTime {
        prefill_s: t1.duration_since(t0).as_secs_f64(),
        decode_s: t1.elapsed().as_secs_f64(),
    })
}

/// Runs `sigma bench`; returns the exit code.
pub fn run(args: BenchArgs) -> anyhow::Result<i32> {
    if args.prompt_tokens == 0 || args.runs == 0 {
        return Err(anyhow!("--prompt-tokens and --runs must be at least 1"));
    }
    let n_ctx = args.prompt_tokens + args.gen_tokens;
    let path = crate::engine::registry::Registry::load()?.locate(args.model.as_deref(), true)?;
    let gguf = GgufFile::open(&path)?;
    let t_load = Instant::now();
    let model = Model::load(
        &gguf,
        &LoadOptions {
            n_threads: args.threads,
        },
    )?;
    let load_s = t_load.elapsed().as_secs_f64();
    let mut session = Session::new(&model, n_ctx)?;
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
    let prompt = synthetic_tokens(args.prompt_tokens, model.hparams().n_vocab);

    run_ours(&mut session, &prompt, args.gen_tokens.min(4))?; // warm-up
    let rss = peak_rss_mib();
    let (kv, compute) = session.memory_bytes();
    let memory = format!(
        "{memory}, KV cache {:.0} MiB, compute {:.0} MiB",
        mib(kv),
        mib(compute)
    );

    let peer = if args.vs_llama_cpp {
        Some(LlamaCppPeer::load(&path)?)
    } else {
        None
    };
    let mut peer_ctx = match &peer {
        Some(p) => {
            let mut c = p.context(n_ctx, args.threads)?;
            run_peer(&mut c, &prompt, args.gen_tokens.min(4))?; // warm-up
            Some(c)
        }
        None => None,
    };

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..args.runs {
        ours.push(run_ours(&mut session, &prompt, args.gen_tokens)?);
        if let Some(c) = peer_ctx.as_mut() {
            theirs.push(run_peer(c, &prompt, args.gen_tokens)?);
        }
    }

    let summarize = |runs: &[RunTime]| {
        let pre = median(runs.iter().map(|r| r.prefill_s).collect());
        let dec = median(runs.iter().map(|r| r.decode_s).collect());
        (rate(args.prompt_tokens, pre), rate(args.gen_tokens, dec))
    };
    let (our_pp, our_tg) = summarize(&ours);
    let peer_rates = (!theirs.is_empty()).then(|| summarize(&theirs));

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
            "ours": { "prefill_tok_s": our_pp, "decode_tok_s": our_tg },
        });
        if let Some((pp, tg)) = peer_rates {
            j["llama_cpp"] = serde_json::json!({ "prefill_tok_s": pp, "decode_tok_s": tg });
            j["ratio"] = serde_json::json!({ "prefill": our_pp / pp, "decode": our_tg / tg });
        }
        writeln!(out, "{j}")?;
    } else {
        writeln!(
            out,
            "model {} | threads {} | pp {} tg {} | {} runs, medians",
            path.display(),
            args.threads,
            args.prompt_tokens,
            args.gen_tokens,
            args.runs
        )?;
        writeln!(
            out,
            "{:<10} {:>14} {:>14}",
            "engine", "prefill tok/s", "decode tok/s"
        )?;
        writeln!(out, "{:<10} {:>14.1} {:>14.1}", "sigma", our_pp, our_tg)?;
        if let Some((pp, tg)) = peer_rates {
            writeln!(out, "{:<10} {:>14.1} {:>14.1}", "llama.cpp", pp, tg)?;
            writeln!(
                out,
                "{:<10} {:>14.2} {:>14.2}",
                "ratio",
                our_pp / pp,
                our_tg / tg
            )?;
        }
        writeln!(out, "{memory}")?;
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
