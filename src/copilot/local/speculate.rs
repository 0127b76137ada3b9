//! Drafts for speculative decoding of a reply.
//!
//! A reply chooses among candidate commands the prompt lists best first
//! ([`grammar`]); the model chooses a token or two per command and the
//! grammar forces the rest. A draft guesses the model's next choices: the
//! tokens that spell the likeliest reply from here, each choice followed by
//! the tokens the grammar then forces. The decoder evaluates a draft in one
//! batch with the tokens before it and keeps the drafted choices the model
//! makes itself ([`super::LocalAssistant`]); the first it would not make
//! ends the draft, and the model's own choice there is taken instead, so
//! the reply is the one plain decoding gives.
//!
//! The likeliest reply lists as many commands as the grammar allows (the
//! models measured nearly always do), in the order of the model's own
//! preference where its logits have shown one: when it chose a command, the
//! logits of the others' first tokens rank them for the next place (the
//! runner-up is the likeliest next). Candidates it has not yet weighed
//! follow in the prompt's order.

use std::ops::Range;

use llguidance::Matcher;
use toktrie::TokTrie;

use crate::copilot::grammar;

/// Most choices drafted in one batch.
const MAX_DRAFT_CHOICES: usize = 12;
/// Most drafted tokens evaluated in one batch. On a CPU a small model's
/// batch costs about as much per token as a decode step costs in all
/// (measured: SmolLM2-135M, 2 cores, ~13 ms a token after a 1.2k-token
/// prompt, ~20 ms a one-token step), so a wrong guess followed by a
/// command's forced tokens costs more than a right one saves: a draft
/// carries the short stretches (the comma before the next command, the
/// choice that ends the reply) and stops before a long one.
const MAX_DRAFT_EVAL: usize = 4;

/// Tokens to evaluate after the reply so far, guessing the model's next
/// choices.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Draft {
    /// The drafted tokens: each choice, then the tokens the grammar forces
    /// after it.
    pub tokens: Vec<u32>,
    /// Where each drafted choice is in `tokens` (the first is at 0).
    pub choices: Vec<usize>,
    /// The leading tokens to evaluate: those after end the reply, forced,
    /// and nothing needs their logits.
    pub n_eval: usize,
}

impl Draft {
    /// The tokens of drafted choice `k` and the forced ones after it.
    pub fn segment(&self, k: usize) -> &[u32] {
        let end = self
            .choices
            .get(k + 1)
            .copied()
            .unwrap_or(self.tokens.len());
        &self.tokens[self.choices[k]..end]
    }
}

/// One reply the grammar allows: its text, and where each command is in it.
#[derive(Debug)]
struct Guess {
    text: Vec<u8>,
    /// Candidate indexes, in reply order.
    commands: Vec<usize>,
    /// Byte range of each command's JSON string in `text`.
    spans: Vec<Range<usize>>,
}

impl Guess {
    fn new(commands: Vec<usize>, candidates: &[String]) -> Guess {
        let chosen: Vec<String> = commands.iter().map(|&i| candidates[i].clone()).collect();
        let (text, spans) = grammar::reply_text(&chosen);
        let text = text.into_bytes();
        Guess {
            text,
            commands,
            spans,
        }
    }

    /// The bytes this reply has after `so_far`; empty when `so_far` left it.
    fn remaining(&self, so_far: &[u8]) -> &[u8] {
        self.text.strip_prefix(so_far).unwrap_or_default()
    }
}

/// The replies a draft may guess, and the model's preferences among the
/// candidates as its choices reveal them.
pub struct Guesses {
    list: Vec<Guess>,
    /// Per candidate: the logit of its first token where the model last
    /// chose a command among it and others (`None`: not weighed yet).
    preference: Vec<Option<f32>>,
}

impl Guesses {
    /// The replies choosing among `candidates`.
    pub fn new(candidates: &[String]) -> Guesses {
        Guesses {
            list: grammar::choices(candidates.len())
                .into_iter()
                .map(|c| Guess::new(c, candidates))
                .collect(),
            preference: vec![None; candidates.len()],
        }
    }

