//! Helpers shared by the integration tests. Each test binary uses a subset of them, hence the
//! `dead_code` allowance.
#![allow(dead_code, reason = "each test binary uses only some of the helpers")]

pub mod browser;
pub mod job;
pub mod listening;
pub mod mock;
pub mod pace;
pub mod redis;
pub mod serve;
