//! The local model as an [`Assistant`]: grounding, grammar-constrained
//! decoding with llguidance, and a prompt prefix whose KV cache is reused.
//!
//! # How a question is answered
//! 1. The prompt is the chat template over a system message (rules and
//!    few-shot examples from `prompts/`, the same every time) and a user
//!    message (node, findings, candidate commands, question). Everything up
//!    to the user message is the *static prefix*: evaluated once, its KV
//!    cache kept in the session and saved to disk, keyed by model and prompt.
//! 2. Only the dynamic part is prefilled per question.
//! 3. Decoding is greedy under the reply grammar ([`super::grammar`]):
//!    tokens the grammar forces (the JSON punctuation and keys) are evaluated
//!    in one batch without sampling; elsewhere the grammar's mask is applied
//!    to the logits before the argmax.
//! 4. The reply is parsed, and every command becomes a [`Proposal`], which
//!    runs it through the guard.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde::Deserialize;

mod speculate;

use super::context;
use super::diagnose::{self, Diagnosis, observations};
use super::grammar;
use super::rank::{self, Reference};
use super::{Assistant, Event, NodeContext, Proposal, Reply, Timings, Turn};
use crate::engine::chat::{ChatTemplate, Message};
use crate::engine::device::DeviceChoice;
use crate::engine::ffi::gguf::GgufFile;
use crate::engine::kv_cache::CacheTypes;
use crate::engine::model::{LoadOptions, Model};
use crate::engine::session::Session;
use crate::engine::tokenizer::Tokenizer;

/// Marks where the user message starts in the rendered template.
const SPLIT: &str = "\u{1}SIGMA_USER\u{1}";
/// Context window the copilot uses (prefix + question + reply).
const N_CTX: usize = 4096;
/// Candidate commands shown per question, best first. The reply's first
/// command is the best one: measured on the evaluation, the ranker's first
/// choice is right more often than the 0.5B model's pick among them
/// (`docs/EVAL.md`); the model explains it and may add others.
const N_CANDIDATES: usize = 4;
/// Budget for the node rendering, in characters.
const NODE_CHARS: usize = 300;
/// Most tokens in one reply. The grammar bounds every part of a reply;
/// this is the backstop that stops a runaway generation within seconds:
/// the reply is then closed where it stands ([`salvage`]).
const MAX_REPLY_TOKENS: usize = 600;
/// Longest reference purpose shown, in characters.
const PURPOSE_CHARS: usize = 60;

/// Prompt templates and few-shot examples, embedded.
const SYSTEM_TEMPLATE: &str = include_str!("../../prompts/system.j2");
const QUESTION_TEMPLATE: &str = include_str!("../../prompts/question.j2");
const EXAMPLES: &str = include_str!("../../prompts/examples.toml");

#[derive(Deserialize)]
struct Examples {
    example: Vec<ExampleEntry>,
}

#[derive(Deserialize, serde::Serialize)]
struct ExampleEntry {
    question: String,
    /// The problem the example was shown.
    problem: String,
    /// The candidate commands the example was shown (`command   # purpose`).
    candidates: Vec<String>,
    reply: String,
}

/// The reply as the grammar shapes it.
#[derive(Deserialize)]
struct RawReply {
    commands: Vec<String>,
}

/// Options for loading the local model.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// NAME|PATH of the model; the registry's default when `None`.
    pub model: Option<String>,
    /// CPU threads.
    pub threads: usize,
    /// Show a progress bar if the model must be downloaded.
    pub progress: bool,
    /// Set to stop a generation early (Ctrl-C).
    pub cancel: Arc<AtomicBool>,
    /// Where the model runs (auto: an idle GPU with room, else the CPU;
    /// [`Assistant::model_name`] says which, and why when it fell back).
    pub device: DeviceChoice,
    /// Verify drafts of the model's choices in one batch: the same replies
    /// as plain decoding on the same kernels, in fewer model calls. That
    /// needs batch-invariant kernels (weights not repacked, batches of 2 to
    /// 7 tokens), which on a 2-core VM cost more time than the calls save
    /// (`docs/PERFORMANCE.md`), so it is off by default. CPU only: a model
    /// on a GPU decodes plainly.
    pub speculate: bool,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            model: None,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get().min(8)),
            progress: true,
            cancel: Arc::new(AtomicBool::new(false)),
            device: DeviceChoice::default(),
            speculate: false,
        }
    }
}

