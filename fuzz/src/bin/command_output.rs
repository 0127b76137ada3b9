//! Fuzz target: the command-output interpreters on any output of any
//! command (first line the command, the rest its output).
fn main() {
    afl::fuzz!(|data: &[u8]| sigma_fuzz::command_output(&String::from_utf8_lossy(data)));
}
