//! Our tokenizer and chat templates against llama.cpp's, on both catalog models.
//!
//! llama.cpp (through `llama-cpp-2`, vocabulary only) is the oracle: for
//! every string of the corpus, `Tokenizer::encode(s, true)` must equal
//! `llama_tokenize(s, add_special = true, parse_special = true)`. The models
//! are pulled into the user's cache first (a no-op when present).

use std::path::PathBuf;
use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use sigma::engine::chat::{ChatTemplate, Message};
use sigma::engine::ffi::gguf::GgufFile;
use sigma::engine::registry::Registry;
use sigma::engine::tokenizer::Tokenizer;

/// The llama.cpp backend, initialised once per process.
fn backend() -> &'static LlamaBackend {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        let mut backend = LlamaBackend::init().expect("llama backend");
        backend.void_logs();
        backend
    })
}

/// The cached file of catalog model `name`, pulled if needed.
fn model_path(name: &str) -> PathBuf {
    let registry = Registry::load().expect("registry");
    registry
        .pull(name, false)
        .unwrap_or_else(|e| panic!("pull {name}: {e}"))
}

/// Our tokenizer and llama.cpp's model (vocabulary only) for `name`.
fn load(name: &str) -> (GgufFile, Tokenizer, LlamaModel) {
    let path = model_path(name);
    let gguf = GgufFile::open(&path).expect("open gguf");
    let tokenizer = Tokenizer::from_gguf(&gguf).expect("tokenizer");
    let params = LlamaModelParams::default().with_vocab_only(true);
    let model = LlamaModel::load_from_file(backend(), &path, &params).expect("llama model");
    (gguf, tokenizer, model)
}

/// Hand-written strings covering what Sigma feeds the model.
const BASE: &[&str] = &[
    "",
    " ",
    "  ",
    "\n",
    "\n\n\n",
    "\t",
    "\t\tindented",
    "Hello, world!",
    "hello world",
    " leading space",
    "trailing space ",
    // A byte with no token of its own parts its neighbours (found by the fuzzer).
    "slow?\u{1d}|im_end|>",
    "a\u{1c}\u{1d}\u{1e}\u{1f}b ?\u{1d}! \u{7f}x",
    "multiple   spaces   here",
    "I'm sure you'll see they've done it; we'd go. He's ready. 'quoted' ISN'T",
    "fn main() {\n    println!(\"hi\");\n}\n",
    "def f(x):\n\treturn x ** 2  # square\n",
    "for i in $(seq 1 10); do echo \"$i\"; done",
    "nvidia-smi --query-gpu=index,name,temperature.gpu,utilization.gpu --format=csv,noheader",
    "| 0  NVIDIA H100 80GB HBM3   On  | 00000000:18:00.0 Off |                    0 |",
    "| N/A   34C    P0   71W / 700W |   4MiB / 81559MiB |      0%      Default |",
    "NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, GPU has fallen off the bus.",
    "dmesg -T | grep -i xid",
    "sudo systemctl restart nvidia-persistenced && nvidia-smi -r -i 0",
    "lspci -vvv -s 3b:00.0 | grep -E 'LnkSta|LnkCap'",
    "LnkSta: Speed 16GT/s (ok), Width x16 (ok)",
    "ECC errors: volatile SRAM uncorrectable 0, DRAM correctable 12",
    "0123456789",
    "3.14159 2.71828 1e-9 -42 +7 0x1F 0b1010",
    "12345678901234567890",
    "v1.2.3-rc4+build.567",
    "2026-11-28T07:43:36Z",
    "192.168.0.1:8080",
    "日本語のテキストです。",
    "中文测试：显卡温度过高",
    "한국어 텍스트",
    "Emoji: 🚀🔥👍🏽 👨‍👩‍👧‍👦",
    "café naïve résumé Ångström façade",
    "Ελληνικά και русский текст",
    "مرحبا بالعالم",
    "ℝ ∑ ∫ √ ≤ ≥ ≠ → ← ⇒",
    "\u{00a0}non-breaking\u{2009}thin\u{3000}ideographic",
    "zero\u{200b}width",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "text<|im_end|>more",
    "<|endoftext|>",
    "<|im_start|><|im_start|>",
    "</s> and <s> and <|fim_prefix|>def<|fim_suffix|>",
    "< |im_start| >",
    "<|im_start",
    "a\r\nb\r\n",
    "\r\r\n\n",
    "   \n   \n",
    "x\n\n\n\ny",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
    "SELECT * FROM gpus WHERE temp > 85;",
    "https://example.com/path?query=1&x=y#frag",
    "C:\\Windows\\System32",
    "~/.cache/sigma/models/*.gguf",
    "!!!???...,,,;;;:::",
    "$$$ %%% ^^^ &&& *** ((( )))",
    "ALLCAPS lowercase MiXeD",
    "don't DON'T Don't",
    "    four spaces",
    "tab\tseparated\tvalues\t",
];

