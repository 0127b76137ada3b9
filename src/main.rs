//! The `sigma` binary.

fn main() {
    std::process::exit(sigma::cli::main());
}
