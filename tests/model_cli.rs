//! `sigma model` run as a user would, on the tiny catalog model.

use assert_cmd::Command;
use sigma::engine::registry::Registry;

/// Makes sure the tiny model is in the user's cache; returns its path.
fn tiny_model() -> String {
    let registry = Registry::load().expect("registry");
    let name = registry.tiny_model().to_string();
    registry
        .pull(&name, false)
        .unwrap_or_else(|e| panic!("pull {name}: {e}"))
        .display()
        .to_string()
}

/// Runs `sigma model ARGS` and returns (exit code, stdout, stderr).
fn sigma_model(args: &[&str]) -> (i32, String, String) {
    let out = Command::cargo_bin("sigma")
        .expect("binary")
        .arg("model")
        .args(args)
        .output()
        .expect("run sigma");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn info_json_reports_smollm2_shapes_and_kv_cost() {
    tiny_model();
    let (code, stdout, stderr) = sigma_model(&["info", "smollm2-135m", "--json"]);
    assert_eq!(code, 0, "stderr: {stderr}");
    let info: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(info["arch"], "llama");
    assert_eq!(info["n_layer"], 30);
    assert_eq!(info["n_embd"], 576);
    assert_eq!(info["n_head"], 9);
    assert_eq!(info["n_head_kv"], 3);
    assert_eq!(info["head_dim_k"], 64);
    assert_eq!(info["n_ff"], 1536);
    assert_eq!(info["n_vocab"], 49152);
    assert_eq!(info["chat_template"], true);
    // 2 bytes x 30 layers x 3 KV heads x 64 dims, for K and for V.
    assert_eq!(info["kv_k_bytes_per_token"], 11520);
    assert_eq!(info["kv_v_bytes_per_token"], 11520);
    let mix = info["quant_mix"].as_array().expect("quant_mix");
    let tensors: u64 = mix.iter().map(|s| s["tensors"].as_u64().unwrap_or(0)).sum();
    assert_eq!(Some(tensors), info["tensors"].as_u64());
    assert!(
        mix.iter().any(|s| s["ggml_type"] == "q4_1"),
        "no q4_1 in {mix:?}"
    );
}

#[test]
fn info_by_path_matches_info_by_name() {
    let path = tiny_model();
    let by_name = sigma_model(&["info", "smollm2-135m", "--json"]);
    let by_path = sigma_model(&["info", &path, "--json"]);
    assert_eq!(by_name.0, 0, "{}", by_name.2);
    assert_eq!(by_name.1, by_path.1);
}

#[test]
fn path_prints_the_cached_file() {
    let path = tiny_model();
    let (code, stdout, stderr) = sigma_model(&["path", "smollm2-135m"]);
    assert_eq!(code, 0, "stderr: {stderr}");
    assert_eq!(stdout.trim(), path);
}

#[test]
fn list_json_names_every_model_and_the_default() {
    let (code, stdout, stderr) = sigma_model(&["list", "--json"]);
    assert_eq!(code, 0, "stderr: {stderr}");
    let list: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(names, ["qwen2.5-coder-0.5b", "smollm2-135m"]);
    assert_eq!(list[0]["default"], true);
}

#[test]
fn unknown_model_is_one_clear_line() {
    let (code, stdout, stderr) = sigma_model(&["info", "gpt-9"]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert_eq!(
        stderr.trim(),
        "sigma: error: unknown model 'gpt-9'; known: qwen2.5-coder-0.5b, smollm2-135m; or pass the path of a .gguf file"
    );
}

#[test]
fn not_gguf_file_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("fake.gguf");
    std::fs::write(&file, b"<html>not a model</html>").expect("write");
    let (code, _, stderr) = sigma_model(&["info", &file.display().to_string()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("is not a GGUF file"), "{stderr}");
}

#[test]
fn path_of_missing_model_says_how_to_pull() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, stderr) = sigma_model(&[
        "--models-dir",
        &dir.path().display().to_string(),
        "path",
        "smollm2-135m",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("run `sigma model pull smollm2-135m`"),
        "{stderr}"
    );
}
