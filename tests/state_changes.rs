//! State changes are never guessed: a generated matrix of every
//! state-changing kind operators ask for, the GPUs named by index, by
//! several indexes, by PCI bus id in three spellings, as "all GPUs" and not
//! at all, each phrased as a request, a question and a negation. The
//! ranker's candidates must hold no change of a wrong kind, value or scope;
//! a request that says what and where gets exactly that change first; a
//! negation gets none; one that names no GPU gets none and is told what is
//! missing.

use sigma::copilot::rank;
use sigma::guard::{self, Tier};
use sigma::probe::Snapshot;

/// One kind: how to ask for it and the command that does it, with `{i}`
/// for the GPU selector (`-i 6`, `-i 2,5`) or nothing for every GPU.
struct Kind {
    request: &'static str,
    question: &'static str,
    negation: &'static str,
    command: &'static str,
}

/// `{g}` in the phrases is where the GPUs are named.
const KINDS: &[Kind] = &[
    Kind {
        request: "reset {g}",
        question: "can you reset {g}?",
        negation: "don't reset {g}, just tell me whether it needs a reset",
        command: "nvidia-smi -r {i}",
    },
    Kind {
        request: "set the power limit of {g} to 450 W",
        question: "could you cap {g} at 450 W?",
        negation: "do not change the power limit of {g}; what is it now?",
        command: "nvidia-smi -pl 450 {i}",
    },
    Kind {
        request: "set {g} to exclusive process compute mode",
        question: "can you put {g} in exclusive process mode?",
        negation: "don't change the compute mode of {g}, which mode is it in?",
        command: "nvidia-smi -c EXCLUSIVE_PROCESS {i}",
    },
    Kind {
        request: "set the compute mode of {g} back to default",
        question: "could you set the compute mode of {g} to default?",
        negation: "never change the compute mode of {g}; is it exclusive?",
        command: "nvidia-smi -c DEFAULT {i}",
    },
    Kind {
        request: "enable MIG mode on {g}",
        question: "can you turn on MIG for {g}?",
        negation: "don't enable MIG on {g}, is MIG on there?",
        command: "nvidia-smi -mig 1 {i}",
    },
    Kind {
        request: "disable MIG on {g}",
        question: "could you turn MIG mode off for {g}?",
        negation: "without touching MIG on {g}, show its MIG mode",
        command: "nvidia-smi -mig 0 {i}",
    },
    Kind {
        request: "turn on persistence mode for {g}",
        question: "can you enable persistence mode on {g}?",
        negation: "don't touch persistence mode on {g}; is it enabled?",
        command: "nvidia-smi -pm 1 {i}",
    },
    Kind {
        request: "disable persistence mode on {g}",
        question: "could you switch off persistence mode for {g}?",
        negation: "leave persistence mode on {g} alone, is it on?",
        command: "nvidia-smi -pm 0 {i}",
    },
    Kind {
        request: "lock the clocks of {g} at 1200 MHz",
        question: "can you lock {g} clocks at 1200 MHz?",
        negation: "don't lock the clocks of {g}; what clocks does it run?",
        command: "nvidia-smi -lgc 1200,1200 {i}",
    },
    Kind {
        request: "reset the locked clocks of {g}",
        question: "could you reset the clocks of {g}?",
        negation: "don't reset the clocks of {g}, are they locked?",
        command: "nvidia-smi -rgc {i}",
    },
    Kind {
        request: "enable ECC on {g}",
        question: "can you turn ECC on for {g}?",
        negation: "don't change ECC on {g}; is ECC enabled?",
        command: "nvidia-smi -e 1 {i}",
    },
    Kind {
        request: "clear the ECC error counters of {g}",
        question: "could you reset the ECC counters of {g}?",
        negation: "don't clear the ECC counters of {g}, how many errors are there?",
        command: "nvidia-smi -p 0 {i}",
    },
];

/// How the GPUs are named, and the selector the change must carry
/// (`None`: the question names none, so no change may be offered).
fn namings(snapshot: &Snapshot) -> Vec<(String, Option<String>)> {
    let bus = |index: u32| {
        snapshot
            .gpus
            .iter()
            .find(|g| g.index == index)
            .expect("GPU on the node")
            .pci_bus_id
            .clone()
    };
    // 00000000:B7:00.0 -> 0000:b7:00.0 and b7:00.0
    let long = bus(6);
    let short = long.rsplit_once(':').map_or(String::new(), |(head, tail)| {
        format!("{}:{tail}", &head[head.len() - 2..]).to_ascii_lowercase()
    });
    let domain4 = format!("0000:{short}");
    vec![
        ("GPU 6".into(), Some("-i 6".into())),
        ("GPU 7 only".into(), Some("-i 7".into())),
        ("GPUs 2 and 5".into(), Some("-i 2,5".into())),
        (format!("the GPU at {long}"), Some("-i 6".into())),
        (format!("the GPU at {domain4}"), Some("-i 6".into())),
        (format!("the GPU at {short}"), Some("-i 6".into())),
        ("all GPUs".into(), Some(String::new())),
        ("the GPU".into(), None),
    ]
}

