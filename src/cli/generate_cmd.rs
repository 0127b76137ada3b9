//! `sigma generate`: run a GGUF model in-process on a prompt.
//!
//! The prompt comes from `--tokens` (ids), `--prompt` (text) or stdin (text);
//! `--chat` wraps text in the model's chat template as one user message.
//! Only the generated text goes to stdout, streamed token by token; with
//! `--json` one JSON object is printed at the end instead (with the device
//! the model ran on and why).
//!
//! Ctrl-C while generating stops at the next token and exits 130, with
//! only the text generated so far on stdout (and no JSON); a second Ctrl-C
//! exits at once, should prompt evaluation take long. The mechanism is the
//! chat's ([`Cancel`]).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use crate::engine::chat::{ChatTemplate, Message};
use crate::engine::ffi::gguf::GgufFile;
use crate::engine::sampling::{Sampler, SamplerConfig};
use crate::engine::session::{Session, StopReason};
use crate::engine::tokenizer::Tokenizer;
use crate::session::{Cancel, EXIT_INTERRUPTED};

/// Arguments of `sigma generate`.
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// The model: a name from `sigma model list` (pulled on first use) or a
    /// GGUF file; the default model when absent.
    #[arg(long, value_name = "NAME|PATH")]
    pub model: Option<String>,
    /// Wrap the text prompt in the model's chat template (one user turn).
    #[arg(long, conflicts_with = "tokens")]
    pub chat: bool,
    /// Always pick the most likely token (the default).
    #[arg(long, conflicts_with = "temp")]
    pub greedy: bool,
    /// Sample at this temperature (with top-k 40, top-p 0.95, min-p 0.05).
    #[arg(long, value_name = "T")]
    pub temp: Option<f32>,
    /// Seed of the sampling RNG.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Penalise tokens seen in the last 64 (1.0 = off).
    #[arg(long, value_name = "P", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Maximum number of tokens to generate; 0 only evaluates the prompt.
    #[arg(
        short = 'n',
        long = "max-tokens",
        value_name = "N",
        default_value_t = 256
    )]
    pub max_tokens: usize,
    /// Prompt text (default: read stdin).
    #[arg(long, value_name = "TEXT", conflicts_with = "tokens")]
    pub prompt: Option<String>,
    /// Prompt as comma-separated token ids.
    #[arg(long, value_name = "ID,ID,...", value_delimiter = ',')]
    pub tokens: Option<Vec<u32>>,
    /// Context size in tokens.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub ctx: usize,
    /// CPU threads.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub threads: usize,
    /// Print one JSON object (tokens, text, timings) instead of streaming text.
    #[arg(long)]
    pub json: bool,
    /// Write the logits of the last evaluated position as a JSON array.
    #[arg(long, value_name = "FILE")]
    pub dump_logits: Option<PathBuf>,
    /// KV cache and attention options.
    #[command(flatten)]
    pub session: super::session_args::SessionArgs,
}

/// Runs `sigma generate`; returns the exit code.
pub fn run(args: GenerateArgs) -> anyhow::Result<i32> {
    let cancel = Cancel::new();
    cancel.on_interrupt()?;
    let path = crate::engine::registry::Registry::load()?.locate(args.model.as_deref(), true)?;
    let gguf = GgufFile::open(&path)?;
    let tokenizer = Tokenizer::from_gguf(&gguf)?;
    let prompt = prompt_tokens(&args, &gguf, &tokenizer)?;
    let sampler_cfg = match args.temp {
        Some(t) if !args.greedy => SamplerConfig::with_temperature(t, args.seed),
        _ => SamplerConfig::greedy(),
    };
    let mut sampler = Sampler::new(SamplerConfig {
        repeat_penalty: args.repeat_penalty,
        ..sampler_cfg
    })?;

    let (model, device) = args.session.load_model(&gguf, args.threads, args.ctx)?;
    let options = args.session.options(model.gpu().is_some())?;
    let mut session = Session::with_options(&model, args.ctx, options)?;

    let mut stream = tokenizer.stream(true);
    let mut stdout = std::io::stdout().lock();
    let mut text = String::new();
    let mut write_failed = None;
    let start = Instant::now();
    let mut first_token_at = None;
    let busy = cancel.busy();
    let generation = session.generate(
        &prompt,
        &mut sampler,
        args.max_tokens,
        &|t| tokenizer.is_end(t),
        &mut |t| {
            if cancel.is_cancelled() {
                return false;
            }
            first_token_at.get_or_insert_with(Instant::now);
            let piece = match stream.push(t) {
                Ok(p) => p.unwrap_or_default(),
                Err(e) => {
                    write_failed = Some(anyhow::Error::from(e));
                    return false;
                }
            };
            text.push_str(&piece);
            if args.json {
                return true;
            }
            match stdout
                .write_all(piece.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => true,
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::BrokenPipe {
                        write_failed = Some(e.into());
                    }
                    false
                }
            }
        },
    )?;
    drop(busy);
    if let Some(e) = write_failed {
        return Err(e);
    }
    let end = Instant::now();
    if cancel.is_cancelled() {
        if !args.json {
            end_line(&mut stdout, &text);
        }
        return Ok(EXIT_INTERRUPTED);
    }

    if let Some(path) = &args.dump_logits {
        let json = serde_json::to_string(session.logits()).context("logits are not finite")?;
        std::fs::write(path, json)
            .with_context(|| format!("cannot write logits to '{}'", path.display()))?;
    }
    if args.json {
        let prefill_s = first_token_at
            .unwrap_or(end)
            .duration_since(start)
            .as_secs_f64();
        let decode_s = first_token_at.map_or(0.0, |f| end.duration_since(f).as_secs_f64());
        let decoded = generation.tokens.len().saturating_sub(1);
        let out = serde_json::json!({
            "prompt_tokens": prompt.len(),
            "device": device.label,
            "device_reason": device.reason,
            "tokens": generation.tokens,
            "text": text,
            "stop": match generation.stop {
                StopReason::EndOfText => "end_of_text",
                StopReason::MaxTokens => "max_tokens",
                StopReason::Stopped => "stopped",
                StopReason::ContextFull => "context_full",
            },
            "prefill_tokens_per_s": prompt.len() as f64 / prefill_s.max(1e-9),
            "decode_tokens_per_s": if decoded > 0 { decoded as f64 / decode_s.max(1e-9) } else { 0.0 },
        });
        writeln!(stdout, "{out}")?;
    } else {
        end_line(&mut stdout, &text);
    }
    Ok(0)
}

/// Ends the streamed `text` with a newline so the shell prompt does not
/// follow it; a closed pipe is ignored.
fn end_line(stdout: &mut impl Write, text: &str) {
    if !text.is_empty() && !text.ends_with('\n') {
        let _ = writeln!(stdout);
    }
}

/// The prompt as token ids, from `--tokens`, `--prompt` or stdin.
fn prompt_tokens(
    args: &GenerateArgs,
    gguf: &GgufFile,
    tokenizer: &Tokenizer,
) -> anyhow::Result<Vec<u32>> {
    if let Some(ids) = &args.tokens {
        return Ok(ids.clone());
    }
    let text = match &args.prompt {
        Some(p) => p.clone(),
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the prompt from stdin")?;
            s
        }
    };
    let text = if args.chat {
        let template = ChatTemplate::from_gguf(gguf, tokenizer)?;
        template.render(&[Message::user(text)], true)?
    } else {
        text
    };
    Ok(tokenizer.encode(&text, true)?)
}
