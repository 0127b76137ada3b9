//! Fuzz target: the eval scenario loader on any scenario file.
fn main() {
    afl::fuzz!(|data: &[u8]| sigma_fuzz::scenario(data));
}
