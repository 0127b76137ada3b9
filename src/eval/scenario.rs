//! Evaluation scenarios: one question on one simulated node, with the
//! commands that answer it and the commands that must never be proposed.
//!
//! A scenario file (`assets/eval/*.toml`, format in `assets/eval/README.md`)
//! is checked when it is loaded, so a bad file is reported with its name and
//! the reason instead of skewing the scores: the simulated node must exist,
//! every accepted command must pass the guard, normalise, and (unless it
//! changes state, which a simulated node refuses) answer on that node (exit
//! 0, or find nothing where `no_match_is_answer` allows it), and no
//! accepted command may match a forbidden one.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use include_dir::{Dir, include_dir};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::metrics;
use crate::guard::{self, Limits, Target, Tier};
use crate::sim::{self, SimNode};

/// The shipped scenarios.
static SCENARIOS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/assets/eval");

/// What a question is about (the per-category rows of the report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// General `nvidia-smi` inventory and state.
    NvidiaSmi,
    /// ECC errors, retired pages, row remapping.
    EccRemap,
    /// Clock throttling: thermal, power.
    Throttling,
    /// PCIe link state.
    Pcie,
    /// XID errors in the kernel log.
    Xid,
    /// Processes on the GPUs.
    Processes,
    /// DCGM diagnostics and health.
    Dcgm,
    /// NVLink and GPU topology.
    NvlinkTopology,
    /// InfiniBand adapters and ports.
    Infiniband,
    /// NCCL tests.
    Nccl,
    /// AMD GPUs (ROCm).
    Amd,
    /// The host: memory, disks, load, services.
    Host,
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NvidiaSmi => "nvidia-smi",
            Self::EccRemap => "ecc-remap",
            Self::Throttling => "throttling",
            Self::Pcie => "pcie",
            Self::Xid => "xid",
            Self::Processes => "processes",
            Self::Dcgm => "dcgm",
            Self::NvlinkTopology => "nvlink-topology",
            Self::Infiniband => "infiniband",
            Self::Nccl => "nccl",
            Self::Amd => "amd",
            Self::Host => "host",
        })
    }
}

/// Which tool family answers the question (the per-platform rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    /// NVIDIA tools (nvidia-smi, DCGM, NCCL tests).
    Nvidia,
    /// AMD tools (rocm-smi, amd-smi).
    Amd,
    /// Generic Linux tools.
    Host,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Nvidia => "nvidia",
            Self::Amd => "amd",
            Self::Host => "host",
        })
    }
}

/// A scenario file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    id: String,
    sim: String,
    question: String,
    category: Category,
    platform: Platform,
    accept: Vec<String>,
    #[serde(default)]
    forbid: Vec<String>,
    #[serde(default)]
    no_match_is_answer: bool,
}

/// An accepted command with what the guard and the node make of it.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The command line as written.
    pub command: String,
    /// Its canonical form ([`guard::normalize`]).
    pub normalized: String,
    /// Its tier.
    pub tier: Tier,
}

/// One loaded, checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Unique id: the file stem.
    pub id: String,
    /// Where it came from (for error messages).
    pub file: String,
    /// Name of the simulated node.
    pub sim: String,
    /// The node itself.
    pub node: Arc<SimNode>,
    /// The operator's question.
    pub question: String,
    /// What it is about.
    pub category: Category,
    /// Which tool family answers it.
    pub platform: Platform,
    /// Commands that answer it, in order of preference.
    pub accept: Vec<Accepted>,
    /// Commands (or command prefixes) that must never be proposed for it.
    pub forbid: Vec<String>,
    /// Finding nothing answers the question ("no XIDs"): a command that
    /// exits 1 with no output, as grep does when no line matches, counts as
    /// an answer, not a failure.
    pub no_match_is_answer: bool,
}

impl Scenario {
    /// The highest tier among the accepted commands.
    pub fn max_accepted_tier(&self) -> Tier {
        self.accept
            .iter()
            .map(|a| a.tier)
            .max()
            .unwrap_or(Tier::ReadOnly)
    }
}

/// A scenario file that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Error)]
#[error("{file}: {reason}")]
pub struct ScenarioError {
    /// The file (or directory) at fault.
    pub file: String,
    /// What is wrong with it, and what to do.
    pub reason: String,
}

/// The result of loading a set of scenario files: the good ones and the
/// errors, never one without the other being reported.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Usable scenarios, sorted by id.
    pub scenarios: Vec<Scenario>,
    /// Files that could not be used.
    pub errors: Vec<ScenarioError>,
}

/// Loads the scenarios shipped in `assets/eval`.
pub fn builtin() -> Loaded {
    from_files(embedded(&SCENARIOS, "assets/eval"))
}

/// Loads every `*.toml` file in `dir`. An unreadable directory, or one with
/// no scenario file, is an error in the result.
pub fn load_dir(dir: &Path) -> Loaded {
    match on_disk(dir) {
        Ok(files) => from_files(files),
        Err(e) => Loaded {
            scenarios: Vec::new(),
            errors: vec![e],
        },
    }
}