/// The healthy 8-GPU node and its findings.
fn healthy() -> (sigma::sim::SimNode, Vec<sigma::checks::Finding>) {
    let node = sigma::sim::load("h100x8-healthy").expect("simulated node");
    let findings = sigma::checks::run_all(&node.snapshot);
    (node, findings)
}

#[test]
fn no_state_change_of_a_wrong_kind_value_or_scope_is_ever_proposed() {
    let (node, findings) = healthy();
    let snapshot = &node.snapshot;
    let mut failures = Vec::new();
    let mut cases = 0;
    for kind in KINDS {
        for (gpus, selector) in namings(snapshot) {
            let expected = selector.as_ref().map(|s| {
                let command = kind.command.replace("{i}", s);
                guard::normalize(command.trim()).expect("expected command is catalogued")
            });
            // The change also said by reference: "apply it" is the one the
            // sentence before describes.
            let referred = format!("the runbook step is to {}. apply it", kind.request);
            let refused = format!(
                "the runbook step is to {}. don't apply it yet",
                kind.request
            );
            for (phrasing, text) in [
                ("request", kind.request),
                ("question", kind.question),
                ("negation", kind.negation),
                ("reference", &referred),
                ("negation", &refused),
            ] {
                cases += 1;
                let question = text.replace("{g}", &gpus);
                let candidates = rank::rank(&question, snapshot, &findings, 3);
                let changes: Vec<String> = candidates
                    .iter()
                    .filter(|c| c.tier == Tier::StateChanging)
                    .map(|c| guard::normalize(&c.command).unwrap_or_else(|| c.command.clone()))
                    .collect();
                let wanted = match (phrasing, &expected) {
                    ("negation", _) | (_, None) => None,
                    (_, Some(e)) => Some(e),
                };
                let ok = match wanted {
                    // Exactly the change asked, first, and no other change.
                    Some(e) => {
                        changes.len() == 1
                            && changes[0]
                                == guard::normalize(&candidates[0].command).unwrap_or_default()
                            && &changes[0] == e
                    }
                    None => changes.is_empty(),
                };
                if !ok {
                    failures.push(format!(
                        "{question:?}: expected {wanted:?}, proposed changes {changes:?}"
                    ));
                }
                // Asked for a change on no GPU in particular: say what is missing.
                if phrasing != "negation" && expected.is_none() {
                    let held = rank::held_back(&question, snapshot, &candidates);
                    if !held.as_deref().is_some_and(|h| h.contains("which GPUs")) {
                        failures.push(format!(
                            "{question:?}: no word on what is missing: {held:?}"
                        ));
                    }
                }
            }
        }
    }
    assert!(cases >= 400, "{cases} cases");
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn a_change_without_its_value_is_held_back_with_the_reason() {
    let (node, findings) = healthy();
    let snapshot = &node.snapshot;
    for (question, missing) in [
        ("lower the power limit of GPU 3", "say the value"),
        ("switch MIG mode on GPU 3", "on or off"),
        ("set the compute mode of GPU 3", "which mode"),
        ("change something on GPU 3", "which setting"),
    ] {
        let candidates = rank::rank(question, snapshot, &findings, 3);
        assert!(
            candidates.iter().all(|c| c.tier != Tier::StateChanging),
            "{question}: {candidates:?}"
        );
        let held = rank::held_back(question, snapshot, &candidates).unwrap_or_default();
        assert!(held.contains(missing), "{question}: {held}");
    }
}

#[test]
fn the_gpus_of_the_asking_sentence_are_the_scope() {
    let (node, findings) = healthy();
    let snapshot = &node.snapshot;
    for (question, expected) in [
        (
            "Please enable MIG mode on GPU 7 only. Leave GPUs 0 to 6 as they are.",
            "nvidia-smi -i 7 -mig 1",
        ),
        (
            "GPUs 2 and 3 are fine. Reset GPU 5, nothing else.",
            "nvidia-smi -r -i 5",
        ),
        ("GPU 3 is hung and drained. Reset it.", "nvidia-smi -r -i 3"),
    ] {
        let candidates = rank::rank(question, snapshot, &findings, 3);
        let changes: Vec<Option<String>> = candidates
            .iter()
            .filter(|c| c.tier == Tier::StateChanging)
            .map(|c| guard::normalize(&c.command))
            .collect();
        assert_eq!(changes, vec![guard::normalize(expected)], "{question}");
    }
}