/// The local model, ready to answer.
pub struct LocalAssistant {
    name: String,
    tokenizer: Arc<Tokenizer>,
    session: Session<'static>,
    /// Compiles each question's reply grammar (its candidates differ).
    factory: ParserFactory,
    /// Tokens of the static prefix; its KV rows stay in the session.
    prefix: Vec<u32>,
    /// The last question's dynamic part, whose KV rows follow the prefix's
    /// in the session: the next question re-evaluates only where it
    /// differs (the node and what else they share stay cached).
    cached: Vec<u32>,
    /// The template text after the user message (end of turn, assistant header).
    suffix: String,
    env: minijinja::Environment<'static>,
    cancel: Arc<AtomicBool>,
    /// Whether the session decodes batch-invariantly (set at load, with
    /// [`LocalOptions::speculate`]).
    invariant: bool,
    /// Whether decoding verifies drafts (needs `invariant`).
    speculate: bool,
    /// Seconds spent evaluating the prefix at load (0 when loaded from disk).
    pub prefix_eval_s: f64,
}

impl LocalAssistant {
    /// Loads the model (pulling the default one on first use), compiles the
    /// reply grammar, and restores or computes the static prefix's KV cache.
    pub fn load(opts: &LocalOptions) -> anyhow::Result<LocalAssistant> {
        let registry = crate::engine::registry::Registry::load()?;
        let path = registry.locate(opts.model.as_deref(), opts.progress)?;
        let gguf = GgufFile::open(&path)?;
        let tokenizer = Arc::new(Tokenizer::from_gguf(&gguf)?);
        let template = ChatTemplate::from_gguf(&gguf, &tokenizer)?;
        let device = opts
            .device
            .select_for(&gguf, CacheTypes::default(), N_CTX)?;
        let model = Model::load_on(
            &gguf,
            &LoadOptions {
                n_threads: opts.threads,
                // Speculation needs batch invariance (see `decode`).
                repacked_weights: !opts.speculate,
            },
            device.placement,
        )?;
        // The model lives as long as the process; the session borrows it.
        let model: &'static Model = Box::leak(Box::new(model));
        let n_logits = model.hparams().n_vocab;
        let session = Session::new(model, N_CTX)?;
        // Exact only where the session computes each position the same in
        // any batch: on the CPU, weights not repacked (no GPU was lent to
        // find such settings there).
        let invariant = opts.speculate && session.can_be_batch_invariant();

        let env = prompt_environment()?;
        let examples: Examples = toml::from_str(EXAMPLES).context("prompts/examples.toml")?;
        let system = env
            .get_template("system")?
            .render(minijinja::context! { examples => minijinja::Value::from(minijinja::value::Serde(&examples.example)) })?;
        let rendered = template.render(&[Message::system(system), Message::user(SPLIT)], true)?;
        let (prefix_text, suffix) = rendered
            .split_once(SPLIT)
            .context("the chat template dropped the user message")?;
        let prefix = tokenizer.encode(prefix_text, true)?;

        let tok_env = token_env(&tokenizer, n_logits)?;
        let factory = ParserFactory::new_simple(&tok_env)?;

        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |f| f.to_string_lossy().into_owned(),
        );
        let name = format!("{name} on {}", device.short());
        let mut me = LocalAssistant {
            name,
            tokenizer,
            session,
            factory,
            prefix,
            cached: Vec::new(),
            suffix: suffix.to_string(),
            env,
            cancel: opts.cancel.clone(),
            invariant,
            speculate: invariant,
            prefix_eval_s: 0.0,
        };
        me.restore_prefix(&path)?;
        Ok(me)
    }

    /// Turns drafting on or off in an assistant loaded with
    /// [`LocalOptions::speculate`] (it stays batch-invariant: off, it
    /// decodes plainly on the same kernels).
    pub fn set_speculation(&mut self, on: bool) {
        self.speculate = on && self.invariant;
    }

    /// Loads the static prefix's KV cache from disk, or evaluates it and
    /// saves it for next time. A cache that cannot be written is not an
    /// error: it only costs the next start the same prefill.
    fn restore_prefix(&mut self, model_path: &Path) -> anyhow::Result<()> {
        let file = prefix_cache_file(model_path, &self.prefix);
        let n = self.prefix.len();
        if let Some(data) = file.as_ref().and_then(|f| std::fs::read(f).ok())
            && self.session.import_prefix(n, &data).is_ok()
        {
            return Ok(());
        }
        let t = Instant::now();
        self.session.reset();
        self.session.eval(&self.prefix)?;
        self.prefix_eval_s = t.elapsed().as_secs_f64();
        if let Some(file) = file {
            let data = self.session.export_prefix(n)?;
            let _ = write_atomic(&file, &data);
        }
        Ok(())
    }

    /// Greedy decoding under the grammar, from the logits of the prompt.
    /// Tokens the grammar forces are evaluated in one batch with the chosen
    /// token before them. With speculation, so is a draft of the choices
    /// after them, guessed among `guesses` ([`speculate`]): the batch's
    /// logits at each drafted choice verify it, and the first the model
    /// would not make is cut from the cache and replaced by the model's
    /// own. The session computes each position as any batch would
    /// ([`Session::set_batch_invariant`]), so the tokens are those of plain
    /// decoding.
    fn decode(
        &mut self,
        mut matcher: Matcher,
        mut guesses: speculate::Guesses,
    ) -> anyhow::Result<Decoded> {
        let trie = self.factory.tok_env().tok_trie().clone();
        let mut out = Decoded::default();
        let mut text = Vec::new();
        let mut logits = self.session.logits().to_vec();
        let n_vocab = logits.len();
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                bail!("generation cancelled");
            }
            let mut next: Vec<u32> = matcher.consume_ff_tokens();
            let mut n_chosen = 0;
            if next.is_empty() {
                if matcher.is_stopped() {
                    break;
                }
                if self.speculate {
                    guesses.observe(&text, &matcher, &trie, &logits);
                }
                let Some(t) = self.choose(&mut matcher, &logits)? else {
                    break;
                };
                matcher
                    .consume_token(t)
                    .map_err(|e| anyhow::anyhow!("grammar: {e}"))?;
                next.push(t);
                n_chosen = 1;
                if !matcher.is_stopped() {
                    next.extend(matcher.consume_ff_tokens());
                }
            }
            out.push(&next, n_chosen, &self.tokenizer, &mut text);
            if matcher.is_stopped() {
                break;
            }
            if out.tokens.len() > MAX_REPLY_TOKENS {
                out.cut_short = true;
                break;
            }
            let draft = match self.speculate {
                true => guesses.draft(&text, &matcher, &trie),
                false => speculate::Draft::default(),
            };
            // Logits after `next` (predicting the first drafted choice), before
            // each later drafted choice, and after the draft unless it ends
            // the reply.
            let batch = [next.as_slice(), &draft.tokens[..draft.n_eval]].concat();
            let mut rows: Vec<usize> = draft.choices.iter().map(|&c| next.len() + c - 1).collect();
            let ends_reply = draft.n_eval < draft.tokens.len();
            if !ends_reply {
                rows.push(batch.len() - 1);
                rows.dedup();
            }
            if self.session.n_past() + batch.len() >= self.session.n_ctx() {
                bail!(
                    "the reply does not fit the model's context ({} tokens)",
                    self.session.n_ctx()
                );
            }
            let all = self.session.eval_rows(&batch, &rows)?.to_vec();
            out.steps += self.session.graphs_for(batch.len());
            out.drafted += draft.choices.len();
            let row = |k: usize| &all[k * n_vocab..(k + 1) * n_vocab];
            logits = row(rows.len() - 1).to_vec();
            for k in 0..draft.choices.len() {
                let segment = draft.segment(k);
                guesses.observe(&text, &matcher, &trie, row(k));
                if self.choose(&mut matcher, row(k))? != Some(segment[0]) {
                    // The model chooses otherwise here: forget the draft from
                    // this choice on and decode on from its logits.
                    let unverified = draft.n_eval - draft.choices[k];
                    self.session.truncate(self.session.n_past() - unverified);
                    logits = row(k).to_vec();
                    break;
                }
                matcher
                    .consume_tokens(segment)
                    .map_err(|e| anyhow::anyhow!("grammar: {e}"))?;
                out.accepted += 1;
                out.push(segment, 1, &self.tokenizer, &mut text);
            }
            if matcher.is_stopped() {
                break;
            }
        }
        out.text = String::from_utf8_lossy(&text).into_owned();
        Ok(out)
    }

    /// The highest-scoring token the grammar allows after `logits`; `None`
    /// when that is the end of the text. The unconstrained favourite is
    /// tried first: when the grammar allows it, it is also the constrained
    /// favourite, and checking one token costs far less than computing the
    /// mask over the whole vocabulary.
    fn choose(&self, matcher: &mut Matcher, logits: &[f32]) -> anyhow::Result<Option<u32>> {
        let grammar = |e: anyhow::Error| anyhow::anyhow!("grammar: {e}");
        if let Some(best) = argmax(logits, |_| true)
            && !self.tokenizer.is_end(best)
            && matcher.validate_tokens(&[best]).map_err(grammar)? == 1
        {
            return Ok(Some(best));
        }
        let mask = matcher.compute_mask().map_err(grammar)?;
        Ok(argmax(logits, |t| mask.is_allowed(t)).filter(|&t| !self.tokenizer.is_end(t)))
    }
}