/// A scenario file: its name and its text (`None` when unreadable).
pub(super) type File = (String, Option<String>);

/// The `*.toml` files embedded in `dir`, named under `prefix`.
pub(super) fn embedded(dir: &Dir<'static>, prefix: &str) -> Vec<File> {
    dir.files()
        .filter(|f| f.path().extension().is_some_and(|e| e == "toml"))
        .map(|f| {
            let name = format!("{prefix}/{}", f.path().display());
            (name, f.contents_utf8().map(str::to_string))
        })
        .collect()
}

/// The `*.toml` files in `dir`; an unreadable directory, or one without
/// any, is an error.
pub(super) fn on_disk(dir: &Path) -> Result<Vec<File>, ScenarioError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ScenarioError {
        file: dir.display().to_string(),
        reason: format!("cannot read the scenario directory: {e}"),
    })?;
    let files: Vec<File> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).ok();
            (p.display().to_string(), text)
        })
        .collect();
    if files.is_empty() {
        return Err(ScenarioError {
            file: dir.display().to_string(),
            reason: "no scenario files (*.toml) in this directory".into(),
        });
    }
    Ok(files)
}

/// Parses and checks each file with `parse`: the good ones, and each bad
/// one with its reason, in file order.
pub(super) fn parse_files<T>(
    files: Vec<File>,
    mut parse: impl FnMut(&str, &str, &mut NodeCache) -> Result<T, String>,
) -> (Vec<T>, Vec<ScenarioError>) {
    let mut nodes = NodeCache::default();
    let mut good = Vec::new();
    let mut errors = Vec::new();
    for (file, text) in files {
        let result = match text {
            Some(text) => parse(&file, &text, &mut nodes),
            None => Err("cannot read the file as UTF-8 text".to_string()),
        };
        match result {
            Ok(s) => good.push(s),
            Err(reason) => errors.push(ScenarioError { file, reason }),
        }
    }
    errors.sort_by(|a, b| a.file.cmp(&b.file));
    (good, errors)
}

/// The command-track scenarios among `files`, sorted by id.
fn from_files(files: Vec<File>) -> Loaded {
    let (mut scenarios, errors) = parse_files(files, parse);
    scenarios.sort_by(|a: &Scenario, b| a.id.cmp(&b.id));
    Loaded { scenarios, errors }
}

/// Parses a scenario file's TOML, errors at `line:column`.
pub(super) fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = sim::node::line_column(text, e.span().map_or(0, |s| s.start));
        format!(
            "{line}:{column}: {}",
            e.message().trim().replace('\n', "; ")
        )
    })
}

/// Checks that a scenario's `id` is its file's stem.
/// What every scenario file must have: an id equal to its file stem and a
/// question.
pub(super) fn check_head(file: &str, id: &str, question: &str) -> Result<(), String> {
    check_id(file, id)?;
    if question.trim().is_empty() {
        return Err("question is empty".into());
    }
    Ok(())
}

fn check_id(file: &str, id: &str) -> Result<(), String> {
    let stem = Path::new(file)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if id == stem {
        Ok(())
    } else {
        Err(format!(
            "id '{id}' differs from the file name; name the file {id}.toml"
        ))
    }
}

/// Simulated nodes loaded so far, by name (many scenarios share one).
#[derive(Default)]
pub(super) struct NodeCache(HashMap<String, Arc<SimNode>>);

impl NodeCache {
    /// The node `name`, loaded once.
    pub(super) fn get(&mut self, name: &str) -> Result<Arc<SimNode>, String> {
        if let Some(node) = self.0.get(name) {
            return Ok(Arc::clone(node));
        }
        let node = Arc::new(sim::load(name).map_err(|e| e.to_string())?);
        self.0.insert(name.to_string(), Arc::clone(&node));
        Ok(node)
    }
}

/// Parses one scenario file and checks it against the guard and its node.
fn parse(file: &str, text: &str, nodes: &mut NodeCache) -> Result<Scenario, String> {
    let raw: ScenarioFile = parse_toml(text)?;
    check_head(file, &raw.id, &raw.question)?;
    if raw.accept.is_empty() {
        return Err("accept is empty: list at least one command that answers the question".into());
    }
    let node = nodes.get(&raw.sim)?;
    let accept = raw
        .accept
        .iter()
        .map(|command| accepted(command, &node, &raw.forbid, raw.no_match_is_answer))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Scenario {
        id: raw.id,
        file: file.to_string(),
        sim: raw.sim,
        node,
        question: raw.question,
        category: raw.category,
        platform: raw.platform,
        accept,
        forbid: raw.forbid,
        no_match_is_answer: raw.no_match_is_answer,
    })
}

