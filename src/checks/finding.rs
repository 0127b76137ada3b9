//! The [`Finding`] type: one problem (or notable fact) found on a node.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How bad a finding is. Ordered: `Info < Warning < Critical`.
#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing; nothing to do now.
    Info,
    /// Degraded or at risk; look at it.
    Warning,
    /// Broken or about to be; act now.
    Critical,
}

impl Severity {
    /// Lower-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One result of a rule.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// Stable id of the rule and subject, e.g. `xid-79`, `remap-pending`.
    pub id: String,
    /// How bad it is.
    pub severity: Severity,
    /// NVML index of the GPU concerned, when it is about one GPU.
    #[serde(default)]
    pub gpu: Option<u32>,
    /// One line for humans.
    pub title: String,
    /// The values that triggered the rule, by name.
    #[serde(default)]
    pub evidence: BTreeMap<String, String>,
    /// Commands to run next, as argv (read-only ones first).
    #[serde(default)]
    pub commands: Vec<Vec<String>>,
    /// Why this matters and what to do.
    pub why: String,
}
