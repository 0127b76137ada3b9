//! Fuzz target: the GGUF reader on any file.
fn main() {
    afl::fuzz!(|data: &[u8]| sigma_fuzz::gguf(data));
}