/// The highest of `logits` among the tokens `allowed` lets through (the
/// last one on ties).
fn argmax(logits: &[f32], allowed: impl Fn(u32) -> bool) -> Option<u32> {
    logits
        .iter()
        .enumerate()
        .filter(|(i, _)| allowed(*i as u32))
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i as u32)
}

/// What the decode loop produced.
#[derive(Default)]
struct Decoded {
    /// The reply text.
    text: String,
    /// Every generated token, in order.
    tokens: Vec<u32>,
    /// Whether the grammar forced each token (the model chose the others).
    forced: Vec<bool>,
    /// Model evaluations (graphs computed) after the prompt's.
    steps: usize,
    /// Choices drafted, and those of them the model made.
    drafted: usize,
    accepted: usize,
    /// The token budget ran out before the reply ended.
    cut_short: bool,
}

impl Decoded {
    /// Appends `tokens`, the first `n_chosen` of them chosen by the model
    /// and the rest forced, with their bytes to `text`.
    fn push(&mut self, tokens: &[u32], n_chosen: usize, tokenizer: &Tokenizer, text: &mut Vec<u8>) {
        for (i, &t) in tokens.iter().enumerate() {
            if let Some(b) = tokenizer.token_bytes(t) {
                text.extend(b);
            }
            self.tokens.push(t);
            self.forced.push(i >= n_chosen);
        }
    }
}

