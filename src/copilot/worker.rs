//! The assistant on a thread of its own, for front ends that must stay
//! responsive while the model loads and answers (the TUI).
//!
//! # Why a thread
//! [`super::local::LocalAssistant`] is not `Send`: its session holds ggml
//! pointers. So the thread that uses it must be the one that makes it:
//! [`Worker::spawn`] takes a *loader* (which is `Send`), calls it on the new
//! thread, and from then on answers [`Question`]s sent over a channel. The
//! caller never waits: questions sent while the model loads are queued and
//! answered once it is ready.
//!
//! # What comes back
//! Every [`Message`] goes to the `send` callback given to
//! [`Worker::spawn`], in order: [`Message::Loaded`] or
//! [`Message::LoadFailed`] once, then for each question its
//! [`Message::Prefill`] progress, its [`Message::Text`] pieces as they are
//! decoded, and exactly one [`Message::Done`] with the whole reply or the
//! error as one line. After a failed load every question is answered with
//! that failure.
//!
//! # Cancelling
//! [`Worker::cancel`] sets the flag the loader handed to the assistant; the
//! engine stops between tokens and the question ends with
//! `Done(Err(..))`. A question still waiting in the queue is dropped the
//! same way.
//!
//! ```no_run
//! use sigma::copilot::worker::{Message, Worker};
//! # fn load(_: std::sync::Arc<std::sync::atomic::AtomicBool>)
//! #     -> Result<Box<dyn sigma::copilot::Assistant>, String> { Err("no model".into()) }
//! let (tx, rx) = std::sync::mpsc::channel();
//! let worker = Worker::spawn(load, move |m: Message| tx.send(m).is_ok());
//! assert!(matches!(rx.recv(), Ok(Message::LoadFailed(_))));
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use super::{Assistant, Event, NodeContext, Reply, Turn};
use crate::checks::Finding;
use crate::probe::Snapshot;

/// One question for the worker, with everything the assistant reads.
#[derive(Debug, Clone)]
pub struct Question {
    /// The node's state when asked.
    pub snapshot: Snapshot,
    /// The checks' findings over it.
    pub findings: Vec<Finding>,
    /// Earlier turns of the conversation.
    pub history: Vec<Turn>,
    /// What to ask.
    pub prompt: String,
}

/// What the worker reports.
#[derive(Debug, Clone)]
pub enum Message {
    /// The model is loaded and answers questions now.
    Loaded {
        /// Its name.
        model: String,
        /// Seconds the load took.
        seconds: f64,
    },
    /// The model could not be loaded (one line); questions get this reason.
    LoadFailed(String),
    /// The question's prompt is being evaluated: tokens done of total.
    Prefill {
        /// Tokens evaluated.
        done: usize,
        /// Tokens in the prompt.
        total: usize,
    },
    /// A piece of the answer, as soon as it is decoded.
    Text {
        /// The piece.
        piece: String,
        /// Pieces of answer text so far (one per decoded token, roughly).
        tokens: usize,
        /// Their rate since the first piece, per second (0 at the first).
        tokens_per_s: f64,
    },
    /// The question is answered: the reply, or why not (one line).
    Done(Result<Reply, String>),
}

/// Loads the assistant on the worker's thread, given the cancel flag to
/// hand to it. `Err` is the one line shown instead of answers.
pub type Loader = Box<dyn FnOnce(Arc<AtomicBool>) -> Result<Box<dyn Assistant>, String> + Send>;

/// The handle of a worker thread. Dropping it lets the thread end after
/// the current question; [`Worker::stop`] also cancels that one.
#[derive(Debug)]
pub struct Worker {
    /// Questions for the thread.
    questions: Sender<Question>,
    /// The flag the assistant polls between tokens.
    cancel: Arc<AtomicBool>,
    /// Disconnects when the thread ends (its sender is dropped then).
    ended: Receiver<()>,
}

impl Worker {
    /// Starts the thread: it calls `load`, reports the outcome, then
    /// answers questions until the handle is dropped or `send` returns
    /// false (its receiver is gone).
    pub fn spawn<L, S>(load: L, send: S) -> Worker
    where
        L: FnOnce(Arc<AtomicBool>) -> Result<Box<dyn Assistant>, String> + Send + 'static,
        S: FnMut(Message) -> bool + Send + 'static,
    {
        let (questions, rx) = mpsc::channel();
        let (alive, ended) = mpsc::channel::<()>();
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cancel);
        thread::spawn(move || {
            let _alive = alive;
            serve(load, rx, flag, send);
        });
        Worker {
            questions,
            cancel,
            ended,
        }
    }

    /// Cancels any generation, lets the thread end, and waits for that up
    /// to `wait` (a model still loading cannot be interrupted). Returns
    /// whether it ended: exiting while the engine computes is best avoided.
    pub fn stop(self, wait: Duration) -> bool {
        let Worker {
            questions,
            cancel,
            ended,
        } = self;
        cancel.store(true, Ordering::Relaxed);
        drop(questions);
        matches!(
            ended.recv_timeout(wait),
            Err(mpsc::RecvTimeoutError::Disconnected)
        )
    }

    /// Queues `question`; false when the thread has stopped (it panicked),
    /// in which case no answer will come.
    pub fn ask(&self, question: Question) -> bool {
        self.questions.send(question).is_ok()
    }

    /// Stops the current generation, or drops the queued question.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// The worker thread's body.
