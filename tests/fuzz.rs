//! Property-based fuzzing of every parser that reads untrusted input, with
//! large generated inputs, on every run of the test command. The
//! properties are `fuzz/src/properties.rs`, which the coverage-guided
//! fuzzers (cargo-afl, `scripts/fuzz.sh`, run by CI) check as well; here
//! proptest generates the inputs: shell-heavy text for the guard, XID-like
//! log lines, the simulator's command outputs, shipped node and scenario
//! files with bytes flipped and cut short, a real model's header with counts and offsets overwritten, and
//! arbitrary bytes for the tokenizer (against llama.cpp's). 1,024 cases per
//! target (256 for the tokenizer); the figures are in docs/SECURITY.md.

#[path = "../fuzz/src/properties.rs"]
mod properties;

use std::cell::Cell;
use std::sync::Once;

use proptest::prelude::*;

thread_local! {
    /// Whether this thread panicked since [`guard_never_panics`] cleared it.
    static PANICKED: Cell<bool> = const { Cell::new(false) };
}

/// The guard's property, and no panic on the way, not even one it catches:
/// the guard turns a panic in its shell parser into a refusal, but the
/// panic's message still lands on the user's terminal (a TUI's screen).
fn guard_never_panics(command: &str) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.with(|p| p.set(true));
            previous(info);
        }));
    });
    PANICKED.with(|p| p.set(false));
    properties::guard(command);
    assert!(
        !PANICKED.with(Cell::get),
        "the guard panicked (and caught it) on {command:?}"
    );
}

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

/// The first `n` bytes of the tokenizer's model (its header and metadata).
fn header(n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(properties::tokenizer_model())
        .unwrap()
        .take(n as u64)
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

/// `text` with `flips` applied (positions wrap) and cut at `cut`.
fn mutate(mut text: Vec<u8>, flips: Vec<(usize, u8)>, cut: usize) -> Vec<u8> {
    for (at, byte) in flips {
        let at = at % text.len();
        text[at] = byte;
    }
    text.truncate(cut.min(text.len()));
    text
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn the_guard_judges_anything(command in shellish()) {
        guard_never_panics(&command);
    }

    #[test]
    fn the_xid_parser_reads_any_log(lines in prop::collection::vec(any::<String>(), 0..200),
                                    xid_like in prop::collection::vec("NVRM: Xid \\(PCI:[0-9a-f:.]{0,20}\\): [0-9]{0,12}, .{0,80}", 0..50)) {
        let all: Vec<&str> = lines.iter().chain(&xid_like).map(String::as_str).collect();
        properties::xid_log(&all.join("\n"));
    }

    #[test]
    fn the_interpreters_read_any_output(pick in any::<prop::sample::Index>(), cut in 0usize..8_000, flips in prop::collection::vec((0usize..8_000, any::<u8>()), 0..20)) {
        // The simulator's outputs, read once for all cases.
        static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
        let seeds = SEEDS.get_or_init(|| {
            let mut paths: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/command_output"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            paths.sort();
            paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
        });
        let seed = pick.get(seeds).clone();
        properties::command_output(&String::from_utf8_lossy(&mutate(seed, flips, cut)));
    }

    #[test]
    fn the_sim_loader_survives_mutated_nodes(cut in 0usize..30_000, flips in prop::collection::vec((0usize..30_000, any::<u8>()), 0..20)) {
        let text = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/sim/h100x8-xid79.toml")).unwrap();
        properties::sim_node(&mutate(text, flips, cut));
    }

    #[test]
    fn the_scenario_loader_survives_mutated_scenarios(cut in 0usize..5_000, flips in prop::collection::vec((0usize..5_000, any::<u8>()), 0..10)) {
        let source = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/eval"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "toml"))
            .unwrap();
        properties::scenario(&mutate(std::fs::read(source).unwrap(), flips, cut));
    }

    #[test]
    fn the_gguf_reader_refuses_hostile_headers(
        cut in 0usize..(2 << 20),
        flips in prop::collection::vec((0usize..4096, any::<u8>()), 0..8),
        // A count or offset overwritten with something huge.
        big in prop::option::of((8usize..64, prop::sample::select(vec![u64::MAX, u64::MAX / 2, 1 << 40, 1 << 32, 0]))),
    ) {
        let mut bytes = header(2 << 20);
        if let Some((at, value)) = big {
            bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
        properties::gguf(&mutate(bytes, flips, cut.max(1)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_tokenizer_matches_llama_cpp_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        use std::sync::OnceLock;
        static TOKENIZERS: OnceLock<properties::Tokenizers> = OnceLock::new();
        TOKENIZERS
            .get_or_init(|| properties::Tokenizers::load(&properties::tokenizer_model()))
            .check(&String::from_utf8_lossy(&bytes));
    }
}

/// Every input a fuzzer found a problem with (`fuzz/regressions/TARGET/`)
/// still passes its target's property.
#[test]
fn the_fuzzers_findings_stay_fixed() {
    let tokenizers = properties::Tokenizers::load(&properties::tokenizer_model());
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/regressions"));
    let mut checked = 0;
    for target in std::fs::read_dir(root).unwrap() {
        let target = target.unwrap().path();
        for input in std::fs::read_dir(&target).unwrap() {
            let bytes = std::fs::read(input.unwrap().path()).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            match target.file_name().unwrap().to_str().unwrap() {
                "guard" => guard_never_panics(&text),
                "gguf" => properties::gguf(&bytes),
                "tokenizer" => tokenizers.check(&text),
                other => panic!("no property for fuzz target {other}"),
            }
            checked += 1;
        }
    }
    assert!(checked >= 7, "{checked} regression inputs");
}
