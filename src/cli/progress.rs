//! The progress bar: drawn on stderr (indicatif) when stderr is a terminal and the
//! command has run for more than about a second, from what the scheduler tells its
//! [`Progress`] observer: tasks done of total, bytes read, spilled and shuffled.
//! Nothing is drawn when stderr is not a terminal, nor with `--quiet`.
//!
//! The scheduler only stores numbers (`advance` is an atomic store); a ticker
//! thread per run draws ten times a second, so workers never wait on the terminal.
//! `OUTCORE_PROGRESS_DELAY_MS` shortens the delay (tests use 0).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use outcore::error::human_bytes;
use outcore::scheduler::{CounterFn, Progress};

/// How long a command runs before the bar appears.
const DEFAULT_DELAY: Duration = Duration::from_millis(1000);

/// How often the bar is redrawn.
const TICK: Duration = Duration::from_millis(100);

/// The bar on the terminal now, if any, so that rows printed to stdout meanwhile
/// can clear it first ([`suspend`]).
static SHOWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Runs `f` (which writes to the terminal) with the bar, if one is shown, cleared
/// before and drawn again after, so printed rows and the bar do not mix.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let shown = SHOWN.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match shown {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

/// The observer that draws the bar.
pub struct Bar {
    /// When the command started: the delay counts from here, over all its runs.
    created: Instant,
    delay: Duration,
    run: Mutex<Option<Run>>,
}

/// One running graph: its counters and its ticker thread.
struct Run {
    done: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    ticker: JoinHandle<()>,
}

impl Bar {
    /// A bar for stderr, or `None` when stderr is not a terminal.
    pub fn for_stderr() -> Option<Arc<dyn Progress>> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let delay = std::env::var("OUTCORE_PROGRESS_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(DEFAULT_DELAY, Duration::from_millis);
        Some(Arc::new(Bar {
            created: Instant::now(),
            delay,
            run: Mutex::new(None),
        }))
    }
}

fn style() -> ProgressStyle {
    // One line whatever the terminal's width: the message is cut to fit.
    ProgressStyle::with_template("{elapsed:>3} {bar:20} {pos}/{len} tasks {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Draws `done` of `total` and the counters on `bar`, made on first use.
fn draw(bar: &mut Option<ProgressBar>, total: usize, done: usize, counters: &CounterFn) {
    let bar = bar.get_or_insert_with(|| {
        let b = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        b.set_style(style());
        *SHOWN.lock().unwrap_or_else(|p| p.into_inner()) = Some(b.clone());
        b
    });
    let c = counters();
    bar.set_message(format!(
        "read {}, spilled {}, shuffled {}",
        human_bytes(c.bytes_read),
        human_bytes(c.bytes_spilled),
        human_bytes(c.bytes_shuffled)
    ));
    bar.set_position(done as u64);
    bar.tick();
}

impl Progress for Bar {
    fn start(&self, total: usize, counters: CounterFn) {
        self.finish();
        let done = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s) = (done.clone(), stop.clone());
        let show_at = self.created + self.delay;
        let ticker = std::thread::Builder::new()
            .name("outcore-progress".into())
            .spawn(move || {
                let mut bar: Option<ProgressBar> = None;
                loop {
                    let stopping = s.load(Ordering::Acquire);
                    if Instant::now() >= show_at {
                        draw(&mut bar, total, d.load(Ordering::Relaxed), &counters);
                    }
                    if stopping {
                        break;
                    }
                    std::thread::park_timeout(TICK);
                }
                if let Some(b) = bar {
                    SHOWN.lock().unwrap_or_else(|p| p.into_inner()).take();
                    b.finish_and_clear();
                }
            });
        // Without a thread there is no bar; the run goes on.
        if let Ok(ticker) = ticker {
            *self.run.lock().unwrap_or_else(|p| p.into_inner()) = Some(Run { done, stop, ticker });
        }
    }

    fn advance(&self, done: usize) {
        if let Some(r) = self.run.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            r.done.store(done, Ordering::Relaxed);
        }
    }

    fn finish(&self) {
        let run = self.run.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(r) = run {
            r.stop.store(true, Ordering::Release);
            r.ticker.thread().unpark();
            let _ = r.ticker.join();
        }
    }
}
