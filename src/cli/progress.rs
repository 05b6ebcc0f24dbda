//! The live progress line of `send --stream` and `tasks watch`: a spinner with the task's
//! state, event count and elapsed time on stderr, drawn only when stderr is a terminal and
//! stdout's cursor is at the start of a line (so streamed text is never overwritten).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::a2a::client::StreamEvent;

/// How often the spinner turns.
const TICK: Duration = Duration::from_millis(100);
const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

struct Spin {
    state: &'static str,
    events: u64,
    started: Instant,
    frame: usize,
    /// The spinner is on screen now.
    shown: bool,
    /// stdout's last character was not a newline: do not draw.
    mid_line: bool,
}

impl Spin {
    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[2K");
            self.shown = false;
        }
    }

    fn draw(&mut self) {
        if self.mid_line {
            return;
        }
        self.frame = (self.frame + 1) % FRAMES.len();
        eprint!(
            "\r\x1b[2K{} {} · {} events · {:.1}s",
            FRAMES[self.frame],
            self.state,
            self.events,
            self.started.elapsed().as_secs_f64()
        );
        let _ = std::io::stderr().flush();
        self.shown = true;
    }
}

pub struct Progress {
    spin: Option<Arc<Mutex<Spin>>>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// A progress line, if `wanted` and stderr is a terminal; otherwise every call is a no-op
    /// apart from printing.
    pub fn start(wanted: bool) -> Progress {
        if !wanted || !std::io::stderr().is_terminal() {
            return Progress { spin: None, ticker: None };
        }
        let spin = Arc::new(Mutex::new(Spin {
            state: "waiting",
            events: 0,
            started: Instant::now(),
            frame: 0,
            shown: false,
            mid_line: false,
        }));
        let ticking = spin.clone();
        let ticker = tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            loop {
                tick.tick().await;
                ticking.lock().expect("progress").draw();
            }
        });
        Progress { spin: Some(spin), ticker: Some(ticker) }
    }

    /// Counts an event and takes its state.
    pub fn event(&self, event: &StreamEvent) {
        let Some(spin) = &self.spin else { return };
        let mut spin = spin.lock().expect("progress");
        spin.events += 1;
        let state = match event {
            StreamEvent::Task(s) => s.state,
            StreamEvent::Status { state, .. } => *state,
            _ => None,
        };
        if let Some(state) = state {
            spin.state = state.v03_name();
        }
    }

    /// Prints text on stdout (no newline added), keeping the spinner off it.
    pub fn print(&self, text: &str) {
        let mut guard = self.spin.as_ref().map(|s| s.lock().expect("progress"));
        if let Some(spin) = guard.as_mut() {
            spin.clear();
        }
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "{text}");
        let _ = out.flush();
        if let Some(spin) = guard.as_mut()
            && !text.is_empty()
        {
            spin.mid_line = !text.ends_with('\n');
        }
    }

    /// Takes the spinner off the screen for good.
    pub fn finish(&self) {
        if let Some(ticker) = &self.ticker {
            ticker.abort();
        }
        if let Some(spin) = &self.spin {
            spin.lock().expect("progress").clear();
        }
    }
}
