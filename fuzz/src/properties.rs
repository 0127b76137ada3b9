//! What every fuzzer of sigma's untrusted-input parsers checks, one function
//! per target. A function returns when the input was handled (a value or an
//! error) and panics when a property fails; a panic is a crash to AFL and a
//! failed case to proptest. Shared by the coverage-guided targets in
//! `fuzz/src/bin/` (cargo-afl, `scripts/fuzz.sh`) and the property-based
//! tests in `tests/fuzz.rs`, which include this file.

use std::io::Write as _;
use std::path::Path;
use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;

use sigma::engine::ffi::gguf::GgufFile;
use sigma::engine::tokenizer::Tokenizer;
use sigma::guard::{Tier, check};
use sigma::probe::interpret::{self, Ended};

/// The guard's parser and classifier on any command line: a verdict that
/// is consistent, and nothing allowed that a shell would chain or substitute.
pub fn guard(command: &str) {
    let verdict = check(command);
    // Allowed only with a plan; blocked never runs.
    assert_eq!(verdict.tier == Tier::Blocked, !verdict.is_allowed());
    // Nothing allowed holds, unquoted and unescaped, shell syntax that
    // substitutes or chains (the executor runs argv, not a shell).
    let plain = !command.contains(['\'', '"', '\\', '#']);
    if verdict.is_allowed() && plain {
        for bad in ['`', '$', ';', '\n', '\r', '\0'] {
            assert!(!command.contains(bad), "{command:?} allowed");
        }
    }
}

/// The kernel-log XID parser on any log text: at most one event a line,
/// each naming an XID that the line holds.
pub fn xid_log(text: &str) {
    let events = sigma::probe::kernel_log::parse_xids(text.lines());
    assert!(events.len() <= text.lines().count());
    for event in &events {
        assert!(
            text.contains(&event.xid.to_string()),
            "XID {} is not in the log",
            event.xid
        );
    }
}

/// The command-output interpreters on any output of any command (the
/// input's first line is the command, the rest its output), as a shipped
/// node answered it: the reading is applied to the node's snapshot and every
/// check runs on the result.
pub fn command_output(text: &str) {
    static NODE: OnceLock<sigma::sim::SimNode> = OnceLock::new();
    let node = NODE.get_or_init(|| sigma::sim::load("h100x8-xid79").expect("a shipped node"));
    let (command, output) = text.split_once('\n').unwrap_or((text, ""));
    let pipeline = check(command).pipeline;
    let reading = interpret::read(&pipeline, output, Ended::Exited(0), &node.snapshot);
    if let Some(excerpt) = &reading.excerpt {
        assert!(
            excerpt.chars().count() <= interpret::EXCERPT_CHARS + 1,
            "excerpt too long"
        );
    }
    let mut snapshot = node.snapshot.clone();
    interpret::apply(&mut snapshot, &reading.facts);
    let _ = sigma::checks::run_with_facts(&snapshot, &reading.facts);
}

/// The simulated-node loader on any file: a node or an error.
pub fn sim_node(bytes: &[u8]) {
    let file = temp_file(".toml", bytes);
    let _ = sigma::sim::load(&file.path().to_string_lossy());
}

/// The eval scenario loader on any file: one scenario or one error for it.
pub fn scenario(bytes: &[u8]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("case.toml"), bytes).expect("a writable temporary directory");
    let loaded = sigma::eval::scenario::load_dir(dir.path());
    assert_eq!(loaded.scenarios.len() + loaded.errors.len(), 1);
}

/// The GGUF reader on any file: it opens or refuses, and whatever opens can
/// be summarised, listed and asked for its tokenizer, or refuses that.
pub fn gguf(bytes: &[u8]) {
    let file = temp_file(".gguf", bytes);
    let Ok(gguf) = GgufFile::open(file.path()) else {
        return;
    };
    let _ = sigma::engine::info::ModelInfo::from_gguf(&gguf);
    let data = gguf.file_size().saturating_sub(gguf.data_offset());
    for tensor in gguf.tensors() {
        let end = tensor.offset.checked_add(tensor.size);
        assert!(
            end.is_some_and(|end| end <= data),
            "{} lies past the file's end",
            tensor.name
        );
    }
    let _ = Tokenizer::from_gguf(&gguf);
}

/// Our tokenizer and llama.cpp's (vocabulary only) for one model.
pub struct Tokenizers {
    ours: Tokenizer,
    llama: LlamaModel,
}

impl Tokenizers {
    /// Both tokenizers of the model at `path`.
    pub fn load(path: &Path) -> Self {
        static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
        let backend = BACKEND.get_or_init(|| {
            let mut backend = LlamaBackend::init().expect("llama.cpp starts");
            backend.void_logs();
            backend
        });
        let gguf = GgufFile::open(path).expect("the model opens");
        let params = LlamaModelParams::default().with_vocab_only(true);
        Self {
            ours: Tokenizer::from_gguf(&gguf).expect("our tokenizer"),
            llama: LlamaModel::load_from_file(backend, path, &params)
                .expect("llama.cpp's vocabulary"),
        }
    }

    /// The tokenizer on any text: llama.cpp's token ids (special tokens
    /// parsed, BOS as the model asks), every one in the vocabulary, and
    /// decoding gives back text no longer than a bound.
    pub fn check(&self, text: &str) {
        let ids = self.ours.encode(text, true).expect("any text encodes");
        assert!(ids.iter().all(|&id| (id as usize) < self.ours.n_vocab()));
        let llama: Vec<u32> = self
            .llama
            .vocab()
            .tokenize(text.as_bytes(), true, true)
            .into_iter()
            .map(|t| t.0 as u32)
            .collect();
        assert_eq!(ids, llama, "our ids differ from llama.cpp's for {text:?}");
        let back = self.ours.decode(&ids).expect("our own ids decode");
        assert!(back.len() <= text.len() * 4 + 16);
    }
}

/// A temporary file holding `bytes`, named with `suffix`.
fn temp_file(suffix: &str, bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(suffix)
        .tempfile()
        .expect("a temporary file");
    file.write_all(bytes).expect("a writable temporary file");
    file
}

/// The smallest model the project ships (its tokenizer is the one fuzzed),
/// pulled into the model cache if it is not there yet.
pub fn tokenizer_model() -> std::path::PathBuf {
    sigma::engine::registry::Registry::load()
        .and_then(|registry| registry.pull("smollm2-135m", false))
        .unwrap_or_else(|e| panic!("smollm2-135m: {e}"))
}
