//! The model's tokenizer, built from the vocabulary stored in its GGUF file.
//!
//! Only byte-level BPE vocabularies (`tokenizer.ggml.model = "gpt2"`) are
//! supported; that covers the Qwen, SmolLM and Llama 3 families. The pieces
//! mirror llama.cpp so that token ids match it exactly:
//!
//! - pre-tokenizer: the split regexes llama.cpp picks for
//!   `tokenizer.ggml.pre` (copied from its `llama-vocab.cpp`), applied in
//!   order, then the byte-to-unicode mapping of GPT-2;
//! - model: BPE over `tokenizer.ggml.tokens` / `tokenizer.ggml.merges`;
//! - special tokens: every control and user-defined token is matched
//!   verbatim in the input (llama.cpp's `parse_special = true`), so
//!   `<|im_start|>` in a rendered chat prompt is one token;
//! - end of generation: the EOS/EOT ids plus the tokens llama.cpp treats as
//!   end-of-generation by their text (`<|im_end|>`, `<|endoftext|>`, ...).
//!
//! Decoding while streaming goes through [`TokenStream`], which holds back
//! incomplete UTF-8 until the token completing it arrives.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::engine::ffi::gguf::{GgufError, GgufFile};

mod classes;

/// `tokenizer.ggml.token_type` value of a control token.
const TOKEN_TYPE_CONTROL: i32 = 3;
/// `tokenizer.ggml.token_type` value of a user-defined token.
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// The unknown token: a character with no token of its own (see `from_spec`).
const UNKNOWN: &str = "\u{0}<sigma: no token>";

/// Token texts that end generation, as llama.cpp lists them
/// (`llama-vocab.cpp`, `special_eog_ids`).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// A special token llama.cpp reads from a key or, failing that, finds by
/// its text (in this order of preference).
struct SpecialRole {
    /// The GGUF key holding its id.
    key: &'static str,
    /// Texts that identify it when the key is absent.
    texts: &'static [&'static str],
}

/// End of turn.
const EOT: SpecialRole = SpecialRole {
    key: "tokenizer.ggml.eot_token_id",
    texts: &[
        "<|eot_id|>",
        "<|im_end|>",
        "<|end|>",
        "<end_of_turn>",
        "<|endoftext|>",
        "<|end_of_text|>",
        "<EOT>",
        "_<EOT>",
        "[EOT]",
        "<｜end▁of▁sentence｜>",
        "<end_of_utterance>",
    ],
};
/// End of message (tool call pending).
const EOM: SpecialRole = SpecialRole {
    key: "tokenizer.ggml.eom_token_id",
    texts: &["<|eom_id|>"],
};
/// Fill-in-the-middle padding; ends generation.
const FIM_PAD: SpecialRole = SpecialRole {
    key: "tokenizer.ggml.fim_pad_token_id",
    texts: &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>"],
};
/// Fill-in-the-middle repository name; ends generation.
const FIM_REP: SpecialRole = SpecialRole {
    key: "tokenizer.ggml.fim_rep_token_id",
    texts: &[
        "<|fim_repo|>",
        "<|repo_name|>",
        "<fim-repo>",
        "<REPO>",
        "<reponame>",
    ],
};
/// Fill-in-the-middle file separator; ends generation.
const FIM_SEP: SpecialRole = SpecialRole {
    key: "tokenizer.ggml.fim_sep_token_id",
    texts: &["<|file_sep|>"],
};
/// Fill-in-the-middle markers that do not end generation but are still
/// matched as special tokens (llama.cpp marks them control).
const FIM_MARKERS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<PRE>",
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<SUF>",
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<MID>",
];

/// The split regexes of llama.cpp's Llama 3 pre-tokenizer.
const LLAMA3: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
/// The split regex of GPT-2.
const GPT2_RE: &str =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
/// GPT-2's pre-tokenizer.
const GPT2: &[&str] = &[GPT2_RE];
/// StarCoder's pre-tokenizer (SmolLM uses it): digits one by one, then GPT-2.
const STARCODER: &[&str] = &["\\p{N}", GPT2_RE];
/// Qwen 2's pre-tokenizer: Llama 3's with single digits.
const QWEN2: &[&str] = &[
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];

/// A family of `tokenizer.ggml.pre` names sharing one pre-tokenizer.
struct PreType {
    /// The names llama.cpp maps to this family.
    names: &'static [&'static str],
    /// Split regexes, applied in order.
    regexes: &'static [&'static str],
    /// Whether a word found whole in the vocabulary skips the merges.
    ignore_merges: bool,
}

