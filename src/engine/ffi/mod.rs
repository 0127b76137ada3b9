//! Safe wrappers over the C API of ggml/llama.cpp (`llama-cpp-sys-2`).
//!
//! This is the only place in the crate that may contain `unsafe` code. Each
//! wrapper owns its C object, frees it on drop and checks every argument it
//! hands to C so that bad input becomes an error, never an abort.

pub mod cpu;
pub mod ggml;
pub mod gguf;
pub mod llama_lib;