/// Separators used to join corpus strings pairwise.
const SEPARATORS: &[&str] = &["", " ", "\n", "  ", "\t", "\n\n", " 123 ", "<|im_end|>"];

/// The base strings plus deterministic pairwise combinations.
fn corpus() -> Vec<String> {
    let mut out: Vec<String> = BASE.iter().map(|s| s.to_string()).collect();
    let n = BASE.len();
    for i in 0..200 {
        let a = BASE[i % n];
        let b = BASE[(i * 7 + 3) % n];
        let sep = SEPARATORS[i % SEPARATORS.len()];
        out.push(format!("{a}{sep}{b}"));
    }
    out.push(" ".repeat(40));
    out.push("\n".repeat(17));
    out.push("9".repeat(50));
    out.push("ab ".repeat(100));
    out
}

/// llama.cpp's ids for `text` (add_special and parse_special on).
fn oracle(model: &LlamaModel, text: &str) -> Vec<u32> {
    model
        .vocab()
        .tokenize(text.as_bytes(), true, true)
        .into_iter()
        .map(|t| t.0 as u32)
        .collect()
}

/// Checks the whole corpus against llama.cpp for model `name`.
fn check_corpus(name: &str) {
    let (_gguf, tokenizer, model) = load(name);
    let corpus = corpus();
    assert!(corpus.len() >= 200, "corpus has {} strings", corpus.len());
    let mut failures = Vec::new();
    for text in &corpus {
        let ours = tokenizer.encode(text, true).expect("encode");
        let theirs = oracle(&model, text);
        if ours != theirs {
            failures.push(format!(
                "{text:?}\n  llama.cpp: {theirs:?}\n  ours:      {ours:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} strings differ; first ones:\n{}",
        failures.len(),
        corpus.len(),
        failures[..failures.len().min(8)].join("\n")
    );
}

/// Every Unicode scalar value, in the contexts the pre-tokenizers tell
/// apart (after a letter, a digit, a space and itself, before a letter and
/// a digit), tokenizes as llama.cpp does: its letter, number and space
/// classes are its own table's (a Unicode version behind the regex
/// crate's), not the regex crate's (a fuzzer found a Unicode 16 digit).
fn check_every_code_point(name: &str) {
    let (_gguf, tokenizer, model) = load(name);
    let scalars: Vec<char> = (0..=0x10FFFF_u32).filter_map(char::from_u32).collect();
    let mut failures = Vec::new();
    for chunk in scalars.chunks(32) {
        let text: String = chunk
            .iter()
            .map(|c| format!("a{c}1 {c}{c}x{c}7  {c}\n"))
            .collect();
        let ours = tokenizer.encode(&text, false).expect("encode");
        let mut theirs = oracle(&model, &text);
        if tokenizer.adds_bos() {
            theirs.remove(0);
        }
        if ours != theirs {
            failures.push(format!(
                "U+{:04X}..U+{:04X}",
                chunk[0] as u32,
                chunk[chunk.len() - 1] as u32
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} chunks of 32 code points differ: {}",
        failures.len(),
        failures[..failures.len().min(20)].join(", ")
    );
}

/// Checks special ids and the end-of-generation set against llama.cpp.
fn check_specials(name: &str) {
    let (_gguf, tokenizer, model) = load(name);
    let vocab = model.vocab();
    assert_eq!(tokenizer.n_vocab(), vocab.n_tokens() as usize);
    assert_eq!(tokenizer.adds_bos(), vocab.should_add_bos());
    assert_eq!(tokenizer.eos().map(|t| t as i32), Some(vocab.eos().0));
    if tokenizer.adds_bos() {
        assert_eq!(tokenizer.bos().map(|t| t as i32), Some(vocab.bos().0));
    }
    let ours: Vec<u32> = (0..tokenizer.n_vocab() as u32)
        .filter(|&id| tokenizer.is_end(id))
        .collect();
    let theirs: Vec<u32> = (0..vocab.n_tokens())
        .filter(|&id| vocab.is_eog(LlamaToken(id)))
        .map(|id| id as u32)
        .collect();
    assert_eq!(ours, theirs, "{name}: end-of-generation tokens differ");
}

/// Decoding undoes encoding, whole and streamed token by token, for text
/// whose every character has a token (one without is dropped, as llama.cpp
/// drops it).
fn check_round_trip(name: &str) {
    let (_gguf, tokenizer, _model) = load(name);
    let tokenizable = |text: &str| {
        text.chars()
            .all(|c| !tokenizer.encode(&c.to_string(), false).unwrap().is_empty())
    };
    for text in corpus()
        .iter()
        .filter(|t| !t.contains("<|") && tokenizable(t))
    {
        let ids = tokenizer.encode(text, false).expect("encode");
        assert_eq!(&tokenizer.decode(&ids).expect("decode"), text);
        let mut stream = tokenizer.stream(false);
        let mut streamed = String::new();
        for &id in &ids {
            if let Some(piece) = stream.push(id).expect("push") {
                streamed.push_str(&piece);
            }
        }
        assert_eq!(&streamed, text, "{name}: streamed decode of {text:?}");
    }
}

/// Our rendering of a conversation equals llama.cpp's, and tokenizes alike.
fn check_chat(name: &str) {
    let (gguf, tokenizer, model) = load(name);
    let template = ChatTemplate::from_gguf(&gguf, &tokenizer).expect("template");
    let conversation = [
        (
            "system",
            "You are Sigma, a GPU node copilot. Answer briefly.",
        ),
        ("user", "GPU 3 shows Xid 79. What now?"),
        (
            "assistant",
            "Xid 79 means the GPU fell off the bus. Check `dmesg -T`.",
        ),
        ("user", "Give me the command to list PCIe link status."),
    ];
    let ours = template
        .render(
            &conversation
                .iter()
                .map(|(r, c)| Message::new(*r, *c))
                .collect::<Vec<_>>(),
            true,
        )
        .expect("render");
    let messages: Vec<LlamaChatMessage> = conversation
        .iter()
        .map(|(r, c)| LlamaChatMessage::new(r.to_string(), c.to_string()).expect("message"))
        .collect();
    let theirs = model
        .apply_chat_template(
            &model.chat_template(None).expect("template"),
            &messages,
            true,
        )
        .expect("llama.cpp render");
    assert_eq!(ours, theirs, "{name}: rendered prompts differ");
    assert_eq!(
        tokenizer.encode(&ours, true).expect("encode"),
        oracle(&model, &theirs),
        "{name}: rendered prompt tokenizes differently"
    );
}

#[test]
fn smollm2_tokens_match_llama_cpp() {
    check_corpus("smollm2-135m");
}

#[test]
fn qwen_tokens_match_llama_cpp() {
    check_corpus("qwen2.5-coder-0.5b");
}

#[test]
fn smollm2_every_code_point_tokenizes_as_llama_cpp() {
    check_every_code_point("smollm2-135m");
}

#[test]
fn qwen_every_code_point_tokenizes_as_llama_cpp() {
    check_every_code_point("qwen2.5-coder-0.5b");
}

#[test]
fn smollm2_special_tokens_match_llama_cpp() {
    check_specials("smollm2-135m");
}

#[test]
fn qwen_special_tokens_match_llama_cpp() {
    check_specials("qwen2.5-coder-0.5b");
}

#[test]
fn smollm2_decode_round_trips() {
    check_round_trip("smollm2-135m");
}

#[test]
fn qwen_decode_round_trips() {
    check_round_trip("qwen2.5-coder-0.5b");
}

#[test]
fn smollm2_chat_matches_llama_cpp() {
    check_chat("smollm2-135m");
}

#[test]
fn qwen_chat_matches_llama_cpp() {
    check_chat("qwen2.5-coder-0.5b");
}

#[test]
fn qwen_default_system_prompt_is_rendered() {
    let (gguf, tokenizer, _model) = load("qwen2.5-coder-0.5b");
    let template = ChatTemplate::from_gguf(&gguf, &tokenizer).expect("template");
    let out = template
        .render(&[Message::user("hi")], true)
        .expect("render");
    assert_eq!(
        out,
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
}
