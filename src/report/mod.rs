//! `paceline report`: one self-contained HTML file showing how a job used its quota and what
//! went wrong — rates against the limits, 429s, retries and failures over time, latency,
//! concurrency, per-key traffic, and the failures and slowest requests.
//!
//! [`data`] reads the job's state into a serializable model; [`html`] draws it as inline SVG
//! (rendered here, no script needed to see it) and embeds the model as JSON in a
//! `<script type="application/json" id="paceline-data">` block; [`sparkline`] makes the
//! one-line sparklines of the terminal summary. The page fetches nothing: it works offline and
//! can be attached to a ticket. Keys appear only as fingerprints.
//!
//! It reads a job's state through [`crate::store`] and never writes it; it must not know the
//! engine, the quota or the network.

pub mod data;
pub mod html;
pub mod sparkline;

use crate::store::{self, Store, StoreError};
use std::path::{Path, PathBuf};

/// A report that cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The state cannot be found or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The page cannot be written.
    #[error("cannot write report {}: {source}", path.display())]
    Write {
        /// The report file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Read the job whose state is at (or beside) `state_or_output` and write its report to
/// `out`; returns the figures.
pub fn write(state_or_output: &Path, out: &Path) -> Result<data::ReportData, ReportError> {
    let path = store::locate(state_or_output)?;
    let store = Store::open_existing(&path)?;
    let figures = data::load(&store)?;
    let page = html::render(&figures);
    let tmp = out.with_extension("html.tmp");
    std::fs::write(&tmp, page.as_bytes())
        .and_then(|()| std::fs::rename(&tmp, out))
        .map_err(|source| ReportError::Write {
            path: out.to_path_buf(),
            source,
        })?;
    Ok(figures)
}
