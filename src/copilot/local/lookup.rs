//! Prompt-lookup speculation, measured on a finished reply.
//!
//! Replies copy long stretches from their context (command lines from the
//! reference commands and findings, field names, GPU indexes). A
//! prompt-lookup draft guesses the next tokens as the continuation of the
//! last n-gram where it occurred earlier in the prompt or the reply; a
//! speculative decoder would verify such a draft in one batch and keep the
//! tokens the model agrees with. Verifying needs the logits of every
//! position of the batch, which the engine's `Session::eval` does not return
//! (only the last position's), so this module only measures what a draft
//! would have predicted, replaying the decode on the tokens it produced.

/// Longest n-gram looked up (the last 3 tokens, then 2, then 1).
const MAX_NGRAM: usize = 3;
/// Tokens drafted per step.
const MAX_DRAFT: usize = 8;

/// What prompt-lookup speculation would have done on one reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupStats {
    /// Tokens the model chose (not forced by the grammar).
    pub sampled: usize,
    /// Of those, the ones an accepted draft token would have supplied.
    pub predicted: usize,
    /// Model evaluations with speculation: one per step, a step being a
    /// chosen token with the draft tokens verified after it and any forced
    /// tokens that follow.
    pub steps: usize,
}

/// The draft for what follows `seq`: up to `MAX_DRAFT` tokens after the
/// latest earlier occurrence of its last `n` tokens, trying `n` from
/// `MAX_NGRAM` down to 1. Empty when nothing matches.
pub fn draft(seq: &[u32]) -> &[u32] {
    for n in (1..=MAX_NGRAM.min(seq.len())).rev() {
        let tail = &seq[seq.len() - n..];
        // Latest occurrence that ends before the tail itself.
        let found = (0..seq.len() - n)
            .rev()
            .find(|&start| &seq[start..start + n] == tail);
        if let Some(start) = found {
            let from = start + n;
            return &seq[from..(from + MAX_DRAFT).min(seq.len())];
        }
    }
    &[]
}

/// Replays a reply of `tokens` (with `forced[i]` true where the grammar
/// forced token `i`) after `context` (the whole prompt), drafting at every
/// chosen token.
pub fn replay(context: &[u32], tokens: &[u32], forced: &[bool]) -> LookupStats {
    let mut seq: Vec<u32> = context.to_vec();
    let mut stats = LookupStats {
        sampled: forced.iter().filter(|f| !**f).count(),
        ..LookupStats::default()
    };
    let is_forced = |i: usize| forced.get(i).copied().unwrap_or(false);
    let mut i = 0;
    while i < tokens.len() {
        stats.steps += 1;
        if !is_forced(i) {
            // The model chooses token i from the last logits; the draft after
            // it is verified in the same batch.
            seq.push(tokens[i]);
            i += 1;
            let guess = draft(&seq).to_vec();
            for g in guess {
                if i >= tokens.len() || tokens[i] != g {
                    break;
                }
                if !is_forced(i) {
                    stats.predicted += 1;
                }
                seq.push(tokens[i]);
                i += 1;
            }
        }
        // Forced tokens join the batch.
        while i < tokens.len() && is_forced(i) {
            seq.push(tokens[i]);
            i += 1;
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draft_continues_the_latest_match_of_the_longest_ngram() {
        // "1 2 3 4 5 ... 1 2 3" continues with "4 5".
        assert_eq!(draft(&[1, 2, 3, 4, 5, 9, 1, 2, 3]), &[4, 5, 9, 1, 2, 3]);
        // Only the last token matches: continue after its latest occurrence.
        assert_eq!(draft(&[7, 8, 7, 6, 9, 7]), &[6, 9, 7]);
        assert!(draft(&[1, 2, 3]).is_empty());
        assert!(draft(&[]).is_empty());
    }

    #[test]
    fn a_copied_command_is_predicted_and_needs_fewer_steps() {
        let context = [10, 11, 12, 13, 14, 15, 16];
        // The model chooses 11 and then copies 12..16 from the context.
        let tokens = [11, 12, 13, 14, 15, 16];
        let stats = replay(&context, &tokens, &[false; 6]);
        assert_eq!(stats.sampled, 6);
        assert_eq!(stats.predicted, 5);
        assert_eq!(stats.steps, 1);
    }

    #[test]
    fn new_text_is_not_predicted_and_forced_runs_join_a_step() {
        let tokens = [40, 41, 1, 2, 42];
        let forced = [false, false, true, true, false];
        let stats = replay(&[10, 20], &tokens, &forced);
        assert_eq!(stats.sampled, 3);
        assert_eq!(stats.predicted, 0);
        // 40 | 41 + forced 1 2 | 42
        assert_eq!(stats.steps, 3);
    }
}
