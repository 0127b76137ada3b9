//! Fuzz target: the guard's parser and classifier on any command line.
fn main() {
    afl::fuzz!(|data: &[u8]| sigma_fuzz::guard(&String::from_utf8_lossy(data)));
}