impl Assistant for LocalAssistant {
    fn ask(
        &mut self,
        node: NodeContext<'_>,
        history: &[Turn],
        question: &str,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> anyhow::Result<Reply> {
        let start = Instant::now();
        self.cancel.store(false, Ordering::Relaxed);
        let seen = observations(history);
        if !seen.is_empty() {
            // After commands ran, the answer is the diagnosis from what they
            // showed. The model's own conclusion was measured and is not
            // used: it repeated the diagnosis or contradicted it
            // (docs/EVAL.md, diagnosis track).
            return self.plan(node, history, question, on_event);
        }
        let candidates = rank::rank(question, node.snapshot, node.findings, N_CANDIDATES);
        let mut diagnosis = diagnose::diagnose(question, node, &seen);
        diagnosis.held_back = rank::held_back(question, node.snapshot, &candidates);
        let notes = diagnosis.text();
        let user = user_message(&self.env, node, history, question, &candidates, &diagnosis)?;
        let commands: Vec<String> = candidates.iter().map(|c| c.command.clone()).collect();
        // The diagnosis is the answer, shown at once; the model chooses the
        // commands that show the evidence.
        on_event(Event::AnswerText(&notes));
        let first_token_ms = Some(start.elapsed().as_secs_f64() * 1e3);
        let generated = self.generate(&user, &commands, start)?;
        // A candidate's purpose is the catalogue's, whole.
        let mut proposals: Vec<Proposal> = generated
            .commands()?
            .into_iter()
            .filter_map(|c| candidates.iter().find(|r| r.command == c))
            .map(|r| {
                Proposal::new(
                    r.command.clone(),
                    context::short_purpose(&r.purpose, PURPOSE_CHARS),
                )
            })
            .collect();
        diagnosis.add_checks(&mut proposals, &seen);
        Ok(Reply {
            answer: notes,
            proposals,
            model: self.name.clone(),
            timings: self.timings(&generated, start, first_token_ms),
        })
    }

    /// Before commands run, and after they ran: the checks' diagnosis and
    /// the ranked commands not run yet, as `--model none` gives them.
    fn plan(
        &mut self,
        node: NodeContext<'_>,
        history: &[Turn],
        question: &str,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> anyhow::Result<Reply> {
        let mut reply =
            super::retrieval::RetrievalAssistant.ask(node, history, question, on_event)?;
        reply.model.clone_from(&self.name);
        Ok(reply)
    }

    fn model_name(&self) -> &str {
        &self.name
    }
}

/// One generation: the prompt's dynamic part, the reply the grammar shaped,
/// and when the prefill ended.
struct Generated {
    /// What the decode loop produced.
    decoded: Decoded,
    /// Tokens of the dynamic part of the prompt.
    dynamic: Vec<u32>,
    /// Of those, the leading ones the last question had cached.
    reused: usize,
    /// Milliseconds from the question to the end of the prefill.
    prefill_ms: f64,
}

impl Generated {
    /// The commands the reply chose.
    fn commands(&self) -> anyhow::Result<Vec<String>> {
        let text = &self.decoded.text;
        if self.decoded.cut_short {
            bail!("the model's reply was cut short: {text}");
        }
        let raw: RawReply = serde_json::from_str(text)
            .with_context(|| format!("the model's reply is not the expected JSON: {text}"))?;
        Ok(raw.commands)
    }
}

impl LocalAssistant {
    /// Prefills `user` after the cached static prefix, keeping what it
    /// shares with the last question's, and decodes a reply choosing among
    /// `candidates` under the reply grammar.
    fn generate(
        &mut self,
        user: &str,
        candidates: &[String],
        start: Instant,
    ) -> anyhow::Result<Generated> {
        let dynamic = self
            .tokenizer
            .encode(&format!("{user}{}", self.suffix), false)?;
        // At least the last token is evaluated: its logits start the reply.
        // With batch invariance the last one is evaluated on its own, from
        // which on each position is computed as any batch would compute
        // it: the reply does not depend on how much of the prompt was
        // cached, and a draft verified in one batch chooses what one step
        // at a time would have.
        let last = dynamic.len().saturating_sub(1);
        let reused = shared_len(&self.cached, &dynamic).min(last);
        self.cached.clear();
        self.session.truncate(self.prefix.len() + reused);
        let split = if self.invariant { last } else { dynamic.len() };
        if reused < split {
            self.session.eval(&dynamic[reused..split])?;
        }
        self.session.set_batch_invariant(self.invariant);
        let decoded = self.reply_after(&dynamic[split..], candidates, start);
        self.session.set_batch_invariant(false);
        let (decoded, prefill_ms) = decoded?;
        self.cached.clone_from(&dynamic);
        Ok(Generated {
            decoded,
            dynamic,
            reused,
            prefill_ms,
        })
    }

    /// Evaluates `rest`, the prompt's tokens not yet evaluated (none if
    /// all were), and decodes a reply choosing among `candidates` under
    /// the reply grammar; also returns the milliseconds from `start` to the
    /// end of the prompt.
    fn reply_after(
        &mut self,
        rest: &[u32],
        candidates: &[String],
        start: Instant,
    ) -> anyhow::Result<(Decoded, f64)> {
        if !rest.is_empty() {
            self.session.eval(rest)?;
        }
        let prefill_ms = start.elapsed().as_secs_f64() * 1e3;
        let lark = grammar::reply_grammar(candidates);
        let matcher = Matcher::new(Ok(self
            .factory
            .create_parser(TopLevelGrammar::from_lark(lark))?));
        let decoded = self.decode(matcher, speculate::Guesses::new(candidates))?;
        Ok((decoded, prefill_ms))
    }

    /// The timings of a reply whose generation was `generated`.
    fn timings(
        &self,
        generated: &Generated,
        start: Instant,
        first_token_ms: Option<f64>,
    ) -> Timings {
        let total_ms = start.elapsed().as_secs_f64() * 1e3;
        let decode_ms = (total_ms - generated.prefill_ms).max(1e-3);
        let d = &generated.decoded;
        Timings {
            prefill_ms: generated.prefill_ms,
            first_token_ms: first_token_ms.unwrap_or(total_ms),
            total_ms,
            tokens_per_s: d.tokens.len() as f64 / (decode_ms / 1e3),
            prompt_tokens: generated.dynamic.len() - generated.reused,
            reused_prompt_tokens: generated.reused,
            generated_tokens: d.tokens.len(),
            sampled_tokens: d.forced.iter().filter(|f| !**f).count(),
            drafted_tokens: d.drafted,
            accepted_tokens: d.accepted,
            decode_steps: d.steps,
        }
    }
}

/// How many leading tokens `a` and `b` share.
fn shared_len(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The user message for `question`: the dynamic part of the prompt, with
/// the diagnosis so far, what the commands that ran showed, and the
/// candidate commands the reply chooses from (none after commands ran).
fn user_message(
    env: &minijinja::Environment<'static>,
    node: NodeContext<'_>,
    history: &[Turn],
    question: &str,
    candidates: &[Reference],
    diagnosis: &Diagnosis,
) -> anyhow::Result<String> {
    let refs: Vec<minijinja::Value> = candidates
        .iter()
        .map(|r| minijinja::context! { command => r.command.clone(), purpose => context::short_purpose(&r.purpose, PURPOSE_CHARS) })
        .collect();
    Ok(env.get_template("question")?.render(minijinja::context! {
        node => context::render_node(node.snapshot, node.findings, NODE_CHARS),
        problem => diagnosis.headline(),
        candidates => refs,
        history => render_history(history, question),
        question => question,
    })?)
}

/// The prompt templates from `prompts/`.
fn prompt_environment() -> anyhow::Result<minijinja::Environment<'static>> {
    let mut env = minijinja::Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .build()
            .map_err(|e| anyhow::anyhow!("prompt template syntax: {e}"))?,
    );
    env.add_template("system", SYSTEM_TEMPLATE)?;
    env.add_template("question", QUESTION_TEMPLATE)?;
    Ok(env)
}

/// Earlier turns for the prompt: the last few, each output cut to its
/// lines most relevant to `question`.
fn render_history(history: &[Turn], question: &str) -> String {
    const KEEP: usize = 4;
    const OUTPUT_CHARS: usize = 600;
    let mut out = String::new();
    for turn in history.iter().rev().take(KEEP).rev() {
        match turn {
            Turn::User(q) => out.push_str(&format!("Operator: {q}\n")),
            Turn::Assistant(a) => out.push_str(&format!("Sigma: {a}\n")),
            Turn::CommandOutput {
                command,
                exit_code,
                output,
                ..
            } => {
                let shown = context::relevant_output(output, question, OUTPUT_CHARS);
                let code = exit_code.map_or("killed".to_string(), |c| c.to_string());
                out.push_str(&format!("Output of `{command}` (exit {code}):\n{shown}\n"));
            }
        }
    }
    out
}

/// The tokenizer as llguidance sees it: every token's bytes (special tokens
/// marked with 0xFF), the end-of-turn token as end of sequence.
fn token_env(tokenizer: &Arc<Tokenizer>, n_logits: usize) -> anyhow::Result<toktrie::TokEnv> {
    let n = n_logits.max(tokenizer.n_vocab());
    let words: Vec<Vec<u8>> = (0..n as u32)
        .map(|id| match tokenizer.token_bytes(id) {
            Some(b) if tokenizer.is_special(id) => [&[0xffu8][..], &b].concat(),
            Some(b) => b,
            None => Vec::new(),
        })
        .collect();
    let eos = tokenizer
        .eot()
        .or(tokenizer.eos())
        .context("the model has no end-of-turn or end-of-sequence token")?;
    let info = toktrie::TokRxInfo {
        vocab_size: n as u32,
        tok_eos: eos,
        tok_bos: tokenizer.bos(),
        tok_pad: None,
        tok_unk: None,
        tok_end_of_turn: tokenizer.eot(),
    };
    let trie = toktrie::TokTrie::from(&info, &words);
    Ok(Arc::new(TokEnv {
        trie,
        tokenizer: tokenizer.clone(),
    }))
}

/// [`toktrie::TokenizerEnv`] over our tokenizer.
struct TokEnv {
    trie: toktrie::TokTrie,
    tokenizer: Arc<Tokenizer>,
}

impl toktrie::TokenizerEnv for TokEnv {
    fn tok_trie(&self) -> &toktrie::TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<toktrie::TokenId> {
        match std::str::from_utf8(s) {
            Ok(text) => self
                .tokenizer
                .encode(text, false)
                .unwrap_or_else(|_| self.trie.greedy_tokenize(s)),
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}

/// Where the prefix KV cache of `model_path` with `prefix` lives: keyed by
/// the model file (path, size, modification time) and the prefix tokens, so
/// a changed prompt or model never loads a stale cache.
fn prefix_cache_file(model_path: &Path, prefix: &[u32]) -> Option<PathBuf> {
    use sha2::{Digest, Sha256};
    let meta = std::fs::metadata(model_path).ok()?;
    let mut h = Sha256::new();
    h.update(
        std::fs::canonicalize(model_path)
            .ok()?
            .to_string_lossy()
            .as_bytes(),
    );
    h.update(meta.len().to_le_bytes());
    if let Ok(m) = meta.modified()
        && let Ok(d) = m.duration_since(std::time::UNIX_EPOCH)
    {
        h.update(d.as_nanos().to_le_bytes());
    }
    for t in prefix {
        h.update(t.to_le_bytes());
    }
    let key: String = h
        .finalize()
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect();
    let dirs = directories::ProjectDirs::from("", "", "sigma")?;
    Some(dirs.cache_dir().join("prefix").join(format!("{key}.kv")))
}

/// Writes through a temporary file and a rename, so a crash never leaves a
/// half-written cache that looks complete.
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, data)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dynamic_prompt_of_every_shipped_scenario_fits_its_budget() {
        let env = prompt_environment().unwrap();
        let mut longest = (0, String::new());
        for s in crate::eval::scenario::builtin().scenarios {
            let findings = crate::checks::run_all(&s.node.snapshot);
            let node = NodeContext {
                snapshot: &s.node.snapshot,
                findings: &findings,
            };
            let candidates = rank::rank(&s.question, node.snapshot, node.findings, N_CANDIDATES);
            let diagnosis = diagnose::diagnose(&s.question, node, &[]);
            let text = user_message(&env, node, &[], &s.question, &candidates, &diagnosis).unwrap();
            if std::env::var_os("SIGMA_SHOW_PROMPTS").is_some() {
                println!("=== {} ({} chars)\n{text}", s.id, text.len());
            }
            if text.len() > longest.0 {
                longest = (text.len(), s.id.clone());
            }
        }
        // About 0.35 tokens a character: the longest stays near 450 tokens
        // (the median is about 300), which keeps the first token within 4 s.
        assert!(longest.0 <= 1400, "{longest:?}");
    }
}