    /// Notes the model's `logits` at a choice after `so_far` (`matcher` at
    /// that point): where replies differ in which command comes next, the
    /// logit of each one's next token is its preference.
    pub fn observe(&mut self, so_far: &[u8], matcher: &Matcher, trie: &TokTrie, logits: &[f32]) {
        let mut m = matcher.deep_clone();
        for g in &self.list {
            let rest = g.remaining(so_far);
            let Some(slot) = g.spans.iter().position(|s| s.contains(&so_far.len())) else {
                continue;
            };
            if rest.is_empty() {
                continue;
            }
            if let Some(t) = longest_allowed(&mut m, trie, rest) {
                self.preference[g.commands[slot]] = logits.get(t as usize).copied();
            }
        }
    }

    /// The draft that continues `matcher` (at a choice point: no forced
    /// token pending) after the reply `so_far`, along the likeliest reply
    /// that begins with it. Each drafted choice is the longest token the
    /// grammar allows that spells the next bytes; drafting stops after
    /// [`MAX_DRAFT_CHOICES`] choices, before the evaluated draft would pass
    /// [`MAX_DRAFT_EVAL`] tokens, or where the grammar leaves the guess.
    /// `matcher` itself is left as it is.
    pub fn draft(&self, so_far: &[u8], matcher: &Matcher, trie: &TokTrie) -> Draft {
        self.draft_within(so_far, matcher, trie, MAX_DRAFT_EVAL)
    }

    /// [`draft`](Self::draft) with at most `max_eval` evaluated tokens.
    fn draft_within(
        &self,
        so_far: &[u8],
        matcher: &Matcher,
        trie: &TokTrie,
        max_eval: usize,
    ) -> Draft {
        let mut out = Draft::default();
        let Some(guess) = self.likeliest(so_far) else {
            return out;
        };
        let mut m = matcher.deep_clone();
        let mut rest = guess.remaining(so_far);
        while !rest.is_empty() && out.choices.len() < MAX_DRAFT_CHOICES && !m.is_stopped() {
            let Some(choice) = longest_allowed(&mut m, trie, rest) else {
                break;
            };
            if m.consume_token(choice).is_err() {
                break;
            }
            let forced = if m.is_stopped() {
                Vec::new()
            } else {
                m.consume_ff_tokens()
            };
            // A choice the grammar forces to the end needs no evaluation
            // (only the row before it, already in the batch).
            let n_eval = match m.is_stopped() {
                true => out.n_eval,
                false => out.tokens.len() + 1 + forced.len(),
            };
            if n_eval > max_eval {
                break;
            }
            out.choices.push(out.tokens.len());
            out.tokens.push(choice);
            out.tokens.extend(&forced);
            out.n_eval = n_eval;
            rest = &rest[trie.token_len(choice)..];
            match rest.strip_prefix(trie.decode_raw(&forced).as_slice()) {
                Some(r) => rest = r,
                // The grammar went another way than the guess: what it
                // forced still belongs to the draft, but nothing after it.
                None => break,
            }
        }
        out
    }

    /// The likeliest reply that continues `so_far`: the most commands, then
    /// the preferred ones first (unweighed ones in the prompt's order).
    fn likeliest(&self, so_far: &[u8]) -> Option<&Guess> {
        let rank = |c: usize| match self.preference[c] {
            Some(logit) => (0, -logit, c),
            None => (1, 0.0, c),
        };
        self.list
            .iter()
            .filter(|g| !g.remaining(so_far).is_empty())
            .min_by(|a, b| {
                b.commands.len().cmp(&a.commands.len()).then_with(|| {
                    let ka = a.commands.iter().map(|&c| rank(c));
                    let kb = b.commands.iter().map(|&c| rank(c));
                    ka.partial_cmp(kb).unwrap_or(std::cmp::Ordering::Equal)
                })
            })
    }
}

/// The longest token spelling the start of `bytes` that `m` allows next.
fn longest_allowed(m: &mut Matcher, trie: &TokTrie, bytes: &[u8]) -> Option<u32> {
    trie.all_prefixes(bytes)
        .into_iter()
        .rev()
        .find(|&t| m.validate_tokens(&[t]).is_ok_and(|n| n == 1))
}

#[cfg(test)]
mod tests {
    use llguidance::ParserFactory;
    use llguidance::api::TopLevelGrammar;

    use super::*;

