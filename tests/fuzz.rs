//! Property-based fuzzing of every parser that reads untrusted input, with
//! large generated inputs (coverage-guided fuzzing needs a nightly
//! toolchain, which is not reachable here). A case passes when the parser
//! returns, with a value or an error, without panicking, and where a
//! property is known, it holds.
//!
//! Targets: the guard's parser and classifier, the kernel-log XID parser,
//! the simulated-node TOML loader, the eval scenario loader, the GGUF
//! reader (a real model's header with bytes flipped, counts and offsets
//! overwritten, or cut short) and the tokenizer on arbitrary bytes.
//! 1,024 cases per target (256 for the tokenizer), every run of the test
//! command; the figures are in docs/SECURITY.md.

use std::io::Write as _;
use std::path::PathBuf;

use proptest::prelude::*;
use sigma::engine::ffi::gguf::GgufFile;
use sigma::engine::tokenizer::Tokenizer;
use sigma::guard::{Tier, check};

/// Shell-heavy text: the characters the guard's grammar cares about,
/// words it knows, and anything else.
fn shellish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("nvidia-smi".to_string()),
        Just(" -q".to_string()),
        Just(" -r".to_string()),
        Just(" | grep x".to_string()),
        Just("dmesg -T".to_string()),
        prop::sample::select(vec![
            "$(", ")", "`", "'", "\"", ";", "&", "|", "<", ">", "\n", "\r", "\\", "{", "}", "*",
            "~", "=", "#", "--", " ", "\t", "\u{0}", "\u{202e}", "\u{ff0d}", "<<", "$((",
        ])
        .prop_map(str::to_string),
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..64).prop_map(|v| v.concat())
}

/// A real model on disk (the test command pulls it).
fn model() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let path = home.join(".cache/sigma/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} is missing: run `sigma model pull smollm2-135m`",
        path.display()
    );
    path
}

/// The first `n` bytes of the model (its header and metadata).
fn header(n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(model())
        .unwrap()
        .take(n as u64)
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn the_guard_judges_anything(command in shellish()) {
        let verdict = check(&command);
        // Allowed only with a plan; blocked never runs.
        prop_assert_eq!(verdict.tier == Tier::Blocked, !verdict.is_allowed());
        // Nothing allowed holds, unquoted and unescaped, shell syntax that
        // substitutes or chains (the executor runs argv, not a shell).
        let plain = !command.contains(['\'', '"', '\\', '#']);
        if verdict.is_allowed() && plain {
            for bad in ['`', '$', ';', '\n', '\r', '\0'] {
                prop_assert!(!command.contains(bad), "{:?} allowed", command);
            }
        }
    }

    #[test]
    fn the_xid_parser_reads_any_log(lines in prop::collection::vec(any::<String>(), 0..200),
                                    xid_like in prop::collection::vec("NVRM: Xid \\(PCI:[0-9a-f:.]{0,20}\\): [0-9]{0,12}, .{0,80}", 0..50)) {
        let all: Vec<&str> = lines.iter().chain(&xid_like).map(String::as_str).collect();
        let events = sigma::probe::kernel_log::parse_xids(all.iter().copied());
        prop_assert!(events.len() <= all.len());
    }

    #[test]
    fn the_sim_loader_survives_mutated_nodes(cut in 0usize..30_000, flips in prop::collection::vec((0usize..30_000, any::<u8>()), 0..20)) {
        let mut text = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/sim/h100x8-xid79.toml")).unwrap();
        for (at, byte) in flips {
            let at = at % text.len();
            text[at] = byte;
        }
        text.truncate(cut.min(text.len()));
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(&text).unwrap();
        let _ = sigma::sim::load(file.path().to_str().unwrap());
    }

    #[test]
    fn the_scenario_loader_survives_mutated_scenarios(cut in 0usize..5_000, flips in prop::collection::vec((0usize..5_000, any::<u8>()), 0..10)) {
        let dir = tempfile::tempdir().unwrap();
        let source = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/eval"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "toml"))
            .unwrap();
        let mut text = std::fs::read(source).unwrap();
        for (at, byte) in flips {
            let at = at % text.len();
            text[at] = byte;
        }
        text.truncate(cut.min(text.len()));
        std::fs::write(dir.path().join("case.toml"), &text).unwrap();
        let loaded = sigma::eval::scenario::load_dir(dir.path());
        prop_assert!(loaded.scenarios.len() + loaded.errors.len() >= 1);
    }

    #[test]
    fn the_gguf_reader_refuses_hostile_headers(
        cut in 0usize..(2 << 20),
        flips in prop::collection::vec((0usize..4096, any::<u8>()), 0..8),
        // A count or offset overwritten with something huge.
        big in prop::option::of((8usize..64, prop::sample::select(vec![u64::MAX, u64::MAX / 2, 1 << 40, 1 << 32, 0]))),
    ) {
        let mut bytes = header(2 << 20);
        for (at, byte) in flips {
            bytes[at] = byte;
        }
        if let Some((at, value)) = big {
            bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
        bytes.truncate(cut.max(1));
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&bytes).unwrap();
        if let Ok(gguf) = GgufFile::open(file.path()) {
            // Whatever opens must be readable as a model summary or refuse.
            let _ = sigma::engine::info::ModelInfo::from_gguf(&gguf);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_tokenizer_takes_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        use std::sync::OnceLock;
        static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
        let tokenizer = TOKENIZER.get_or_init(|| {
            Tokenizer::from_gguf(&GgufFile::open(&model()).unwrap()).unwrap()
        });
        let text = String::from_utf8_lossy(&bytes);
        let ids = tokenizer.encode(&text, false).unwrap();
        let back = tokenizer.decode(&ids).unwrap();
        // Every id is in the vocabulary, and decoding gives text back.
        prop_assert!(ids.iter().all(|&id| (id as usize) < tokenizer.n_vocab()));
        prop_assert!(back.len() <= text.len() * 4 + 16);
        // Not asserted: an exact round trip. On arbitrary bytes it differs
        // (some C0 bytes map to control tokens that decoding leaves out,
        // and more); recorded in docs/SECURITY.md as an open finding.
    }
}