/// The pre-tokenizers we reproduce, keyed by their `tokenizer.ggml.pre` names.
const PRE_TYPES: &[PreType] = &[
    PreType {
        names: &["llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"],
        regexes: LLAMA3,
        ignore_merges: true,
    },
    PreType {
        names: &["dbrx", "smaug-bpe", "chatglm-bpe"],
        regexes: LLAMA3,
        ignore_merges: false,
    },
    PreType {
        names: &[
            "gpt-2", "phi-2", "mpt", "olmo", "jais", "exaone4", "jina-es", "jina-de",
        ],
        regexes: GPT2,
        ignore_merges: false,
    },
    PreType {
        names: &[
            "starcoder",
            "refact",
            "command-r",
            "smollm",
            "codeshell",
            "exaone",
            "minerva-7b",
        ],
        regexes: STARCODER,
        ignore_merges: false,
    },
    PreType {
        names: &["qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"],
        regexes: QWEN2,
        ignore_merges: false,
    },
];

/// `regex` with `\p{L}` and `\p{N}` spelled as llama.cpp's own letter and
/// number ranges ([`classes`]): its table is a Unicode version behind the
/// regex crate's, and a character the two class differently (a digit new
/// in Unicode 16) would split differently.
fn with_llama_classes(regex: &str) -> String {
    let class = |ranges: &[(u32, u32)]| {
        let mut out = String::from("[");
        for &(a, b) in ranges {
            let _ = write!(out, "\\x{{{a:X}}}-\\x{{{b:X}}}");
        }
        out.push(']');
        out
    };
    regex
        .replace("\\p{L}", &class(classes::LETTER))
        .replace("\\p{N}", &class(classes::NUMBER))
}

/// Why a tokenizer could not be built or used.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A GGUF key is missing or has the wrong type.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The vocabulary is not byte-level BPE.
    #[error(
        "tokenizer model '{0}' is not supported; only 'gpt2' (byte-level BPE) vocabularies are"
    )]
    UnsupportedModel(String),
    /// The pre-tokenizer name is not one we reproduce.
    #[error("unknown pre-tokenizer '{pre}' (tokenizer.ggml.pre); known: {known}")]
    UnknownPre {
        /// The name in the file.
        pre: String,
        /// The names we support, comma separated.
        known: String,
    },
    /// A merge rule is not two space-separated tokens.
    #[error("bad BPE merge rule {0:?} (expected two tokens separated by one space)")]
    BadMerge(String),
    /// The vocabulary and `token_type` array differ in length.
    #[error("tokenizer.ggml.token_type has {types} entries but the vocabulary has {tokens} tokens")]
    TypeCount {
        /// Entries in token_type.
        types: usize,
        /// Tokens in the vocabulary.
        tokens: usize,
    },
    /// A special token id lies outside the vocabulary.
    #[error("special token id {id} ({key}) is outside the vocabulary of {size} tokens")]
    BadSpecialId {
        /// The GGUF key naming it.
        key: &'static str,
        /// The id.
        id: u32,
        /// The vocabulary size.
        size: usize,
    },
    /// The `tokenizers` crate failed.
    #[error("tokenizer: {0}")]
    Backend(String),
}

/// Wraps an error of the `tokenizers` crate.
fn backend(e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Backend(e.to_string())
}

/// A byte-level BPE tokenizer matching llama.cpp's for the same GGUF file.
pub struct Tokenizer {
    /// The Hugging Face tokenizer doing the work.
    inner: tokenizers::Tokenizer,
    /// Beginning-of-sequence token.
    bos: Option<u32>,
    /// End-of-sequence token.
    eos: Option<u32>,
    /// End-of-turn token.
    eot: Option<u32>,
    /// Every token that ends generation.
    eog: BTreeSet<u32>,
    /// Whether the model wants BOS prepended.
    add_bos: bool,
    /// Whether the model wants EOS appended.
    add_eos: bool,
    /// Vocabulary size.
    n_vocab: usize,
    /// Control and user-defined tokens (matched whole, never split).
    special: BTreeSet<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("n_vocab", &self.n_vocab)
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("eot", &self.eot)
            .field("add_bos", &self.add_bos)
            .finish_non_exhaustive()
    }
}

