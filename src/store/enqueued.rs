//! The enqueued-token limits the batch path learned from the provider's refusals (OpenAI's
//! `token_limit_exceeded` states the limit), per key fingerprint and model, so that the next
//! run cuts its shards under them from the start and `plan` shows them.
//!
//! It owns the `enqueued_limits` table and must not know the provider or how shards are cut.

use super::{Store, StoreError, now_ms};
use rusqlite::params;
use std::collections::HashMap;

/// Record that `key` may enqueue at most `limit` tokens of `model` (the lower of this and what
/// was known).
pub fn record(store: &Store, key: &str, model: &str, limit: u64) -> Result<(), StoreError> {
    store
        .conn()
        .execute(
            "INSERT INTO enqueued_limits (key, model, tokens, learned_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (key, model) DO UPDATE
             SET tokens = min(tokens, excluded.tokens), learned_at = excluded.learned_at",
            params![
                key,
                model,
                i64::try_from(limit).unwrap_or(i64::MAX),
                now_ms()
            ],
        )
        .map(|_| ())
        .map_err(|e| store.err("write", e))
}

/// The limits learned for `key`, per model; empty for a state older than the table.
pub fn learned(store: &Store, key: &str) -> Result<HashMap<String, u64>, StoreError> {
    let present: i64 = store
        .conn()
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'enqueued_limits'",
            [],
            |row| row.get(0),
        )
        .map_err(|e| store.err("read", e))?;
    if present == 0 {
        return Ok(HashMap::new());
    }
    let mut stmt = store
        .conn()
        .prepare("SELECT model, tokens FROM enqueued_limits WHERE key = ?1")
        .map_err(|e| store.err("read", e))?;
    let rows = stmt
        .query_map(params![key], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
        })
        .map_err(|e| store.err("read", e))?;
    rows.collect::<Result<_, _>>()
        .map_err(|e| store.err("read", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_lowest_limit_per_key_and_model() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        assert!(learned(&store, "K#1").unwrap().is_empty());
        record(&store, "K#1", "gpt-4o-mini", 90_000).unwrap();
        record(&store, "K#1", "gpt-4o-mini", 120_000).unwrap();
        record(&store, "K#1", "gpt-4o", 50_000).unwrap();
        record(&store, "K#2", "gpt-4o-mini", 10).unwrap();
        let k1 = learned(&store, "K#1").unwrap();
        assert_eq!(k1.get("gpt-4o-mini"), Some(&90_000));
        assert_eq!(k1.get("gpt-4o"), Some(&50_000));
        assert_eq!(learned(&store, "K#2").unwrap().len(), 1);
    }
}
