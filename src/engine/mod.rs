//! The in-process inference engine: GGUF files, tokenizer, chat templates,
//! the model registry and the ggml-backed model.
//!
//! All unsafe code lives in [`ffi`]; every other module is safe Rust.

pub mod attention;
pub mod attention_bench;
pub mod chat;
pub mod convert;
pub mod device;
mod error;
pub mod ffi;
pub mod info;
pub mod kv_cache;
pub mod model;
pub mod peer;
pub mod registry;
pub mod sampling;
pub mod session;
pub mod stock_attention;
pub mod tokenizer;
pub mod weights;

pub use error::EngineError;
