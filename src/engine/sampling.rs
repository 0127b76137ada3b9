//! Choosing the next token from logits.
//!
//! [`Sampler`] applies, in llama.cpp's order: repetition penalty over the
//! last `repeat_last_n` tokens, then (unless greedy) top-k, top-p, min-p,
//! temperature, and a draw from a seeded ChaCha RNG, so a seed reproduces a
//! run. Temperature 0 means greedy (argmax after the penalty).
//!
//! # Example
//!
//! ```
//! use sigma::engine::sampling::{Sampler, SamplerConfig};
//! let mut s = Sampler::new(SamplerConfig::greedy()).unwrap();
//! assert_eq!(s.sample(&[0.1, 3.0, -1.0]), 1);
//! ```

use std::collections::VecDeque;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// A sampling setting out of range.
#[derive(Debug, thiserror::Error)]
#[error("invalid sampling setting {name} = {value}: {expected}")]
pub struct SamplingError {
    name: &'static str,
    value: String,
    expected: &'static str,
}

/// Sampling settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature; 0 = greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 = off.
    pub top_k: usize,
    /// Keep the smallest set of tokens with this total probability; 1 = off.
    pub top_p: f32,
    /// Drop tokens less likely than this fraction of the best one; 0 = off.
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of recent tokens; 1 = off.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
    /// RNG seed.
    pub seed: u64,
}

impl SamplerConfig {
    /// Pure argmax.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }

    /// llama.cpp's defaults at temperature `temperature`: top-k 40,
    /// top-p 0.95, min-p 0.05, no repetition penalty.
    pub fn with_temperature(temperature: f32, seed: u64) -> Self {
        Self {
            temperature,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            seed,
            ..Self::greedy()
        }
    }

    fn validate(&self) -> Result<(), SamplingError> {
        let err = |name, value: f32, expected| {
            Err(SamplingError {
                name,
                value: value.to_string(),
                expected,
            })
        };
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return err(
                "temperature",
                self.temperature,
                "expected a finite number >= 0",
            );
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return err("top_p", self.top_p, "expected a number in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return err("min_p", self.min_p, "expected a number in [0, 1]");
        }
        if !(self.repeat_penalty > 0.0 && self.repeat_penalty.is_finite()) {
            return err(
                "repeat_penalty",
                self.repeat_penalty,
                "expected a finite number > 0",
            );
        }
        Ok(())
    }
}

/// The index of the largest logit (the first on ties; 0 for empty input).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Picks tokens from logits according to a [`SamplerConfig`].
pub struct Sampler {
    cfg: SamplerConfig,
    rng: ChaCha20Rng,
    recent: VecDeque<u32>,
    /// Working copy of the logits.
    work: Vec<f32>,
    /// Candidate (token, probability) pairs.
    cand: Vec<(u32, f32)>,
}

impl Sampler {
    /// A sampler; out-of-range settings are an error.
    pub fn new(cfg: SamplerConfig) -> Result<Self, SamplingError> {
        cfg.validate()?;
        Ok(Self {
            rng: ChaCha20Rng::seed_from_u64(cfg.seed),
            cfg,
            recent: VecDeque::new(),
            work: Vec::new(),
            cand: Vec::new(),
        })
    }

    /// Records a token of the sequence (prompt or generated) for the
    /// repetition penalty.
    pub fn accept(&mut self, token: u32) {
        if self.cfg.repeat_last_n == 0 {
            return;
        }
        if self.recent.len() == self.cfg.repeat_last_n {
            self.recent.pop_front();
        }
        self.recent.push_back(token);
    }

    /// Chooses the next token (does not [`Sampler::accept`] it).
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        self.work.clear();
        self.work.extend_from_slice(logits);
        if self.cfg.repeat_penalty != 1.0 {
            let mut seen = self.recent.iter().copied().collect::<Vec<_>>();
            seen.sort_unstable();
            seen.dedup();
            for t in seen {
                if let Some(l) = self.work.get_mut(t as usize) {
                    *l = if *l > 0.0 {
                        *l / self.cfg.repeat_penalty
                    } else {
                        *l * self.cfg.repeat_penalty
                    };
                }
            }
        }
        if self.cfg.temperature == 0.0 {
            return argmax(&self.work);
        }