/// GGUF keys of special-token ids the tokenizer reads (besides BOS/EOS).
const ROLE_KEYS: [&str; 5] = [EOT.key, EOM.key, FIM_PAD.key, FIM_REP.key, FIM_SEP.key];

/// Everything a tokenizer is built from: the `tokenizer.ggml.*` keys of a
/// GGUF file, or what `sigma model convert` reads from a Hugging Face
/// `tokenizer.json` (and writes back as those keys).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizerSpec {
    /// `tokenizer.ggml.pre`: the pre-tokenizer family.
    pub pre: String,
    /// The vocabulary, by id (byte-level encoded texts).
    pub tokens: Vec<String>,
    /// BPE merges, `"a b"`, by rank.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.token_type` per token (1 normal, 3 control, 4 user-defined).
    pub token_types: Vec<i32>,
    /// Beginning-of-sequence id.
    pub bos: Option<u32>,
    /// End-of-sequence id.
    pub eos: Option<u32>,
    /// Whether prompts start with BOS.
    pub add_bos: bool,
    /// Whether prompts end with EOS.
    pub add_eos: bool,
    /// Other special ids by GGUF key (`tokenizer.ggml.eot_token_id`, ...).
    pub role_ids: Vec<(String, u32)>,
    /// `tokenizer.chat_template`, if any.
    pub chat_template: Option<String>,
}

impl TokenizerSpec {
    /// Reads the `tokenizer.*` keys of `gguf`.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self, TokenizerError> {
        let model: String = gguf.require("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(model));
        }
        let tokens: Vec<String> = gguf.require("tokenizer.ggml.tokens")?;
        let token_types = gguf
            .get("tokenizer.ggml.token_type")?
            .unwrap_or_else(|| vec![1; tokens.len()]);
        let mut role_ids = Vec::new();
        for key in ROLE_KEYS {
            if let Some(id) = gguf.get::<u32>(key)? {
                role_ids.push((key.to_string(), id));
            }
        }
        Ok(Self {
            pre: gguf.require("tokenizer.ggml.pre")?,
            merges: gguf.require("tokenizer.ggml.merges")?,
            tokens,
            token_types,
            bos: gguf.get("tokenizer.ggml.bos_token_id")?,
            eos: gguf.get("tokenizer.ggml.eos_token_id")?,
            add_bos: gguf.get("tokenizer.ggml.add_bos_token")?.unwrap_or(false),
            add_eos: gguf.get("tokenizer.ggml.add_eos_token")?.unwrap_or(false),
            role_ids,
            chat_template: gguf.get("tokenizer.chat_template")?,
        })
    }

    /// The `tokenizer.ggml.pre` names we reproduce, one per pre-tokenizer
    /// family (for probing an unknown `tokenizer.json`).
    pub fn pre_families() -> Vec<&'static str> {
        PRE_TYPES.iter().map(|p| p.names[0]).collect()
    }

    /// The id of special token `key` (a GGUF key), checked against the vocabulary.
    fn special(&self, key: &'static str, id: Option<u32>) -> Result<Option<u32>, TokenizerError> {
        match id {
            Some(id) if id as usize >= self.tokens.len() => Err(TokenizerError::BadSpecialId {
                key,
                id,
                size: self.tokens.len(),
            }),
            other => Ok(other),
        }
    }

    /// The id stored under role key `key`, if any.
    fn role(&self, key: &'static str) -> Result<Option<u32>, TokenizerError> {
        let id = self
            .role_ids
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, id)| *id);
        self.special(key, id)
    }
}

impl Tokenizer {
    /// Builds the tokenizer described by `gguf`'s `tokenizer.ggml.*` keys.
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self, TokenizerError> {
        Self::from_spec(&TokenizerSpec::from_gguf(gguf)?)
    }