    /// A matcher for the reply grammar over a byte-level vocabulary (every
    /// byte a token), and its trie.
    fn matcher(candidates: &[String]) -> (Matcher, TokTrie) {
        let env: toktrie::TokEnv = std::sync::Arc::new(toktrie::ApproximateTokEnv::single_byte());
        let factory = ParserFactory::new_simple(&env).expect("factory");
        let lark = grammar::reply_grammar(candidates);
        let parser = factory
            .create_parser(TopLevelGrammar::from_lark(lark))
            .expect("grammar compiles");
        (Matcher::new(Ok(parser)), env.tok_trie().clone())
    }

    fn candidates() -> Vec<String> {
        [
            "nvidia-smi -q -d ECC",
            "nvidia-smi -L",
            "dmesg -T",
            "nvidia-smi",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn with_nothing_weighed_the_draft_is_the_prompt_order() {
        let c = candidates();
        let (mut m, trie) = matcher(&c);
        let so_far = trie.decode_raw(&m.consume_ff_tokens());
        let guesses = Guesses::new(&c);
        let d = guesses.draft_within(&so_far, &m, &trie, usize::MAX);
        let whole = [so_far.as_slice(), &trie.decode_raw(&d.tokens)].concat();
        assert_eq!(whole, grammar::reply_text(&c[..3]).0.into_bytes());
        // Choices: `,` (not `]`) after the first command; `n` (not `d`),
        // then ` ` (`nvidia-smi -L`, not `nvidia-smi`); `,` again; `d`.
        // The rest is forced: the third command ends the list, and is not
        // evaluated.
        assert_eq!(d.choices.len(), 5);
        assert_eq!(d.choices[0], 0);
        assert_eq!(
            d.n_eval, d.choices[4],
            "the last choice is verified, not evaluated"
        );
        let segments: Vec<Vec<u8>> = (0..d.choices.len())
            .map(|k| trie.decode_raw(d.segment(k)))
            .collect();
        assert_eq!(segments.concat(), trie.decode_raw(&d.tokens));
        // Within the budget, only what fits: `,` and the forced ` "` (3
        // tokens here, a byte each); `n` and its forced `vidia-smi` would
        // make 13.
        let short = guesses.draft(&so_far, &m, &trie);
        assert_eq!(trie.decode_raw(&short.tokens), b", \"");
        assert_eq!(short.n_eval, 3);
        // The matcher itself did not move.
        assert!(m.consume_token(u32::from(b']')).is_ok());
    }

    #[test]
    fn the_model_s_runner_up_is_drafted_next() {
        let c = candidates();
        let (mut m, trie) = matcher(&c);
        let mut so_far = trie.decode_raw(&m.consume_ff_tokens());
        m.consume_token(u32::from(b',')).unwrap();
        so_far.extend(b",");
        so_far.extend(trie.decode_raw(&m.consume_ff_tokens()));
        assert!(so_far.ends_with(b", \""));
        // The model prefers `dmesg -T` (its `d`) and then the `n` commands.
        let mut logits = vec![0.0; trie.vocab_size()];
        logits[usize::from(b'd')] = 5.0;
        logits[usize::from(b'n')] = 3.0;
        let mut guesses = Guesses::new(&c);
        guesses.observe(&so_far, &m, &trie, &logits);
        let d = guesses.draft_within(&so_far, &m, &trie, usize::MAX);
        let whole = [so_far.as_slice(), &trie.decode_raw(&d.tokens)].concat();
        let expected = grammar::reply_text(&[c[0].clone(), c[2].clone(), c[1].clone()]).0;
        assert_eq!(String::from_utf8_lossy(&whole), expected);
    }

    #[test]
    fn nothing_is_drafted_off_the_replies_the_grammar_allows() {
        let c = candidates();
        let (mut m, trie) = matcher(&c);
        m.consume_ff_tokens();
        let guesses = Guesses::new(&c);
        assert_eq!(
            guesses.draft(br#"{"commands": ["nvidia-smi -q -d ECC", "x"#, &m, &trie),
            Draft::default()
        );
        let (m, trie) = matcher(&[]);
        assert_eq!(Guesses::new(&[]).draft(b"", &m, &trie), Draft::default());
    }
}