        // candidates sorted by logit, best first, cut to top-k
        self.cand.clear();
        self.cand
            .extend(self.work.iter().enumerate().map(|(i, &l)| (i as u32, l)));
        let k = if self.cfg.top_k == 0 {
            self.cand.len()
        } else {
            self.cfg.top_k.min(self.cand.len())
        };
        if k == 0 {
            return 0;
        }
        if k < self.cand.len() {
            self.cand
                .select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
            self.cand.truncate(k);
        }
        self.cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));

        // probabilities at temperature 1 for top-p and min-p
        softmax(&mut self.cand, 1.0);
        let mut total = 0.0;
        let mut keep = self.cand.len();
        for (i, &(_, p)) in self.cand.iter().enumerate() {
            total += p;
            if total >= self.cfg.top_p {
                keep = i + 1;
                break;
            }
        }
        self.cand.truncate(keep);
        let floor = self.cand[0].1 * self.cfg.min_p;
        self.cand.retain(|&(_, p)| p >= floor);

        // temperature on the surviving logits, then draw
        for c in &mut self.cand {
            c.1 = self.work[c.0 as usize];
        }
        softmax(&mut self.cand, self.cfg.temperature);
        let mut r: f32 = self.rng.random();
        for &(t, p) in &self.cand {
            if r < p {
                return t;
            }
            r -= p;
        }
        self.cand.last().map_or(0, |c| c.0)
    }
}

/// Turns candidate logits (sorted, best first) into probabilities at
/// temperature `t`, in place.
fn softmax(cand: &mut [(u32, f32)], t: f32) {
    let Some(&(_, max)) = cand.first() else {
        return;
    };
    let mut sum = 0.0;
    for c in cand.iter_mut() {
        c.1 = ((c.1 - max) / t).exp();
        sum += c.1;
    }
    for c in cand.iter_mut() {
        c.1 /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_the_largest_logit() {
        let mut s = Sampler::new(SamplerConfig::greedy()).unwrap();
        assert_eq!(s.sample(&[0.5, -2.0, 7.0, 6.9]), 2);
    }

    #[test]
    fn repetition_penalty_changes_the_greedy_choice() {
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 2.0,
            ..SamplerConfig::greedy()
        })
        .unwrap();
        s.accept(2);
        assert_eq!(s.sample(&[0.5, -2.0, 7.0, 6.9]), 3);
    }

    #[test]
    fn same_seed_same_draws_and_top_k_1_is_greedy() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let draw = |seed| {
            let mut s = Sampler::new(SamplerConfig::with_temperature(1.5, seed)).unwrap();
            (0..20).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let mut s = Sampler::new(SamplerConfig {
            top_k: 1,
            ..SamplerConfig::with_temperature(2.0, 1)
        })
        .unwrap();
        assert_eq!(s.sample(&logits), argmax(&logits));
    }

    #[test]
    fn min_p_removes_unlikely_tokens() {
        // token 1 has probability e^-10 relative to token 0: always cut at min_p 0.05
        let mut s = Sampler::new(SamplerConfig {
            min_p: 0.05,
            top_k: 0,
            ..SamplerConfig::with_temperature(1.0, 3)
        })
        .unwrap();
        for _ in 0..100 {
            assert_eq!(s.sample(&[10.0, 0.0]), 0);
        }
    }

    #[test]
    fn bad_settings_are_rejected_with_the_name() {
        let err = Sampler::new(SamplerConfig {
            temperature: -1.0,
            ..SamplerConfig::greedy()
        })
        .err()
        .unwrap();
        assert_eq!(
            err.to_string(),
            "invalid sampling setting temperature = -1: expected a finite number >= 0"
        );
        assert!(
            Sampler::new(SamplerConfig {
                top_p: 0.0,
                ..SamplerConfig::greedy()
            })
            .is_err()
        );
    }
}