    /// Builds the tokenizer `spec` describes.
    pub fn from_spec(spec: &TokenizerSpec) -> Result<Self, TokenizerError> {
        let pre_name = &spec.pre;
        let pre = PRE_TYPES
            .iter()
            .find(|p| p.names.contains(&pre_name.as_str()))
            .ok_or_else(|| TokenizerError::UnknownPre {
                known: PRE_TYPES
                    .iter()
                    .flat_map(|p| p.names.iter().copied())
                    .collect::<Vec<_>>()
                    .join(", "),
                pre: pre_name.clone(),
            })?;
        let tokens = &spec.tokens;
        let types = &spec.token_types;
        if types.len() != tokens.len() {
            return Err(TokenizerError::TypeCount {
                types: types.len(),
                tokens: tokens.len(),
            });
        }

        let merges = spec
            .merges
            .iter()
            .map(|m| match m.split_once(' ') {
                Some((a, b)) if !a.is_empty() && !b.is_empty() => {
                    Ok((a.to_string(), b.to_string()))
                }
                _ => Err(TokenizerError::BadMerge(m.clone())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Where a text appears twice, the first id wins, as in llama.cpp.
        let mut vocab = Vocab::default();
        for (id, text) in tokens.iter().enumerate() {
            vocab.entry(text.clone()).or_insert(id as u32);
        }
        // A character with no token (SmolLM2 has none for some control
        // bytes) still parts its neighbours in llama.cpp's BPE, which drops
        // it only when emitting; the tokenizers crate would drop it first and
        // merge across it. As an unknown token past the vocabulary it parts
        // them here too, and `encode` drops it.
        vocab.insert(UNKNOWN.to_string(), tokens.len() as u32);
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(pre.ignore_merges)
            .unk_token(UNKNOWN.to_string())
            .build()
            .map_err(backend)?;

        let mut splits: Vec<PreTokenizerWrapper> = pre
            .regexes
            .iter()
            .map(|re| {
                Split::new(
                    SplitPattern::Regex(with_llama_classes(re)),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map(PreTokenizerWrapper::from)
                .map_err(backend)
            })
            .collect::<Result<_, _>>()?;
        splits.push(ByteLevel::new(false, false, false).into());

        let size = tokens.len();
        let ids: HashMap<&str, u32> = tokens
            .iter()
            .enumerate()
            .rev()
            .map(|(id, t)| (t.as_str(), id as u32))
            .collect();
        let find = |role: &SpecialRole| -> Result<Option<u32>, TokenizerError> {
            Ok(spec
                .role(role.key)?
                .or_else(|| role.texts.iter().find_map(|t| ids.get(t).copied())))
        };
        let bos = spec.special("tokenizer.ggml.bos_token_id", spec.bos)?;
        let eos = spec.special("tokenizer.ggml.eos_token_id", spec.eos)?;
        let eot = find(&EOT)?;
        let eog: BTreeSet<u32> = EOG_TEXTS
            .iter()
            .filter_map(|t| ids.get(t).copied())
            .chain(eos)
            .chain(eot)
            .chain(find(&EOM)?)
            .chain(find(&FIM_PAD)?)
            .chain(find(&FIM_REP)?)
            .chain(find(&FIM_SEP)?)
            .collect();

        // Control and user-defined tokens are matched verbatim in the input,
        // and so are the tokens llama.cpp promotes to control by their text.
        let mut special: BTreeSet<u32> = types
            .iter()
            .enumerate()
            .filter(|(_, t)| matches!(**t, TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED))
            .map(|(id, _)| id as u32)
            .collect();
        special.extend(eog.iter().copied());
        special.extend(FIM_MARKERS.iter().filter_map(|t| ids.get(t).copied()));
        let specials: Vec<AddedToken> = special
            .iter()
            .map(|&id| AddedToken::from(tokens[id as usize].clone(), true).normalized(false))
            .collect();

        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(Sequence::new(splits)));
        inner.with_decoder(Some(ByteLevel::default()));
        inner.add_special_tokens(&specials);
        Ok(Self {
            inner,
            bos,
            eos,
            eot,
            eog,
            add_bos: spec.add_bos,
            add_eos: spec.add_eos,
            n_vocab: size,
            special,
        })
    }

    /// Tokenizes `text`, matching special tokens written in it.
    ///
    /// With `add_special`, BOS is prepended and EOS appended where the model
    /// asks for them (`tokenizer.ggml.add_bos_token` / `add_eos_token`), as
    /// llama.cpp's `llama_tokenize(add_special = true)` does.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self.inner.encode_fast(text, false).map_err(backend)?;
        let bos = self.bos.filter(|_| add_special && self.add_bos);
        let eos = self.eos.filter(|_| add_special && self.add_eos);
        Ok(bos
            .into_iter()
            .chain(
                encoding
                    .get_ids()
                    .iter()
                    .copied()
                    .filter(|&id| id as usize != self.n_vocab),
            )
            .chain(eos)
            .collect())
    }

    /// Decodes `ids` to text, special tokens included; invalid UTF-8 becomes
    /// U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.inner.decode(ids, false).map_err(backend)
    }

    /// A decoder for a stream of generated tokens.
    ///
    /// With `skip_special`, control tokens (`<|im_end|>`, ...) produce no text.
    pub fn stream(&self, skip_special: bool) -> TokenStream<'_> {
        TokenStream {
            inner: self.inner.decode_stream(skip_special),
        }
    }