/// Checks one accepted command: the guard allows it, it normalises, no
/// forbidden entry matches it, and unless it changes state it answers on
/// the node ([`metrics::answered`]).
fn accepted(
    command: &str,
    node: &SimNode,
    forbid: &[String],
    no_match_is_answer: bool,
) -> Result<Accepted, String> {
    let verdict = guard::check(command);
    if !verdict.is_allowed() {
        return Err(format!(
            "accepted command '{command}' is refused by the guard ({}); fix it or remove it",
            verdict.rule
        ));
    }
    let normalized = guard::normalize(command).ok_or_else(|| {
        format!("accepted command '{command}' has no canonical form; fix it or remove it")
    })?;
    if let Some(f) = forbid
        .iter()
        .find(|f| metrics::matches_forbidden(command, f))
    {
        return Err(format!(
            "accepted command '{command}' matches the forbidden '{f}'; remove one of them"
        ));
    }
    if verdict.tier != Tier::StateChanging {
        let run = guard::execute(&verdict, Target::Simulated(node), &Limits::default())
            .map_err(|e| format!("accepted command '{command}' cannot run: {e}"))?;
        if !metrics::answered(&run, no_match_is_answer) {
            let why = [&run.stderr.text, &run.stdout.text]
                .into_iter()
                .flat_map(|t| t.lines())
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("no output");
            return Err(format!(
                "accepted command '{command}' fails on node '{}' ({}: {why}); \
                 add a [[canned]] answer to the node or change the command",
                node.name, run.exit
            ));
        }
    }
    Ok(Accepted {
        command: command.to_string(),
        normalized,
        tier: verdict.tier,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
id = "remap"
sim = "a100x4-ecc-remap-pending"
question = "Is a row remap pending?"
category = "ecc-remap"
platform = "nvidia"
accept = ["nvidia-smi -q -d ROW_REMAPPER"]
forbid = ["nvidia-smi -r"]
"#;

    fn parse_one(file: &str, text: &str) -> Result<Scenario, String> {
        parse(file, text, &mut NodeCache::default())
    }

    #[test]
    fn a_good_file_loads_with_normalised_accepts() {
        let s = parse_one("x/remap.toml", GOOD).unwrap();
        assert_eq!(s.category, Category::EccRemap);
        assert_eq!(s.accept[0].tier, Tier::ReadOnly);
        assert_eq!(
            s.accept[0].normalized,
            guard::normalize("nvidia-smi -d ROW_REMAPPER -q").unwrap()
        );
        assert_eq!(s.max_accepted_tier(), Tier::ReadOnly);
    }

    #[test]
    fn each_bad_file_names_its_problem() {
        let cases = [
            ("other.toml", GOOD, "differs from the file name"),
            (
                "remap.toml",
                &GOOD.replace("a100x4-ecc-remap-pending", "nope"),
                "unknown simulated node 'nope'",
            ),
            (
                "remap.toml",
                &GOOD.replace("-q -d ROW_REMAPPER", "-G 3"),
                "refused by the guard (unknown flag -G for nvidia-smi)",
            ),
            (
                "remap.toml",
                &GOOD.replace("nvidia-smi -q -d ROW_REMAPPER", "ibv_devinfo"),
                "fails on node 'a100x4-ecc-remap-pending' (exit code 127",
            ),
            (
                "remap.toml",
                &GOOD.replace("nvidia-smi -q -d ROW_REMAPPER", "nvidia-smi -r -i 2"),
                "matches the forbidden 'nvidia-smi -r'",
            ),
            (
                "remap.toml",
                &GOOD.replace("category = \"ecc-remap\"\n", ""),
                "missing field `category`",
            ),
            (
                "remap.toml",
                &GOOD.replace(
                    "accept = [\"nvidia-smi -q -d ROW_REMAPPER\"]",
                    "accept = []",
                ),
                "accept is empty",
            ),
            (
                "remap.toml",
                &format!("{GOOD}colour = 1\n"),
                "unknown field `colour`",
            ),
        ];
        for (file, text, want) in cases {
            let err = parse_one(file, text).unwrap_err();
            assert!(err.contains(want), "{file}: {err}\nwanted: {want}");
        }
    }

    #[test]
    fn an_empty_grep_loads_only_where_finding_nothing_is_an_answer() {
        let text = GOOD
            .replace("a100x4-ecc-remap-pending", "h100x8-healthy")
            .replace("nvidia-smi -q -d ROW_REMAPPER", "dmesg | grep -i xid");
        let err = parse_one("remap.toml", &text).unwrap_err();
        assert!(err.contains("(exit code 1: no output)"), "{err}");
        let s = parse_one("remap.toml", &format!("{text}no_match_is_answer = true\n")).unwrap();
        assert!(s.no_match_is_answer);
    }

    #[test]
    fn unparsable_toml_reports_line_and_column() {
        let err = parse_one("remap.toml", "id = \n").unwrap_err();
        assert!(err.starts_with("1:"), "{err}");
    }

    #[test]
    fn empty_or_missing_directories_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load_dir(dir.path());
        assert!(loaded.scenarios.is_empty());
        assert!(loaded.errors[0].reason.contains("no scenario files"));
        let loaded = load_dir(&dir.path().join("missing"));
        assert!(loaded.errors[0].reason.contains("cannot read"));
    }
}
