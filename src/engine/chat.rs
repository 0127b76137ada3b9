//! Chat prompts: renders the model's own Jinja chat template.
//!
//! GGUF files carry the Hugging Face template as `tokenizer.chat_template`.
//! It is rendered with `minijinja` set up like Hugging Face's renderer:
//! `trim_blocks` and `lstrip_blocks` on, Python string methods
//! (`.strip()`, `.startswith()`, ...) through `minijinja-contrib`'s pycompat,
//! loop controls, `tojson`, and a `raise_exception(msg)` function. The
//! context holds `messages` (role and content), `add_generation_prompt`,
//! `bos_token` and `eos_token`.
//!
//! # Example
//!
//! ```
//! use sigma::engine::chat::{ChatTemplate, Message};
//! let t = ChatTemplate::new(
//!     "{% for m in messages %}<|{{ m.role }}|>{{ m.content.strip() }}\n{% endfor %}",
//!     "<s>",
//!     "</s>",
//! )?;
//! let text = t.render(&[Message::user(" hi ")], false)?;
//! assert_eq!(text, "<|user|>hi\n");
//! # Ok::<(), sigma::engine::chat::ChatError>(())
//! ```

use std::path::PathBuf;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, ErrorKind, Value, context};
use serde::Serialize;

use crate::engine::ffi::gguf::{GgufError, GgufFile};
use crate::engine::tokenizer::Tokenizer;

/// The template's name inside the minijinja environment.
const NAME: &str = "chat";

/// Why a chat template could not be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The model file has no template.
    #[error(
        "'{0}' has no chat template (tokenizer.chat_template); use an instruct/chat model such as qwen2.5-coder-0.5b"
    )]
    NoTemplate(PathBuf),
    /// Reading the GGUF key failed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The template does not parse.
    #[error("chat template does not parse: {0:#}")]
    Syntax(minijinja::Error),
    /// Rendering failed (including `raise_exception` from the template).
    #[error("chat template failed to render: {0:#}")]
    Render(minijinja::Error),
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `system`, `user`, `assistant` (or `tool`).
    pub role: String,
    /// The turn's text.
    pub content: String,
}

impl Message {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A compiled chat template with the model's BOS/EOS texts.
pub struct ChatTemplate {
    /// Holds the compiled template under [`NAME`].
    env: Environment<'static>,
    /// Text of the BOS token (`bos_token` in the template).
    bos: String,
    /// Text of the EOS token (`eos_token` in the template).
    eos: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

/// The template function `raise_exception(msg)`: fails the render with `msg`.
fn raise_exception(msg: String) -> Result<String, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
}

impl ChatTemplate {
    /// Compiles `source` with the given BOS and EOS texts.
    pub fn new(
        source: impl Into<String>,
        bos: impl Into<String>,
        eos: impl Into<String>,
    ) -> Result<Self, ChatError> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(ChatError::Syntax)?;
        env.set_syntax(syntax);
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned(NAME, source.into())
            .map_err(ChatError::Syntax)?;
        Ok(Self {
            env,
            bos: bos.into(),
            eos: eos.into(),
        })
    }

    /// Loads the template of `gguf`, taking BOS/EOS texts from `tokenizer`.
    pub fn from_gguf(gguf: &GgufFile, tokenizer: &Tokenizer) -> Result<Self, ChatError> {
        let source: String = gguf
            .get("tokenizer.chat_template")?
            .ok_or_else(|| ChatError::NoTemplate(gguf.path().to_path_buf()))?;
        let text = |id: Option<u32>| {
            id.and_then(|id| tokenizer.token_text(id))
                .unwrap_or_default()
        };
        Self::new(source, text(tokenizer.bos()), text(tokenizer.eos()))
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends with
    /// the header of the assistant's next turn.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let template = self.env.get_template(NAME).map_err(ChatError::Render)?;
        template
            .render(context! {
                messages => Value::from(Serde(messages)),
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos,
                eos_token => &self.eos,
            })
            .map_err(ChatError::Render)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ChatML template SmolLM2 ships (with its default system prompt).
    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn chatml_with_generation_prompt() {
        let t = ChatTemplate::new(CHATML, "", "<|im_end|>").unwrap();
        let out = t
            .render(&[Message::system("Be brief."), Message::user("hi")], true)
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn chatml_default_system_prompt() {
        let t = ChatTemplate::new(CHATML, "", "<|im_end|>").unwrap();
        let out = t.render(&[Message::user("hi")], false).unwrap();
        assert!(
            out.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"),
            "{out}"
        );
        assert!(out.ends_with("<|im_start|>user\nhi<|im_end|>\n"), "{out}");
    }

    #[test]
    fn raise_exception_fails_the_render() {
        let t = ChatTemplate::new(
            "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}",
            "",
            "",
        )
        .unwrap();
        let err = t.render(&[Message::assistant("x")], false).unwrap_err();
        assert!(err.to_string().contains("first must be user"), "{err}");
    }

    #[test]
    fn python_string_methods_and_loop_controls() {
        let t = ChatTemplate::new(
            "{% for m in messages %}{% if m.content.startswith('#') %}{% continue %}{% endif %}[{{ m.content.strip() }}]{% endfor %}{{ bos_token }}",
            "<s>",
            "",
        )
        .unwrap();
        let out = t
            .render(
                &[
                    Message::user(" a "),
                    Message::user("# skip"),
                    Message::user("b"),
                ],
                false,
            )
            .unwrap();
        assert_eq!(out, "[a][b]<s>");
    }

    #[test]
    fn syntax_error_is_reported() {
        let err = ChatTemplate::new("{% for %}", "", "").unwrap_err();
        assert!(matches!(err, ChatError::Syntax(_)), "{err}");
    }
}
