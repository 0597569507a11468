//! `paceline plan`: arguments and glue for the job planner. It takes `run`'s flags (so the same
//! command line plans and runs), and sends nothing.
//!
//! It must not know how a plan is computed: the flags, the config and an earlier run's stored
//! limits become [`PlanInputs`], and [`crate::plan`] does the rest.

use super::run::{RunArgs, keys, upstream_of};
use crate::config::RunConfig;
use crate::offline::cut::ShardLimits;
use crate::plan::{self, JobPlan, LiveLimits, PlanInputs};
use crate::quota::Dimension;
use crate::store::{self, Store};
use clap::Args;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `paceline plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// `run`'s arguments: the same command line plans and runs.
    #[command(flatten)]
    pub run: RunArgs,
    /// Price output as this many tokens per request on average (default: each request's
    /// max_tokens, the most it can cost).
    #[arg(long, value_name = "N")]
    pub expect_output_tokens: Option<u64>,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The enqueued-token limits an earlier run of this job learned for `key`, per model.
fn learned_enqueued(state: &std::path::Path, key: &str) -> anyhow::Result<HashMap<String, u64>> {
    let Ok(path) = store::locate(state) else {
        return Ok(HashMap::new());
    };
    let store = Store::open_existing(&path)?;
    Ok(store::enqueued::learned(&store, key)?)
}

fn money(v: Option<f64>) -> String {
    v.map_or_else(|| "unpriced".to_string(), |v| format!("${v:.6}"))
}

fn seconds(v: Option<f64>) -> String {
    match v {
        None => "unknown (give --rpm/--tpm, or run once)".into(),
        Some(s) => {
            humantime::format_duration(std::time::Duration::from_secs_f64(s.max(0.0).round()))
                .to_string()
        }
    }
}

/// The plan as a table, for people.
pub fn render(p: &JobPlan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "paceline plan: {} requests{} (nothing was sent)",
        p.requests,
        if p.invalid > 0 {
            format!(", {} invalid lines not counted", p.invalid)
        } else {
            String::new()
        }
    );
    for g in &p.groups {
        let _ = writeln!(out, "\n{} → {}", g.model, g.endpoint.path());
        let _ = writeln!(out, "  requests        {}", g.requests);
        let _ = writeln!(out, "  prompt tokens   {} (tokenizer)", g.prompt_tokens);
        let _ = writeln!(
            out,
            "  output tokens   {} ({})",
            g.output_tokens, g.output_basis
        );
        let _ = writeln!(
            out,
            "  cost            live {}, batch {}{}",
            money(g.live_cost),
            money(g.batch_cost),
            g.price
                .as_ref()
                .map_or(String::new(), |p| if p.read_on.is_empty() {
                    format!(" (prices from {})", p.page)
                } else {
                    format!(" (prices read {} from {})", p.read_on, p.page)
                })
        );
        let limits = g.limits.map_or(String::new(), |(l, source)| {
            format!(
                " at {}{} ({})",
                l.rpm.map_or(String::new(), |v| format!("{v} RPM ")),
                l.tpm.map_or(String::new(), |v| format!("{v} TPM")),
                match source {
                    plan::LimitSource::Configured => "configured",
                    plan::LimitSource::Learned => "learned by an earlier run",
                }
            )
        });
        let _ = writeln!(out, "  live time       {}{limits}", seconds(g.live_seconds));
        match &g.batch {
            Some(b) => {
                let _ = writeln!(
                    out,
                    "  batch           {} shard{}, {} enqueued tokens{}, each within {} h",
                    b.shards,
                    if b.shards == 1 { "" } else { "s" },
                    b.enqueued_tokens,
                    b.enqueued_limit.map_or(
                        " (enqueued limit: learned when the provider refuses)".to_string(),
                        |l| format!(" (enqueued limit {l} per model: one at a time when over it)")
                    ),
                    b.window_hours
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  batch           not available for this provider and endpoint"
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "\ntotal           live ${:.6}, batch ${:.6}{}",
        p.live_cost,
        p.batch_cost,
        if p.unpriced.is_empty() {
            ""
        } else {
            " (priced models only)"
        }
    );
    for (model, n) in &p.unpriced {
        let _ = writeln!(
            out,
            "unpriced        {model}: {n} requests (no price in the table; add one with --prices FILE)"
        );
    }
    out
}

/// Plan a job.
pub fn run(mut args: PlanArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.run.config {
        Some(path) => RunConfig::load(path)?,
        None => RunConfig::default(),
    };
    args.run.pacing.fill_from(&config);
    let r = &args.run;
    let upstream = upstream_of(r, &config)?;
    let mut configured = LiveLimits {
        rpm: r.pacing.rpm.filter(|v| *v > 0),
        tpm: r.pacing.tpm.filter(|v| *v > 0),
    };
    if configured == LiveLimits::default() && !config.keys.is_empty() {
        let sum = |d: Dimension| -> Option<u64> {
            let each: Vec<u64> = config
                .keys
                .iter()
                .filter_map(|k| k.limits.get(d).map(|l| l.per_minute))
                .collect();
            (!each.is_empty()).then(|| each.iter().sum())
        };
        configured = LiveLimits {
            rpm: sum(Dimension::Requests),
            tpm: sum(Dimension::Tokens),
        };
    } else if !r.api_key_env.is_empty() {
        // The flags' limits are per key.
        let n = r.api_key_env.len() as u64;
        configured.rpm = configured.rpm.map(|v| v * n);
        configured.tpm = configured.tpm.map(|v| v * n);
    }
    let output = r.output.clone().unwrap_or_else(|| {
        let mut name = r.input.as_os_str().to_os_string();
        name.push(".results.jsonl");
        PathBuf::from(name)
    });
    let state = r
        .state
        .clone()
        .unwrap_or_else(|| store::default_path(&output));
    let prices = r.via.prices(&config)?;
    // The batch path sends with the first key: what an earlier run learned of its enqueued
    // limits (none when its variable is not set here).
    let enqueued = match keys(r, &config, upstream.provider()) {
        Ok(keys) => match keys.first() {
            Some((key, _)) => learned_enqueued(&state, key.label())?,
            None => HashMap::new(),
        },
        Err(_) => HashMap::new(),
    };
    let inputs = PlanInputs {
        input: r.input_args.spec(&r.input),
        default_max_tokens: r.pacing.default_max_tokens(),
        expect_output_tokens: args.expect_output_tokens,
        configured,
        learned: super::run::learned_limits(&state)?,
        prices,
        batch: upstream.provider().batch().map(|spec| ShardLimits {
            spec,
            max_requests: r.via.batch_max_requests,
            enqueued,
            enqueued_default: r.via.batch_enqueued_tokens,
            default_max_tokens: r.pacing.default_max_tokens(),
        }),
    };
    let job = plan::plan(&inputs)?;
    let text = if args.json {
        serde_json::to_string_pretty(&job)? + "\n"
    } else {
        render(&job)
    };
    // A closed pipe (`plan ... | head`) is not an error of the plan.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    Ok(ExitCode::SUCCESS)
}
