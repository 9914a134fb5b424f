//! Progress display: one bar per stage (bytes read, MB/s, ETA, rows) on a terminal; plain log
//! lines when stderr is not a terminal (cron, Airflow) or logs are JSON.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Bars when stderr is a terminal and `bars` is allowed, log lines otherwise.
    pub fn new(bars: bool) -> Self {
        let multi = (bars && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { multi }
    }

    pub fn hidden() -> Self {
        Progress { multi: None }
    }

    pub fn stage(&self, name: &str, shards: usize, total_bytes: u64) -> StageProgress {
        let bar = match &self.multi {
            Some(m) => {
                let bar = m.add(ProgressBar::new(total_bytes));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>12.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_prefix(name.to_string());
                bar.enable_steady_tick(Duration::from_millis(200));
                bar
            }
            None => ProgressBar::hidden(),
        };
        StageProgress {
            inner: Arc::new(Inner {
                name: name.to_string(),
                bar,
                shards,
                done: AtomicU64::new(0),
                rows: AtomicU64::new(0),
                committed_bytes: AtomicU64::new(0),
                active: Mutex::new(Vec::new()),
                started: Instant::now(),
            }),
        }
    }
}

struct Inner {
    name: String,
    bar: ProgressBar,
    shards: usize,
    done: AtomicU64,
    rows: AtomicU64,
    committed_bytes: AtomicU64,
    active: Mutex<Vec<Arc<AtomicU64>>>,
    started: Instant,
}

/// Progress of one stage; cheap to clone into shard tasks.
#[derive(Clone)]
pub struct StageProgress {
    inner: Arc<Inner>,
}

impl StageProgress {
    /// Track a shard's live byte counter until it finishes.
    pub fn track(&self, counter: Arc<AtomicU64>) {
        self.lock().push(counter);
        self.refresh();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<AtomicU64>>> {
        self.inner.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Update the bar from the live counters.
    pub fn refresh(&self) {
        let live: u64 = self.lock().iter().map(|c| c.load(Ordering::Relaxed)).sum();
        self.inner
            .bar
            .set_position(self.inner.committed_bytes.load(Ordering::Relaxed) + live);
    }

    /// A shard finished (run or skipped).
    pub fn shard_done(
        &self,
        url: &str,
        bytes: u64,
        rows: u64,
        rejected: u64,
        skipped: bool,
        counter: Option<&Arc<AtomicU64>>,
    ) {
        if let Some(c) = counter {
            self.lock().retain(|x| !Arc::ptr_eq(x, c));
        }
        let done = self.inner.done.fetch_add(1, Ordering::Relaxed) + 1;
        let total_rows = self.inner.rows.fetch_add(rows, Ordering::Relaxed) + rows;
        self.inner
            .committed_bytes
            .fetch_add(bytes, Ordering::Relaxed);
        self.refresh();
        let secs = self.inner.started.elapsed().as_secs_f64().max(1e-9);
        self.inner.bar.set_message(format!(
            "{done}/{} shards, {total_rows} rows ({:.0} rows/s)",
            self.inner.shards,
            total_rows as f64 / secs
        ));
        let committed = self.inner.committed_bytes.load(Ordering::Relaxed);
        tracing::info!(
            stage = %self.inner.name,
            shard = %url,
            rows,
            rejected,
            skipped,
            "shard {done}/{} {} ({:.1} MB/s, {:.0} rows/s so far)",
            self.inner.shards,
            if skipped { "already committed, skipped" } else { "committed" },
            committed as f64 / 1e6 / secs,
            total_rows as f64 / secs
        );
    }

    pub fn finish(&self) {
        self.inner.bar.finish();
    }
}
