//! Shared helpers for the integration tests: run the real binary, validate JSON.
#![allow(dead_code)] // each test binary uses a different subset

pub mod reference;

use std::path::PathBuf;
use std::process::Output;

use assert_cmd::Command;

/// The `sigma` binary with a clean environment for tests.
pub fn sigma() -> Command {
    let mut cmd = Command::cargo_bin("sigma").expect("sigma binary is built");
    cmd.env_remove("SIGMA_SIMULATE").env("NO_COLOR", "1");
    cmd
}

/// Runs `sigma ARGS` and returns the output (any exit code).
pub fn run(args: &[&str]) -> Output {
    sigma().args(args).output().expect("sigma runs")
}

/// Stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

/// Stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("stderr is UTF-8")
}

/// Validates `doc` against `docs/NAME`, panicking with every error.
pub fn assert_valid(schema_file: &str, doc: &serde_json::Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(schema_file);
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("schema file"))
            .expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "document does not match {schema_file}:\n{}",
        errors.join("\n")
    );
}
