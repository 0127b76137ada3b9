//! The JSON Schema files in `docs/` are generated from the Rust types; this
//! test fails when they drift. Regenerate with `SIGMA_UPDATE_SCHEMA=1 cargo test --test schema`.

use std::path::PathBuf;

fn check(file: &str, schema: schemars::Schema) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(file);
    let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
    if std::env::var_os("SIGMA_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        committed == generated,
        "{} is out of date: run `SIGMA_UPDATE_SCHEMA=1 cargo test --test schema`",
        path.display()
    );
}

#[test]
fn snapshot_schema_is_current() {
    check(
        "snapshot.schema.json",
        schemars::schema_for!(sigma::probe::Snapshot),
    );
}

#[test]
fn doctor_schema_is_current() {
    check(
        "doctor.schema.json",
        schemars::schema_for!(sigma::report::DoctorReport),
    );
}

#[test]
fn verdict_schema_is_current() {
    check(
        "verdict.schema.json",
        schemars::schema_for!(sigma::report::verdict::Verdict),
    );
}

#[test]
fn fleet_schema_is_current() {
    check(
        "fleet.schema.json",
        schemars::schema_for!(sigma::report::fleet::FleetReport),
    );
}
