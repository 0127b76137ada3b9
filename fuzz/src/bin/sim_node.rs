//! Fuzz target: the simulated-node loader on any node file.
fn main() {
    afl::fuzz!(|data: &[u8]| sigma_fuzz::sim_node(data));
}