fn serve<L, S>(load: L, questions: Receiver<Question>, cancel: Arc<AtomicBool>, mut send: S)
where
    L: FnOnce(Arc<AtomicBool>) -> Result<Box<dyn Assistant>, String>,
    S: FnMut(Message) -> bool,
{
    let start = Instant::now();
    let mut assistant = match load(Arc::clone(&cancel)) {
        Ok(a) => {
            let model = a.model_name().to_string();
            let seconds = start.elapsed().as_secs_f64();
            if !send(Message::Loaded { model, seconds }) {
                return;
            }
            Some(a)
        }
        Err(reason) => {
            if !send(Message::LoadFailed(reason.clone())) {
                return;
            }
            // Every question still gets its one answer: the reason.
            for _ in questions.iter() {
                if !send(Message::Done(Err(reason.clone()))) {
                    return;
                }
            }
            return;
        }
    };
    for question in questions.iter() {
        let Some(assistant) = assistant.as_deref_mut() else {
            return;
        };
        // A cancel that came while the question waited drops it.
        let result = if cancel.swap(false, Ordering::Relaxed) {
            Err(CANCELLED.to_string())
        } else {
            answer(assistant, &question, &mut send)
        };
        // A late cancel (after the last token) must not hit the next question.
        cancel.store(false, Ordering::Relaxed);
        if !send(Message::Done(result)) {
            return;
        }
    }
}

/// The error line of a cancelled question.
pub const CANCELLED: &str = "generation cancelled";

/// Answers one question, streaming its events to `send`.
fn answer(
    assistant: &mut dyn Assistant,
    q: &Question,
    send: &mut dyn FnMut(Message) -> bool,
) -> Result<Reply, String> {
    let node = NodeContext {
        snapshot: &q.snapshot,
        findings: &q.findings,
    };
    let mut tokens = 0usize;
    let mut first: Option<Instant> = None;
    assistant
        .ask(node, &q.history, &q.prompt, &mut |event| match event {
            Event::Prefill(done, total) => {
                send(Message::Prefill { done, total });
            }
            Event::AnswerText(piece) => {
                tokens += 1;
                let since = *first.get_or_insert_with(Instant::now);
                let secs = since.elapsed().as_secs_f64();
                let tokens_per_s = if secs > 0.0 {
                    (tokens - 1) as f64 / secs
                } else {
                    0.0
                };
                send(Message::Text {
                    piece: piece.to_string(),
                    tokens,
                    tokens_per_s,
                });
            }
        })
        .map_err(|e| one_line(&format!("{e:#}")))
}

