//! `sigma bench quality`: what selective V and compressed caches cost in
//! output quality, on real node output.
//!
//! Prompts are what a node prints (`nvidia-smi -q`, `nvidia-smi`, `dmesg`,
//! `lspci`, `nvidia-smi topo -m` on the simulated nodes), cut to 1-4k
//! tokens. For each prompt the baseline (f16 cache, full attention) decodes
//! greedily; each variant then follows the baseline's tokens (teacher
//! forcing) and is compared at every step: whether its greedy choice is the
//! baseline's, and the KL divergence of its next-token distribution from the
//! baseline's.
//!
//! With `--against`, the variant is a second model (a retrofit of the
//! first) on the same prompts, and both models' perplexity is measured on
//! each prompt's last `--ppl-tokens` tokens of real text, teacher-forced.

use std::io::Write;

use crate::engine::attention::SelectV;
use crate::engine::ffi::ggml::GgmlType;
use crate::engine::ffi::gguf::GgufFile;
use crate::engine::kv_cache::CacheTypes;
use crate::engine::model::{FusedDecode, LoadOptions, Model};
use crate::engine::sampling::argmax;
use crate::engine::session::{Session, SessionOptions};
use crate::engine::tokenizer::Tokenizer;

/// Arguments of `sigma bench quality`.
#[derive(clap::Args, Debug)]
pub struct QualityArgs {
    /// The model (name or GGUF path); the default model when absent.
    #[arg(long, value_name = "NAME|PATH")]
    pub model: Option<String>,
    /// CPU threads.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub threads: usize,
    /// Number of prompts.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub prompts: usize,
    /// Longest prompt in tokens (at least 1024).
    #[arg(long, value_name = "N", default_value_t = 2048)]
    pub max_prompt_tokens: usize,
    /// Tokens generated per prompt.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub gen_tokens: usize,
    /// V rows kept by the selective-V variants.
    #[arg(long, value_name = "K", default_value_t = 100)]
    pub select_v: usize,
    /// Compare this model (name or GGUF path) with --model instead of the
    /// cache variants; perplexities of both are added.
    #[arg(long, value_name = "NAME|PATH")]
    pub against: Option<String>,
    /// With --against: prompt tokens at the end of each prompt that
    /// perplexity is measured on.
    #[arg(long, value_name = "N", default_value_t = 128, requires = "against")]
    pub ppl_tokens: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Shortest prompt kept, in tokens.
const MIN_PROMPT_TOKENS: usize = 1024;

/// Commands whose output makes the prompts.
const COMMANDS: [&[&str]; 5] = [
    &["nvidia-smi", "-q"],
    &["dmesg"],
    &["nvidia-smi"],
    &["lspci", "-vv"],
    &["nvidia-smi", "topo", "-m"],
];

/// Up to `n` prompts of `MIN_PROMPT_TOKENS..=max` tokens from the simulated
/// nodes' command output.
fn corpus(tok: &Tokenizer, n: usize, max: usize) -> anyhow::Result<Vec<Vec<u32>>> {
    let mut out = Vec::new();
    let mut pending = String::new();
    'nodes: for cmd in COMMANDS {
        for summary in crate::sim::list() {
            let node = crate::sim::load(&summary.name)?;
            let argv: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
            let o = node.run(&argv);
            if o.exit_code != 0 || o.stdout.trim().is_empty() {
                continue;
            }
            pending.push_str(&format!("$ {}\n{}\n", cmd.join(" "), o.stdout));
            let ids = tok.encode(&pending, false)?;
            if ids.len() >= MIN_PROMPT_TOKENS {
                out.push(ids[..ids.len().min(max)].to_vec());
                pending.clear();
                if out.len() == n {
                    break 'nodes;
                }
            }
        }
    }
    anyhow::ensure!(
        !out.is_empty(),
        "the simulated nodes gave no prompt of {MIN_PROMPT_TOKENS}+ tokens"
    );
    Ok(out)
}

/// Log-softmax of `logits`.
fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + logits.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
    logits.iter().map(|x| x - lse).collect()
}

/// KL(p || q) for log-probabilities.
fn kl(lp: &[f32], lq: &[f32]) -> f64 {
    lp.iter()
        .zip(lq)
        .map(|(a, b)| f64::from(a.exp()) * f64::from(a - b))
        .sum()
}

