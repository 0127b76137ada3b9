//! Fuzz target: our tokenizer against llama.cpp's on any text
//! (SmolLM2-135M's vocabulary, pulled by `sigma model pull smollm2-135m`).
fn main() {
    let tokenizers = sigma_fuzz::Tokenizers::load(&sigma_fuzz::tokenizer_model());
    afl::fuzz!(|data: &[u8]| tokenizers.check(&String::from_utf8_lossy(data)));
}