/// `text` on one line: the first line, with a mark when more was cut.
fn one_line(text: &str) -> String {
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default().to_string();
    if lines.next().is_some() {
        format!("{first} ...")
    } else {
        first
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::copilot::{Proposal, Timings};

    /// Answers with its question, streaming it word by word; fails on
    /// "fail"; with "wait", streams until cancelled.
    struct Echo {
        cancel: Arc<AtomicBool>,
    }

    impl Assistant for Echo {
        fn ask(
            &mut self,
            _: NodeContext<'_>,
            history: &[Turn],
            question: &str,
            on_event: &mut dyn FnMut(Event<'_>),
        ) -> anyhow::Result<Reply> {
            on_event(Event::Prefill(0, 4));
            on_event(Event::Prefill(4, 4));
            if question == "fail" {
                anyhow::bail!("the reply is not JSON\nsecond line");
            }
            if question == "wait" {
                while !self.cancel.load(Ordering::Relaxed) {
                    on_event(Event::AnswerText("."));
                    thread::sleep(Duration::from_millis(5));
                }
                anyhow::bail!("{CANCELLED}");
            }
            for word in question.split_inclusive(' ') {
                on_event(Event::AnswerText(word));
            }
            Ok(Reply {
                answer: format!("{question} ({} turns)", history.len()),
                proposals: vec![Proposal::new("nvidia-smi -L", "list")],
                model: "echo".into(),
                timings: Timings::default(),
            })
        }

        fn model_name(&self) -> &str {
            "echo"
        }
    }

    fn echo(cancel: Arc<AtomicBool>) -> Result<Box<dyn Assistant>, String> {
        Ok(Box::new(Echo { cancel }))
    }

    fn question(prompt: &str) -> Question {
        let node = crate::sim::load("h100x8-thermal-throttle").expect("simulated node");
        Question {
            findings: crate::checks::run_all(&node.snapshot),
            snapshot: node.snapshot,
            history: vec![Turn::User("earlier".into())],
            prompt: prompt.into(),
        }
    }

    fn start(
        load: impl FnOnce(Arc<AtomicBool>) -> Result<Box<dyn Assistant>, String> + Send + 'static,
    ) -> (Worker, Receiver<Message>) {
        let (tx, rx) = mpsc::channel();
        (Worker::spawn(load, move |m| tx.send(m).is_ok()), rx)
    }

    fn next(rx: &Receiver<Message>) -> Message {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the worker answers")
    }

    /// Messages up to and including the next `Done`.
    fn until_done(rx: &Receiver<Message>) -> Vec<Message> {
        let mut out = Vec::new();
        loop {
            let m = next(rx);
            let done = matches!(m, Message::Done(_));
            out.push(m);
            if done {
                return out;
            }
        }
    }

    #[test]
    fn loads_then_streams_prefill_text_and_the_reply() {
        let (worker, rx) = start(echo);
        assert!(matches!(next(&rx), Message::Loaded { model, .. } if model == "echo"));
        assert!(worker.ask(question("is gpu 2 hot")));
        let messages = until_done(&rx);
        assert!(matches!(
            messages[..2],
            [
                Message::Prefill { done: 0, total: 4 },
                Message::Prefill { done: 4, total: 4 }
            ]
        ));
        let text: String = messages
            .iter()
            .filter_map(|m| match m {
                Message::Text { piece, .. } => Some(piece.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, "is gpu 2 hot");
        assert!(matches!(&messages[5], Message::Text { tokens: 4, .. }));
        let Some(Message::Done(Ok(reply))) = messages.last() else {
            panic!("{messages:?}")
        };
        assert_eq!(reply.answer, "is gpu 2 hot (1 turns)", "history reaches it");
        assert_eq!(reply.proposals[0].verdict.command, "nvidia-smi -L");
    }

    #[test]
    fn errors_come_back_as_one_line() {
        let (worker, rx) = start(echo);
        next(&rx);
        worker.ask(question("fail"));
        let messages = until_done(&rx);
        assert!(
            matches!(messages.last(), Some(Message::Done(Err(e))) if e == "the reply is not JSON ..."),
            "{messages:?}"
        );
    }

    #[test]
    fn a_failed_load_answers_every_question_with_its_reason() {
        let (worker, rx) = start(|_| Err("no model: run `sigma model pull`".to_string()));
        assert!(matches!(next(&rx), Message::LoadFailed(r) if r.starts_with("no model")));
        worker.ask(question("a"));
        worker.ask(question("b"));
        for _ in 0..2 {
            assert!(matches!(next(&rx), Message::Done(Err(r)) if r.starts_with("no model")));
        }
    }

    #[test]
    fn questions_asked_while_loading_wait_for_the_model() {
        let (gate_tx, gate) = mpsc::channel::<()>();
        let (worker, rx) = start(move |cancel| {
            gate.recv().map_err(|e| e.to_string())?;
            echo(cancel)
        });
        worker.ask(question("queued"));
        assert!(
            rx.recv_timeout(Duration::from_millis(50)).is_err(),
            "still loading"
        );
        gate_tx.send(()).unwrap();
        assert!(matches!(next(&rx), Message::Loaded { .. }));
        assert!(matches!(until_done(&rx).last(), Some(Message::Done(Ok(_)))));
    }

    #[test]
    fn cancel_stops_a_generation_and_not_the_next_question() {
        let (worker, rx) = start(echo);
        next(&rx);
        worker.ask(question("wait"));
        // Cancel once it is generating.
        while !matches!(next(&rx), Message::Text { .. }) {}
        worker.cancel();
        let messages = until_done(&rx);
        assert!(
            matches!(messages.last(), Some(Message::Done(Err(e))) if e == CANCELLED),
            "{messages:?}"
        );
        worker.ask(question("next one"));
        assert!(matches!(until_done(&rx).last(), Some(Message::Done(Ok(_)))));
    }

    #[test]
    fn cancel_drops_a_queued_question() {
        let (gate_tx, gate) = mpsc::channel::<()>();
        let (worker, rx) = start(move |cancel| {
            gate.recv().map_err(|e| e.to_string())?;
            echo(cancel)
        });
        worker.ask(question("queued"));
        worker.cancel();
        gate_tx.send(()).unwrap();
        next(&rx);
        assert!(matches!(next(&rx), Message::Done(Err(e)) if e == CANCELLED));
    }

    #[test]
    fn stop_cancels_and_waits_for_the_thread() {
        let (worker, rx) = start(echo);
        next(&rx);
        worker.ask(question("wait"));
        while !matches!(next(&rx), Message::Text { .. }) {}
        assert!(worker.stop(Duration::from_secs(10)));
        let rest: Vec<Message> = rx.try_iter().collect();
        assert!(
            matches!(rest.last(), Some(Message::Done(Err(e))) if e == CANCELLED),
            "{rest:?}"
        );
    }

    #[test]
    fn long_errors_keep_their_first_line() {
        assert_eq!(one_line("a\nb"), "a ...");
        assert_eq!(one_line("a"), "a");
        assert_eq!(one_line(""), "");
    }
}
