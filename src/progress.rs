//! What the user sees while a run goes and when it ends: a progress bar on a terminal (a status
//! line every few seconds otherwise) and the closing summary.
//!
//! It reads the engine's live counters and the key pool, and must not know the job store, files or
//! Redis (a shared quota's fallback is read through the key pool's sharing seam).

use crate::engine::stats::Stats;
use crate::numbers::compact;
use crate::quota::Dimension;
use crate::store::figures::RunFigures;
use crate::upstream::KeyPool;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// A live bar (stderr is a terminal).
    Bar,
    /// A status line every few seconds (stderr is a file or pipe).
    Lines,
    /// Nothing (`--quiet`).
    Quiet,
}

impl Display {
    /// Bar on a terminal, lines otherwise, nothing when quiet.
    pub fn detect(quiet: bool) -> Self {
        if quiet {
            Display::Quiet
        } else if std::io::stderr().is_terminal() {
            Display::Bar
        } else {
            Display::Lines
        }
    }
}

/// Achieved rates over a sliding window of samples.
#[derive(Debug, Default)]
struct RateWindow {
    samples: VecDeque<(Instant, u64, u64)>,
}

impl RateWindow {
    /// Add a sample of (attempts, tokens charged) and return (requests/s, tokens/min).
    fn update(&mut self, now: Instant, attempts: u64, tokens: u64) -> (f64, f64) {
        self.samples.push_back((now, attempts, tokens));
        while self
            .samples
            .front()
            .is_some_and(|(t, _, _)| now.saturating_duration_since(*t) > Duration::from_secs(10))
        {
            self.samples.pop_front();
        }
        let Some(&(t0, a0, k0)) = self.samples.front() else {
            return (0.0, 0.0);
        };
        let span = now.saturating_duration_since(t0).as_secs_f64();
        if span < 0.5 {
            return (0.0, 0.0);
        }
        (
            (attempts - a0) as f64 / span,
            (tokens - k0) as f64 / span * 60.0,
        )
    }
}

/// The live status line: rates against limits, in flight, retries, 429s.
fn status_line(
    stats: &Stats,
    pool: &KeyPool,
    in_flight: usize,
    limit: usize,
    rates: (f64, f64),
) -> String {
    let limits = pool.limit_totals();
    let rpm_limit = limits[Dimension::Requests.index()]
        .map(|l| format!(" of {}", compact(l as f64 / 60.0)))
        .unwrap_or_default();
    let tpm_limit = limits[Dimension::Tokens.index()]
        .map(|l| format!(" of {}", compact(l as f64)))
        .unwrap_or_default();
    let redis = match pool.sharing().and_then(|s| s.fallback_share()) {
        Some(share) => format!(
            " · Redis unreachable: local share {:.0}% of limits",
            share * 100.0
        ),
        None => String::new(),
    };
    format!(
        "{} req/s{rpm_limit} · {} tok/min{tpm_limit} · in flight {in_flight}/{limit} · retries {} · 429s {} · failed {}{redis}",
        compact(rates.0),
        compact(rates.1),
        Stats::get(&stats.retries),
        Stats::get(&stats.rate_limited),
        Stats::get(&stats.failed),
    )
}

/// Show progress until the returned handle is stopped.
pub struct Progress {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    rates: tokio::task::JoinHandle<Vec<f64>>,
}

/// Attempts sent in each second until `stopped` changes.
async fn sample_rates(
    stats: Arc<Stats>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Vec<f64> {
    let mut rates = Vec::new();
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.tick().await;
    let mut last = Stats::get(&stats.attempts);
    loop {
        let closing = tokio::select! {
            _ = interval.tick() => false,
            _ = stopped.changed() => true,
        };
        let now = Stats::get(&stats.attempts);
        if !closing || now > last {
            rates.push((now - last) as f64);
        }
        last = now;
        if closing {
            return rates;
        }
    }
}

/// The summary line with the rate's shape over the run: a sparkline of attempts per second.
pub fn rate_line(rates: &[f64]) -> Option<String> {
    if rates.len() < 2 {
        return None;
    }
    let peak = rates.iter().copied().fold(0.0, f64::max);
    Some(format!(
        "  rate            {} (req/s over {}s, peak {peak:.0})\n",
        crate::report::sparkline::sparkline(rates, 48),
        rates.len()
    ))
}

impl Progress {
    /// Start showing the progress of `stats` (with `pool` for the limits and `concurrency`
    /// readings from the closure) in the given display mode.
    pub fn start(
        display: Display,
        stats: Arc<Stats>,
        pool: Arc<KeyPool>,
        concurrency: Arc<crate::engine::concurrency::Concurrency>,
    ) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let rates = tokio::spawn(sample_rates(Arc::clone(&stats), stop.subscribe()));
        let task = tokio::spawn(async move {
            if display == Display::Quiet {
                return;
            }
            let bar = (display == Display::Bar).then(|| {
                let bar = ProgressBar::with_draw_target(
                    Some(Stats::get(&stats.total)),
                    ProgressDrawTarget::stderr_with_hz(5),
                );
                let style = ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30.cyan/blue}] {pos}/{len} ETA {eta} · {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                bar.set_style(style);
                bar
            });
            let mut window = RateWindow::default();
            let started = Instant::now();
            window.update(started, 0, 0);
            let tick = if bar.is_some() {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(5)
            };
            let mut interval = tokio::time::interval(tick);
            interval.tick().await;
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = stopped.changed() => break,
                }
                let now = Instant::now();
                let rates = window.update(
                    now,
                    Stats::get(&stats.attempts),
                    Stats::get(&stats.tokens_charged),
                );
                let line = status_line(
                    &stats,
                    &pool,
                    concurrency.in_flight(),
                    concurrency.limit(),
                    rates,
                );
                match &bar {
                    Some(bar) => {
                        bar.set_length(Stats::get(&stats.total));
                        bar.set_position(stats.finished());
                        bar.set_message(line);
                    }
                    None => eprintln!(
                        "[{:>6.1}s] {}/{} done · {line}",
                        now.saturating_duration_since(started).as_secs_f64(),
                        stats.finished(),
                        Stats::get(&stats.total)
                    ),
                }
            }
            if let Some(bar) = bar {
                bar.set_position(stats.finished());
                bar.finish_and_clear();
            }
        });
        Progress { stop, task, rates }
    }

    /// Stop showing progress and clear the bar; returns the attempts sent in each second.
    pub async fn stop(self) -> Vec<f64> {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.rates.await.unwrap_or_default()
    }
}