    /// The beginning-of-sequence token, if the model has one.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// The end-of-sequence token, if the model has one.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// The end-of-turn token (`<|im_end|>` for ChatML models), if any.
    pub fn eot(&self) -> Option<u32> {
        self.eot
    }

    /// Whether `id` ends generation (EOS, EOT and their kin).
    pub fn is_end(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// Whether the model asks for BOS at the start of a prompt.
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// Number of tokens in the vocabulary.
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// Whether `id` is a control or user-defined token (`<|im_end|>`).
    pub fn is_special(&self, id: u32) -> bool {
        self.special.contains(&id)
    }

    /// The raw bytes token `id` stands for: a special token's text, else its
    /// vocabulary text mapped back through the byte-level BPE alphabet
    /// (GPT-2's `bytes_to_unicode`), so partial UTF-8 stays exact. Used by
    /// constrained decoding, which works on bytes.
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let text = self.inner.id_to_token(id)?;
        if self.is_special(id) {
            return Some(text.into_bytes());
        }
        text.chars().map(byte_of_char).collect()
    }

    /// The tokenizer as a Hugging Face `tokenizer.json` document, without
    /// the unknown token (its id is past the model's vocabulary).
    pub fn to_hf_json(&self) -> Result<String, TokenizerError> {
        let mut doc: serde_json::Value =
            serde_json::from_str(&self.inner.to_string(false).map_err(backend)?)
                .map_err(backend)?;
        let model = &mut doc["model"];
        model["unk_token"] = serde_json::Value::Null;
        if let Some(vocab) = model["vocab"].as_object_mut() {
            vocab.remove(UNKNOWN);
        }
        serde_json::to_string_pretty(&doc).map_err(backend)
    }

    /// The vocabulary text of `id` (byte-level encoded), if it exists.
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}

/// The byte a character of the byte-level BPE alphabet stands for: printable
/// Latin-1 maps to itself, the other 68 bytes were shifted to U+0100.. in
/// order.
fn byte_of_char(c: char) -> Option<u8> {
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let cp = c as u32;
    if printable(cp) {
        return u8::try_from(cp).ok();
    }
    let shifted = cp.checked_sub(0x100)?;
    (0u32..=0xff)
        .filter(|&b| !printable(b))
        .nth(shifted as usize)
        .and_then(|b| u8::try_from(b).ok())
}

/// Turns generated token ids into text as they arrive.
///
/// A token may end in the middle of a multi-byte character (emoji, CJK);
/// its bytes are held back until the rest arrives, so every piece returned
/// is valid UTF-8.
pub struct TokenStream<'a> {
    /// The `tokenizers` streaming decoder doing the buffering.
    inner: tokenizers::tokenizer::DecodeStream<
        'a,
        tokenizers::models::ModelWrapper,
        tokenizers::normalizers::NormalizerWrapper,
        tokenizers::pre_tokenizers::PreTokenizerWrapper,
        tokenizers::processors::PostProcessorWrapper,
        tokenizers::decoders::DecoderWrapper,
    >,
}

impl TokenStream<'_> {
    /// Feeds one token; returns the text it completes, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>, TokenizerError> {
        self.inner.step(id).map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pre_type_regex_compiles() {
        for pre in PRE_TYPES {
            for re in pre.regexes {
                Split::new(
                    SplitPattern::Regex((*re).to_string()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .unwrap_or_else(|e| panic!("regex for {:?}: {e}", pre.names));
            }
        }
    }

    #[test]
    fn byte_level_alphabet_round_trips() {
        assert_eq!(byte_of_char('A'), Some(b'A'));
        assert_eq!(byte_of_char('\u{120}'), Some(b' ')); // 'Ġ'
        assert_eq!(byte_of_char('\u{10a}'), Some(b'\n')); // 'Ċ'
        assert_eq!(byte_of_char('\u{100}'), Some(0));
        assert_eq!(byte_of_char('\u{1000}'), None);
    }

    #[test]
    fn pre_type_names_are_unique() {
        let mut seen = BTreeSet::new();
        for name in PRE_TYPES.iter().flat_map(|p| p.names) {
            assert!(seen.insert(name), "'{name}' listed twice");
        }
    }
}
