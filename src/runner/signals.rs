//! Ctrl-C and SIGTERM during a run.
//!
//! It turns signals into an [`Interrupt`] and must not know what stopping does (the runner and the
//! distributed worker decide).

use std::io;

/// A stop request from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl Interrupt {
    /// The conventional exit code: 128 + the signal number (130 for SIGINT, 143 for SIGTERM).
    pub fn exit_code(self) -> u8 {
        match self {
            Interrupt::Interrupt => 130,
            Interrupt::Terminate => 143,
        }
    }

    /// The signal's name.
    pub fn name(self) -> &'static str {
        match self {
            Interrupt::Interrupt => "SIGINT",
            Interrupt::Terminate => "SIGTERM",
        }
    }
}

/// Listens for SIGINT and SIGTERM once created (until then they end the process as usual).
pub(crate) struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    /// Start listening.
    pub(crate) fn listen() -> io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Signals {})
        }
    }

    /// The next signal.
    pub(crate) async fn recv(&mut self) -> Interrupt {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => Interrupt::Interrupt,
                _ = self.term.recv() => Interrupt::Terminate,
            }
        }
        #[cfg(not(unix))]
        {
            match tokio::signal::ctrl_c().await {
                Ok(()) => Interrupt::Interrupt,
                Err(_) => std::future::pending().await,
            }
        }
    }
}