/// The closing summary of a run; `figures` are its rate and budget use as the state records
/// them ([`crate::store::figures`], the definition `status` and `report` print too).
pub fn summary(
    stats: &Stats,
    pool: &KeyPool,
    figures: Option<&RunFigures>,
    wall: Duration,
    output: &str,
) -> String {
    let mut out = String::new();
    let secs = wall.as_secs_f64().max(1e-9);
    let attempts = Stats::get(&stats.attempts);
    let succeeded = Stats::get(&stats.succeeded);
    let failed = Stats::get(&stats.failed);
    out.push_str(&format!(
        "paceline: {} requests in {:.1}s — {succeeded} succeeded, {failed} failed\n",
        succeeded + failed,
        secs
    ));
    let failures = stats.failures_by_code();
    if !failures.is_empty() {
        let list: Vec<String> = failures.iter().map(|(c, n)| format!("{c} {n}")).collect();
        out.push_str(&format!("  failed by code  {}\n", list.join(", ")));
    }
    let causes = stats.retries_by_cause();
    let cause_list: Vec<String> = causes.iter().map(|(c, n)| format!("{c} {n}")).collect();
    out.push_str(&format!(
        "  attempts        {attempts} ({} retries{})\n",
        Stats::get(&stats.retries),
        if cause_list.is_empty() {
            String::new()
        } else {
            format!(": {}", cause_list.join(", "))
        }
    ));
    out.push_str(&format!(
        "  429s received   {}\n",
        Stats::get(&stats.rate_limited)
    ));
    out.push_str(&format!(
        "  tokens          {} in, {} out\n",
        Stats::get(&stats.prompt_tokens),
        Stats::get(&stats.completion_tokens)
    ));
    match figures {
        Some(figures) => {
            out.push_str(&format!("  achieved rate   {}\n", figures.rate_text()));
            out.push_str(&format!("  budget used     {}\n", figures.budget_text()));
        }
        None => out.push_str("  achieved rate   nothing was sent\n"),
    }
    out.push_str(&format!("  output          {output}\n"));
    let removed = pool.removal_summary();
    if pool.active() < pool.len() {
        out.push_str(&format!("  keys removed    {removed}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_window_measures_recent_rates() {
        let mut w = RateWindow::default();
        let t0 = Instant::now();
        assert_eq!(w.update(t0, 0, 0), (0.0, 0.0));
        let (rps, tpm) = w.update(t0 + Duration::from_secs(2), 20, 1000);
        assert!((rps - 10.0).abs() < 1e-9);
        assert!((tpm - 30_000.0).abs() < 1e-6);
    }

    #[test]
    fn rate_line_draws_the_shape() {
        assert_eq!(rate_line(&[3.0]), None);
        let line = rate_line(&[0.0, 10.0, 20.0, 20.0]).unwrap_or_default();
        assert!(line.contains("▁▅██") && line.contains("peak 20"), "{line}");
    }

    #[test]
    fn the_summary_prints_the_state_s_figures() {
        use crate::quota::budget::{Budget, Throughput};
        use std::collections::BTreeMap;
        let pool = KeyPool::new(Vec::new());
        let stats = Stats::default();
        // `run --rpm 60` on 80 requests: 60 at once, then one a second, in 20 s.
        let budgets = BTreeMap::from([(
            Dimension::Requests,
            Budget {
                per_minute: 60,
                burst: 60,
            },
        )]);
        let throughput = Throughput {
            requests: 80,
            input_tokens: 800,
            output_tokens: 1_200,
            span: Duration::from_secs(20),
        };
        let figures = RunFigures::new(1, throughput, &budgets);
        let text = summary(&stats, &pool, Some(&figures), Duration::from_secs(21), "o");
        assert!(
            text.contains("  achieved rate   4.0 req/s, 6.0k tok/min used (over 20.0 s"),
            "{text}"
        );
        assert!(
            text.contains("  budget used     requests 100% of 80 (a bucket of 60 + 60/min)"),
            "{text}"
        );
        let nothing = summary(&stats, &pool, None, Duration::from_secs(1), "o");
        assert!(nothing.contains("nothing was sent"), "{nothing}");
    }
}