/// A variant's totals over all prompts.
#[derive(serde::Serialize)]
struct Outcome {
    variant: String,
    steps: usize,
    greedy_agreement: f64,
    mean_kl: f64,
    max_kl: f64,
}

/// Perplexity of `model` on the last `n` tokens of each prompt, each
/// predicted from the real text before it.
fn perplexity(model: &Model, prompts: &[Vec<u32>], n: usize, n_ctx: usize) -> anyhow::Result<f64> {
    let mut s = Session::new(model, n_ctx)?;
    let (mut nll, mut count) = (0f64, 0usize);
    for p in prompts {
        let start = p.len().saturating_sub(n).max(1);
        s.reset();
        let mut logits = s.eval(&p[..start])?.to_vec();
        for (i, &t) in p[start..].iter().enumerate() {
            nll -= f64::from(log_softmax(&logits)[t as usize]);
            count += 1;
            if start + i + 1 < p.len() {
                logits = s.eval(&[t])?.to_vec();
            }
        }
    }
    Ok((nll / count.max(1) as f64).exp())
}

/// Runs the benchmark; returns the exit code.
pub fn run(args: &QualityArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(
        args.max_prompt_tokens >= MIN_PROMPT_TOKENS,
        "--max-prompt-tokens must be at least {MIN_PROMPT_TOKENS}"
    );
    let path = crate::engine::registry::Registry::load()?.locate(args.model.as_deref(), true)?;
    let gguf = GgufFile::open(&path)?;
    let tok = Tokenizer::from_gguf(&gguf)?;
    let model = Model::load(&gguf, &LoadOptions::threads(args.threads))?;
    let prompts = corpus(&tok, args.prompts, args.max_prompt_tokens)?;
    let against = match &args.against {
        Some(spec) => {
            let path = crate::engine::registry::Registry::load()?.locate(Some(spec), true)?;
            let gguf = GgufFile::open(&path)?;
            let other = Tokenizer::from_gguf(&gguf)?;
            anyhow::ensure!(
                other.n_vocab() == tok.n_vocab(),
                "--against {spec}: its vocabulary has {} tokens, the model's {}; compare a model with its own retrofit",
                other.n_vocab(),
                tok.n_vocab()
            );
            let model = Model::load(&gguf, &LoadOptions::threads(args.threads))?;
            Some((path, model))
        }
        None => None,
    };
    let n_ctx = args.max_prompt_tokens + args.gen_tokens + 1;
    let f16 = CacheTypes::default();
    let fused = |renormalize| SessionOptions {
        cache: f16,
        fused_decode: Some(FusedDecode {
            select_v: Some(SelectV {
                top_k: args.select_v,
                renormalize,
            }),
        }),
        stock_attention: None,
    };
    let cache = |k, v| SessionOptions {
        cache: CacheTypes { k, v },
        fused_decode: None,
        stock_attention: None,
    };
    let k = args.select_v;
    let variants: Vec<(String, SessionOptions)> = if let Some((path, _)) = &against {
        vec![(path.display().to_string(), cache(f16.k, f16.v))]
    } else {
        vec![
            (
                "fused, full V".into(),
                SessionOptions {
                    cache: f16,
                    fused_decode: Some(FusedDecode::default()),
                    stock_attention: None,
                },
            ),
            (format!("select-v {k}, kept weights"), fused(false)),
            (format!("select-v {k}, renormalised"), fused(true)),
            (
                "K q4_0 / V f16".into(),
                cache(GgmlType::Q4_0, GgmlType::F16),
            ),
            (
                "K f16 / V q4_0".into(),
                cache(GgmlType::F16, GgmlType::Q4_0),
            ),
            (
                "K q8_0 / V f16".into(),
                cache(GgmlType::Q8_0, GgmlType::F16),
            ),
            (
                "K f16 / V q8_0".into(),
                cache(GgmlType::F16, GgmlType::Q8_0),
            ),
        ]
    };
    // the model the variants run: the --against model, or the base itself
    let variant_model = against.as_ref().map_or(&model, |(_, m)| m);
    let mut base = Session::new(&model, n_ctx)?;
    let mut sessions = variants
        .iter()
        .map(|(_, o)| Session::with_options(variant_model, n_ctx, *o))
        .collect::<Result<Vec<_>, _>>()?;
    let mut agree = vec![0usize; variants.len()];
    let mut kls: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut steps = 0;
    for (pi, prompt) in prompts.iter().enumerate() {
        if !args.json {
            eprint!(
                "\rprompt {}/{} ({} tokens)   ",
                pi + 1,
                prompts.len(),
                prompt.len()
            );
        }
        base.reset();
        let mut logits = base.eval(prompt)?.to_vec();
        let prefix = base.export_prefix(prompt.len())?;
        let mut tokens = Vec::new();
        let mut base_lp = Vec::new();
        for _ in 0..args.gen_tokens {
            let t = argmax(&logits);
            base_lp.push(log_softmax(&logits));
            tokens.push(t);
            logits = base.eval(&[t])?.to_vec();
        }
        steps += tokens.len();
        for (vi, ((_, opts), s)) in variants.iter().zip(sessions.iter_mut()).enumerate() {
            s.reset();
            // the prompt's cache is the baseline's when the types agree
            // (prefill never uses the fused decode path)
            let mut logits = if opts.cache == f16 && against.is_none() {
                s.import_prefix(prompt.len(), &prefix)?;
                base_lp[0].clone()
            } else {
                s.eval(prompt)?.to_vec()
            };
            for (i, &t) in tokens.iter().enumerate() {
                if argmax(&logits) == t {
                    agree[vi] += 1;
                }
                kls[vi].push(kl(&base_lp[i], &log_softmax(&logits)));
                if i + 1 < tokens.len() {
                    logits = s.eval(&[t])?.to_vec();
                }
            }
        }
    }
    if !args.json {
        eprintln!();
    }
    let outcomes: Vec<Outcome> = variants
        .iter()
        .enumerate()
        .map(|(vi, (name, _))| Outcome {
            variant: name.clone(),
            steps,
            greedy_agreement: agree[vi] as f64 / steps.max(1) as f64,
            mean_kl: kls[vi].iter().sum::<f64>() / kls[vi].len().max(1) as f64,
            max_kl: kls[vi].iter().copied().fold(0.0, f64::max),
        })
        .collect();
    let ppl = match &against {
        Some((_, m)) => Some((
            perplexity(&model, &prompts, args.ppl_tokens, n_ctx)?,
            perplexity(m, &prompts, args.ppl_tokens, n_ctx)?,
        )),
        None => None,
    };
    let mut out = std::io::stdout().lock();
    let lengths: Vec<usize> = prompts.iter().map(Vec::len).collect();
    if args.json {
        let j = serde_json::json!({
            "model": path.display().to_string(),
            "prompts": prompts.len(),
            "prompt_tokens": lengths,
            "gen_tokens": args.gen_tokens,
            "variants": outcomes,
            "perplexity": ppl.map(|(b, a)| serde_json::json!({
                "tokens_per_prompt": args.ppl_tokens,
                "model": b,
                "against": a,
            })),
        });
        writeln!(out, "{j}")?;
        return Ok(0);
    }
    writeln!(
        out,
        "{} prompts of {}-{} tokens (simulated node output), {} greedy tokens each, teacher-forced on the baseline's greedy tokens (f16 cache, full attention)",
        prompts.len(),
        lengths.iter().min().unwrap_or(&0),
        lengths.iter().max().unwrap_or(&0),
        args.gen_tokens
    )?;
    writeln!(
        out,
        "{:<28} {:>16} {:>12} {:>10}",
        "variant", "greedy agreement", "mean KL", "max KL"
    )?;
    for o in &outcomes {
        writeln!(
            out,
            "{:<28} {:>15.1}% {:>12.2e} {:>10.2e}",
            o.variant,
            100.0 * o.greedy_agreement,
            o.mean_kl,
            o.max_kl
        )?;
    }
    if let Some((b, a)) = ppl {
        writeln!(
            out,
            "perplexity on the last {} tokens of each prompt: {b:.3} (model), {a:.3} (against)",
            args.ppl_tokens
        )?;
    }
    Ok(0)
}
