//! paceline: gets every LLM API request through at the highest rate the provider allows.
//!
//! Data flows one way:
//! `batch` (input) → `engine` → `quota` / `upstream` keys → upstream HTTP → `retry` (outcome)
//! → `batch` (output); `gateway` (`paceline serve`) enters at the engine. The simulated provider (the `paceline-mock` crate) shares no code path with the client side.
//! `api` (the request types every layer shares), `time` (durations and local times as people
//! write them), `quota` (the pacing arithmetic) and `telemetry` (logging) sit at the bottom and
//! import nothing of the crate.
//! See `ARCHITECTURE.md` for the module map.
//!
//! This file owns only the module list: each module says at its top what it owns and what it must
//! not know, and `ARCHITECTURE.md` states in one line the order in which they may import one
//! another.

// Stricter than the [workspace.lints] table of Cargo.toml, which tests and benches share
// (they call kill(2) and setrlimit(2), and unwrap freely): no unsafe code at all, and no unwrap
// (what a user or a provider sends must not panic; an invariant uses `expect` and says why).
// Unit tests may unwrap (clippy.toml).
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used)]

pub mod api;
pub mod batch;
pub mod cli;
pub mod config;
pub mod distributed;
pub mod engine;
pub mod gateway;
pub mod numbers;
pub mod offline;
pub mod plan;
pub mod progress;
pub mod provider;
pub mod quota;
pub mod report;
pub mod retry;
pub mod runner;
pub mod sim;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod tokens;
pub mod upstream;
