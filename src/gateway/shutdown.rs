//! Stopping: on SIGTERM (or Ctrl-C) the gateway stops accepting connections, lets the requests
//! in flight finish — queued ones are still paced and sent, streams run to their end — for at
//! most the drain timeout, then closes the queue so the engine finishes and exits.
//!
//! It must not know the routes or the engine's insides: it stops the listener, closes the queue and
//! waits for [`EngineExit`].

use super::App;
use crate::engine::EngineExit;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Stop accepting, drain within the configured timeout, stop the engine.
pub(crate) async fn drain(
    stop: watch::Sender<bool>,
    mut server: JoinHandle<()>,
    mut engine: JoinHandle<EngineExit>,
    app: &Arc<App>,
) {
    let deadline = Instant::now() + app.config.drain_timeout;
    let _ = stop.send(true);
    if tokio::time::timeout_at(deadline, &mut server)
        .await
        .is_err()
    {
        tracing::warn!("drain timeout reached; closing the connections still open");
        server.abort();
    }
    app.queue.close();
    if tokio::time::timeout_at(deadline, &mut engine)
        .await
        .is_err()
    {
        app.engine.stop_admitting();
        engine.abort();
    }
}
