//! Random-weight models for tests and benchmarks (`sigma model tiny`).
//!
//! Every weight is drawn from its own ChaCha stream, seeded by the model seed
//! and the tensor's name, so a tensor's values do not depend on which other
//! tensors exist: a Sigma model and its GQA twin made with one seed share
//! their embeddings and FFNs. Matrices are uniform with variance `1/fan_in`
//! (activations stay near unit scale through the layers); norm weights are
//! `1 +` small noise. The tokenizer is a real one (copied from the tiny
//! default model), so the model runs end to end.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use super::{ConvertError, HfTensor, ModelConfig, TensorSource};
use crate::engine::tokenizer::TokenizerSpec;

/// A random model: its config, tokenizer and seed.
pub struct TinyModel {
    config: ModelConfig,
    tokenizer: TokenizerSpec,
    seed: u64,
}

impl TinyModel {
    /// A model of shape `config` with the vocabulary of `tokenizer` (the
    /// config's `n_vocab` is set from it) and weights drawn from `seed`.
    pub fn new(
        mut config: ModelConfig,
        tokenizer: TokenizerSpec,
        seed: u64,
    ) -> Result<Self, ConvertError> {
        config.n_vocab = tokenizer.tokens.len();
        config.validate()?;
        Ok(Self {
            config,
            tokenizer,
            seed,
        })
    }

    /// The random stream of tensor `name`.
    fn rng(&self, name: &str) -> ChaCha8Rng {
        let mut h = Sha256::new();
        h.update(self.seed.to_le_bytes());
        h.update(name.as_bytes());
        ChaCha8Rng::from_seed(h.finalize().into())
    }
}

impl TensorSource for TinyModel {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn tokenizer(&self) -> &TokenizerSpec {
        &self.tokenizer
    }

    fn tensor(&self, name: &str) -> Result<Option<HfTensor>, ConvertError> {
        let Some(entry) = super::entries(&self.config)
            .into_iter()
            .find(|e| e.hf == name)
        else {
            return Ok(None);
        };
        // Biases are optional for llama and sigma; the tiny models have none
        // unless the architecture requires them (qwen2).
        if !entry.required {
            return Ok(None);
        }
        let mut rng = self.rng(name);
        let n: usize = entry.shape.iter().product();
        let data: Vec<f32> = if name.ends_with("norm.weight") {
            (0..n).map(|_| 1.0 + rng.random_range(-0.1..0.1)).collect()
        } else if name.ends_with(".bias") {
            (0..n).map(|_| rng.random_range(-0.1..0.1)).collect()
        } else {
            // uniform(-a, a) has variance a^2 / 3
            let fan_in = *entry.shape.last().expect("matrices have two dims") as f32;
            let a = (3.0 / fan_in).sqrt();
            (0..n).map(|_| rng.random_range(-a..a)).collect()
        };
        Ok(Some(HfTensor {
            shape: entry.shape,
            data,
        }))
    }
}
