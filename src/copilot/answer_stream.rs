//! Streams the `answer` string out of the JSON reply while it is generated.
//!
//! The model writes `{"answer": "...", "commands": [...]}`; the user should
//! see the answer text as it is decoded, unescaped, not the JSON around it.

/// Incremental extractor of the first `"answer": "..."` value.
#[derive(Debug, Default)]
pub struct AnswerStream {
    /// Everything generated so far.
    seen: String,
    /// Byte offset in `seen` where the answer's text starts, once known.
    start: Option<usize>,
    /// Bytes of `seen` already handed out (from `start`).
    done: usize,
    /// The answer's closing quote was seen.
    closed: bool,
}

impl AnswerStream {
    const KEY: &'static str = "\"answer\": \"";

    /// Feeds newly generated text; returns the answer text it completes
    /// (unescaped), possibly empty.
    pub fn push(&mut self, piece: &str) -> String {
        self.seen.push_str(piece);
        if self.closed {
            return String::new();
        }
        if self.start.is_none() {
            let Some(i) = self.seen.find(Self::KEY) else {
                return String::new();
            };
            self.start = Some(i + Self::KEY.len());
            self.done = i + Self::KEY.len();
        }
        let mut out = String::new();
        let bytes = self.seen.as_bytes();
        let mut i = self.done;
        while i < bytes.len() {
            match bytes[i] {
                b'"' => {
                    self.closed = true;
                    i += 1;
                    break;
                }
                b'\\' => {
                    // An escape needs its following byte(s); wait for them.
                    let Some(&next) = bytes.get(i + 1) else { break };
                    match next {
                        b'n' => out.push('\n'),
                        b't' => out.push('\t'),
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'u' => {
                            let Some(hex) = self.seen.get(i + 2..i + 6) else {
                                break;
                            };
                            if let Some(c) =
                                u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
                            {
                                out.push(c);
                            }
                            i += 6;
                            continue;
                        }
                        other => out.push(other as char),
                    }
                    i += 2;
                }
                _ => {
                    // Copy a run of plain text (whole UTF-8 characters).
                    let run_end = self.seen[i..]
                        .find(['"', '\\'])
                        .map_or(self.seen.len(), |j| i + j);
                    out.push_str(&self.seen[i..run_end]);
                    i = run_end;
                }
            }
        }
        self.done = i;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_answer_text_across_pieces_and_escapes() {
        let mut s = AnswerStream::default();
        let pieces = [
            "{\"ans",
            "wer\": \"GPU 2 is ",
            "hot\\",
            "n(86 C) \\\"",
            "x\\\"\", \"com",
            "mands\": []}",
        ];
        let text: String = pieces.iter().map(|p| s.push(p)).collect();
        assert_eq!(text, "GPU 2 is hot\n(86 C) \"x\"");
    }
}
