//! Fuzz target: the kernel-log XID parser on any log text.
fn main() {
    afl::fuzz!(|data: &[u8]| sigma_fuzz::xid_log(&String::from_utf8_lossy(data)));
}
