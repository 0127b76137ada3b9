//! The question bank (`assets/bank`): how operators ask for things, each
//! with the command that answers it. Retrieval finds the solved questions
//! nearest to a new one; their commands join the catalogue's candidates
//! ([`super::rank`]). The bank is data: adding a pair needs no code.

use std::sync::OnceLock;

use bm25::{Language, SearchEngine, SearchEngineBuilder};
use include_dir::{Dir, include_dir};
use serde::Deserialize;

/// The bank's files, embedded.
static FILES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/assets/bank");

/// One solved question.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pair {
    /// The question as an operator typed it.
    pub question: String,
    /// The command that answers it, scoped to the GPUs the question names.
    pub command: String,
    /// Where the need or the command comes from.
    pub source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    pair: Vec<Pair>,
}

/// Every pair, in file order; a file that does not parse is an error
/// naming it (`tests/bank.rs` keeps them parsing).
pub fn load() -> anyhow::Result<Vec<Pair>> {
    let mut files: Vec<_> = FILES
        .files()
        .filter(|f| f.path().extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort_by_key(|f| f.path());
    let mut out = Vec::new();
    for f in files {
        let text = f.contents_utf8().unwrap_or_default();
        let file: File = toml::from_str(text)
            .map_err(|e| anyhow::anyhow!("assets/bank/{}: {e}", f.path().display()))?;
        out.extend(file.pair);
    }
    Ok(out)
}

/// The pairs, loaded once; empty if the embedded bank does not parse (a
/// test fails first).
pub fn pairs() -> &'static [Pair] {
    static PAIRS: OnceLock<Vec<Pair>> = OnceLock::new();
    PAIRS.get_or_init(|| load().unwrap_or_default())
}

/// The BM25 index over the pairs' questions; ids are indexes into
/// [`pairs`].
fn index() -> &'static SearchEngine<u32> {
    static INDEX: OnceLock<SearchEngine<u32>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let docs: Vec<String> = pairs().iter().map(|p| p.question.clone()).collect();
        SearchEngineBuilder::<u32>::with_corpus(Language::English, docs).build()
    })
}

/// The `n` solved questions nearest to `question`, best first, with their
/// scores; ties in bank order.
pub fn nearest(question: &str, n: usize) -> Vec<(f32, &'static Pair)> {
    let pairs = pairs();
    // Every match, then the best `n`: the index returns ties in hash
    // order, so cutting there would change the answer from run to run.
    let mut hits: Vec<(f32, u32)> = index()
        .search(question, pairs.len())
        .into_iter()
        .map(|h| (h.score, h.document.id))
        .collect();
    hits.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    hits.truncate(n);
    hits.into_iter()
        .filter_map(|(score, id)| Some((score, pairs.get(id as usize)?)))
        .collect()
}
