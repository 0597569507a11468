//! API keys: the table of keys the mock knows and each key's buckets, credit and counters.
//!
//! It knows no HTTP and no request shapes: the pipeline hands it a model and a cost.

use crate::bucket::{Bucket, Refusal};
use crate::config::MockConfig;
use crate::faults::Fault;
use crate::stats::KeyStats;
use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Most distinct undeclared keys tracked at once; further new keys are refused (bounded memory).
pub const MAX_UNDECLARED_KEYS: usize = 10_000;

/// Limits applied to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Requests per minute (0 = unlimited).
    pub rpm: u64,
    /// Tokens per minute (0 = unlimited).
    pub tpm: u64,
    /// Request bucket capacity cap.
    pub burst: Option<u64>,
    /// Token bucket capacity cap.
    pub token_burst: Option<u64>,
}

/// A rate-limit dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// Requests per minute.
    Requests,
    /// Tokens per minute.
    Tokens,
}

/// State of one dimension, as the headers report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DimView {
    /// Per-minute limit.
    pub limit: u64,
    /// `floor(level)`, 0 in debt.
    pub remaining: u64,
    /// Time until full.
    pub reset: Duration,
}

/// State of a key's limited dimensions (`None` = unlimited).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitView {
    /// The request dimension.
    pub requests: Option<DimView>,
    /// The token dimension.
    pub tokens: Option<DimView>,
}

/// The outcome of asking a key to admit a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Admitted; this many tokens were charged to the token bucket.
    Admitted {
        /// Tokens charged.
        tokens_charged: u64,
    },
    /// Refused until `wait` has passed.
    RateLimited {
        /// The dimension that needs the longest wait.
        dimension: Dimension,
        /// Time until this request would fit.
        wait: Duration,
        /// That dimension's limit.
        limit: u64,
        /// Units in use in that dimension.
        used: u64,
        /// Units this request asked for in that dimension.
        requested: u64,
    },
    /// The token cost exceeds the TPM limit itself.
    TooLarge {
        /// The TPM limit.
        limit: u64,
        /// The request's token cost.
        requested: u64,
    },
    /// The key's credit is used up.
    OutOfQuota,
}

/// The buckets of one model on one key.
#[derive(Debug)]
struct ModelBuckets {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
}

/// Most models a key keeps buckets for; the models after them share one more (model names come
/// from requests, so the table must stay bounded).
const MAX_MODELS: usize = 256;

#[derive(Debug)]
struct KeyInner {
    /// Limits apply per model, as OpenAI's and Anthropic's do: each model has its own buckets.
    models: HashMap<String, ModelBuckets>,
    stats: KeyStats,
    quota_used: u64,
}

impl KeyInner {
    /// The buckets of `model`, full when first used.
    fn buckets(&mut self, limits: &Limits, model: &str, now: Instant) -> &mut ModelBuckets {
        let name = if self.models.len() < MAX_MODELS || self.models.contains_key(model) {
            model
        } else {
            ""
        };
        self.models.entry(name.to_string()).or_insert_with(|| {
            let (requests, tokens) = buckets(limits, now);
            ModelBuckets { requests, tokens }
        })
    }
}

/// One key: its buckets (per model), its credit and its counters, behind one short lock.
#[derive(Debug)]
pub struct KeyState {
    name: String,
    limits: Limits,
    inner: Mutex<KeyInner>,
}

fn buckets(limits: &Limits, now: Instant) -> (Option<Bucket>, Option<Bucket>) {
    let requests = (limits.rpm > 0).then(|| Bucket::new(limits.rpm, limits.burst, now));
    let tokens = (limits.tpm > 0).then(|| Bucket::new(limits.tpm, limits.token_burst, now));
    (requests, tokens)
}

fn unix_second() -> u64 {
    unix_millis() / 1000
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn view(bucket: &mut Option<Bucket>, now: Instant) -> Option<DimView> {
    bucket.as_mut().map(|b| DimView {
        limit: b.limit(),
        remaining: b.remaining(now),
        reset: b.until_full(now),
    })
}

impl KeyState {
    /// A key with full buckets.
    pub fn new(name: String, limits: Limits) -> Self {
        Self {
            name,
            limits,
            inner: Mutex::new(KeyInner {
                models: HashMap::new(),
                stats: KeyStats::default(),
                quota_used: 0,
            }),
        }
    }

    /// The key's name in stats (never the full undeclared key).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Count a request that was refused before admission was asked (bad input, 401).
    pub fn count_request(&self, unauthorized: bool) {
        let mut inner = self.inner.lock();
        inner.stats.requests += 1;
        if unauthorized {
            inner.stats.unauthorized += 1;
        }
    }

    /// Check credit, then every dimension, then charge every dimension, atomically.
    ///
    /// With `soft` the request is always admitted; when the limits would have refused it, it is
    /// counted in `admitted_beyond_limit` and nothing is charged (a real provider that refused it
    /// would not have charged it either).
    pub fn admit(
        &self,
        model: &str,
        token_cost: u64,
        quota: Option<u64>,
        soft: bool,
        now: Instant,
    ) -> (Admission, LimitView) {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        inner.stats.requests += 1;
        if quota.is_some_and(|q| inner.quota_used >= q) {
            inner.stats.insufficient_quota += 1;
            let view = Self::view_of(inner.buckets(&self.limits, model, now), now);
            return (Admission::OutOfQuota, view);
        }
        let refusal = Self::refusal(inner.buckets(&self.limits, model, now), token_cost, now);
        let admission = match refusal {
            Some(refused) if !soft => {
                inner.stats.rate_limited += 1;
                refused
            }
            Some(refused) => {
                let early = match refused {
                    Admission::RateLimited { wait, .. } => wait,
                    _ => Duration::ZERO,
                };
                let early_us = u64::try_from(early.as_micros()).unwrap_or(u64::MAX);
                inner.stats.beyond(unix_millis(), early_us);
                Admission::Admitted { tokens_charged: 0 }
            }
            None => {
                let buckets = inner.buckets(&self.limits, model, now);
                if let Some(b) = buckets.requests.as_mut() {
                    b.charge(1, now);
                }
                let tokens_charged = match buckets.tokens.as_mut() {
                    Some(b) => {
                        b.charge(token_cost, now);
                        token_cost
                    }
                    None => 0,
                };
                inner.stats.tokens_charged += tokens_charged;
                inner.stats.admitted_at(unix_second());
                Admission::Admitted { tokens_charged }
            }
        };
        let view = Self::view_of(inner.buckets(&self.limits, model, now), now);
        (admission, view)
    }

    fn refusal(buckets: &mut ModelBuckets, token_cost: u64, now: Instant) -> Option<Admission> {
        let mut worst: Option<Admission> = None;
        let dims = [
            (Dimension::Requests, buckets.requests.as_mut(), 1),
            (Dimension::Tokens, buckets.tokens.as_mut(), token_cost),
        ];
        for (dimension, bucket, cost) in dims {
            let Some(bucket) = bucket else { continue };
            match bucket.check(cost, now) {
                Ok(()) => {}
                Err(Refusal::TooLarge) => {
                    return Some(Admission::TooLarge {
                        limit: bucket.limit(),
                        requested: cost,
                    });
                }
                Err(Refusal::Wait(wait)) => {
                    let longer = match worst {
                        Some(Admission::RateLimited { wait: w, .. }) => wait > w,
                        _ => true,
                    };
                    if longer {
                        let level = bucket.level(now);
                        let used = (bucket.capacity() - level).max(0.0).ceil() as u64;
                        worst = Some(Admission::RateLimited {
                            dimension,
                            wait,
                            limit: bucket.limit(),
                            used,
                            requested: cost,
                        });
                    }
                }
            }
        }
        worst
    }

    fn view_of(buckets: &mut ModelBuckets, now: Instant) -> LimitView {
        LimitView {
            requests: view(&mut buckets.requests, now),
            tokens: view(&mut buckets.tokens, now),
        }
    }

    /// The key's limits for `model` as headers report them at `now`.
    #[cfg(test)]
    fn limit_view(&self, model: &str, now: Instant) -> LimitView {
        let mut inner = self.inner.lock();
        Self::view_of(inner.buckets(&self.limits, model, now), now)
    }

    /// Count an injected fault (of a request [`KeyState::admit`] has counted).
    pub fn record_fault(&self, fault: Fault) {
        self.inner.lock().stats.fault(fault);
    }

    /// Count a request answered with `fault` before admission (`--faults-charge false`): it is
    /// counted as a request and a fault, and no bucket, credit or admission count is touched.
    pub fn record_uncharged_fault(&self, fault: Fault) {
        let mut inner = self.inner.lock();
        inner.stats.requests += 1;
        inner.stats.fault(fault);
    }

    /// Record a complete answer: usage, credit, and (with `refund`) give back `unused` tokens.
    pub fn record_ok(&self, model: &str, prompt: u64, completion: u64, refund: u64, now: Instant) {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        inner.stats.ok += 1;
        inner.stats.prompt_tokens += prompt;
        inner.stats.completion_tokens += completion;
        inner.quota_used = inner.quota_used.saturating_add(prompt + completion);
        if refund > 0
            && let Some(b) = inner.buckets(&self.limits, model, now).tokens.as_mut()
        {
            b.refund(refund, now);
            inner.stats.tokens_charged = inner.stats.tokens_charged.saturating_sub(refund);
        }
    }

    /// A copy of the counters.
    pub fn stats(&self) -> KeyStats {
        self.inner.lock().stats.clone()
    }

    /// Clear counters and credit, refill the buckets.
    pub fn reset(&self) {
        let mut inner = self.inner.lock();
        inner.models.clear();
        inner.stats = KeyStats::default();
        inner.quota_used = 0;
    }
}

/// The result of looking a key up.
#[derive(Debug)]
pub enum Lookup {
    /// A known (or newly tracked) key.
    Key(Arc<KeyState>),
    /// Keys are declared and this one is not among them (or no key was sent).
    Unknown,
    /// The table of undeclared keys is full.
    TableFull,
}

/// All keys the mock knows.
#[derive(Debug)]
pub struct KeyTable {
    declared: HashMap<String, Arc<KeyState>>,
    undeclared: RwLock<HashMap<String, Arc<KeyState>>>,
    unknown: Arc<KeyState>,
    limits: Limits,
}

/// The stats name of an undeclared key: the first 8 hex digits of its SHA-256.
pub fn fingerprint(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

impl KeyTable {
    /// Build the table from the configuration.
    pub fn new(config: &MockConfig) -> Self {
        let limits = Limits {
            rpm: config.rpm,
            tpm: config.tpm,
            burst: config.burst,
            token_burst: config.token_burst,
        };
        let declared = config
            .keys
            .iter()
            .map(|k| {
                let key_limits = Limits {
                    rpm: k.rpm.unwrap_or(config.rpm),
                    tpm: k.tpm.unwrap_or(config.tpm),
                    ..limits
                };
                let state = KeyState::new(k.name.clone(), key_limits);
                (k.name.clone(), Arc::new(state))
            })
            .collect();
        Self {
            declared,
            undeclared: RwLock::new(HashMap::new()),
            unknown: Arc::new(KeyState::new("unknown".into(), limits)),
            limits,
        }
    }

    /// Find the state of `key` (`None` = no key sent).
    pub fn lookup(&self, key: Option<&str>) -> Lookup {
        if !self.declared.is_empty() {
            return match key.and_then(|k| self.declared.get(k)) {
                Some(state) => Lookup::Key(Arc::clone(state)),
                None => Lookup::Unknown,
            };
        }
        let key = key.unwrap_or("");
        if let Some(state) = self.undeclared.read().get(key) {
            return Lookup::Key(Arc::clone(state));
        }
        let mut map = self.undeclared.write();
        if let Some(state) = map.get(key) {
            return Lookup::Key(Arc::clone(state));
        }
        if map.len() >= MAX_UNDECLARED_KEYS {
            return Lookup::TableFull;
        }
        let name = if key.is_empty() {
            "anonymous".to_owned()
        } else {
            fingerprint(key)
        };
        let state = Arc::new(KeyState::new(name, self.limits));
        map.insert(key.to_owned(), Arc::clone(&state));
        Lookup::Key(state)
    }

    /// The pseudo-key that counts 401s for keys that are not declared.
    pub fn unknown(&self) -> &Arc<KeyState> {
        &self.unknown
    }

    /// Counters of every key that saw a request.
    pub fn stats(&self) -> BTreeMap<String, KeyStats> {
        let mut out = BTreeMap::new();
        let undeclared = self.undeclared.read();
        let states = self
            .declared
            .values()
            .chain(undeclared.values())
            .chain(std::iter::once(&self.unknown));
        for state in states {
            let stats = state.stats();
            if stats.requests > 0 || self.declared.contains_key(state.name()) {
                out.insert(state.name().to_owned(), stats);
            }
        }
        out
    }

    /// Clear every counter, forget undeclared keys, refill declared keys' buckets.
    pub fn reset(&self) {
        for state in self.declared.values() {
            state.reset();
        }
        self.unknown.reset();
        self.undeclared.write().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(rpm: u64, tpm: u64) -> KeyState {
        let limits = Limits {
            rpm,
            tpm,
            burst: None,
            token_burst: None,
        };
        KeyState::new("k".into(), limits)
    }

    #[test]
    fn each_model_has_its_own_limits() {
        let limits = Limits {
            rpm: 60,
            tpm: 0,
            burst: Some(1),
            token_burst: None,
        };
        let k = KeyState::new("k".into(), limits);
        let t0 = Instant::now();
        assert!(matches!(
            k.admit("gpt-4o-mini", 1, None, false, t0).0,
            Admission::Admitted { .. }
        ));
        assert!(matches!(
            k.admit("gpt-4o-mini", 1, None, false, t0).0,
            Admission::RateLimited { .. }
        ));
        assert!(matches!(
            k.admit("text-embedding-3-small", 1, None, false, t0).0,
            Admission::Admitted { .. }
        ));
    }

    #[test]
    fn all_dimensions_or_nothing() {
        let t0 = Instant::now();
        let k = key(10, 100);
        assert!(matches!(
            k.admit("m", 60, None, false, t0).0,
            Admission::Admitted { tokens_charged: 60 }
        ));
        // 40 tokens left: a 50-token request is refused and charges no request either.
        let (adm, view) = k.admit("m", 50, None, false, t0);
        assert!(matches!(
            adm,
            Admission::RateLimited {
                dimension: Dimension::Tokens,
                ..
            }
        ));
        assert_eq!(view.requests.map(|v| v.remaining), Some(9));
        assert_eq!(view.tokens.map(|v| v.remaining), Some(40));
        let stats = k.stats();
        assert_eq!(
            (stats.requests, stats.rate_limited, stats.tokens_charged),
            (2, 1, 60)
        );
    }

    #[test]
    fn longest_wait_is_reported() {
        let t0 = Instant::now();
        let k = key(1, 600);
        k.admit("m", 10, None, false, t0);
        match k.admit("m", 10, None, false, t0).0 {
            Admission::RateLimited {
                dimension,
                wait,
                limit,
                used,
                requested,
            } => {
                assert_eq!(dimension, Dimension::Requests);
                assert_eq!(wait, Duration::from_secs(60));
                assert_eq!((limit, used, requested), (1, 1, 1));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn soft_limits_admit_and_count_without_charging() {
        let t0 = Instant::now();
        let k = key(1, 0);
        for _ in 0..3 {
            assert!(matches!(
                k.admit("m", 5, None, true, t0).0,
                Admission::Admitted { .. }
            ));
        }
        let s = k.stats();
        assert_eq!(
            (s.requests, s.rate_limited, s.admitted_beyond_limit),
            (3, 0, 2)
        );
    }

    #[test]
    fn quota_and_refund() {
        let t0 = Instant::now();
        let k = key(0, 1000);
        assert!(matches!(
            k.admit("m", 500, Some(30), false, t0).0,
            Admission::Admitted { .. }
        ));
        k.record_ok("m", 10, 20, 470, t0);
        assert_eq!(k.limit_view("m", t0).tokens.map(|v| v.remaining), Some(970));
        assert_eq!(k.stats().tokens_charged, 30);
        assert_eq!(
            k.admit("m", 1, Some(30), false, t0).0,
            Admission::OutOfQuota
        );
    }

    #[test]
    fn an_uncharged_fault_leaves_every_bucket_and_the_credit_alone() {
        let t0 = Instant::now();
        let k = key(2, 100);
        // The bucket holds 2 requests; uncharged faults beyond that are still counted, not refused.
        for _ in 0..5 {
            k.record_uncharged_fault(Fault::Fail503);
        }
        let view = k.limit_view("m", t0);
        assert_eq!(view.requests.map(|v| v.remaining), Some(2));
        assert_eq!(view.tokens.map(|v| v.remaining), Some(100));
        for _ in 0..2 {
            assert!(matches!(
                k.admit("m", 10, Some(1), false, t0).0,
                Admission::Admitted { tokens_charged: 10 }
            ));
        }
        let s = k.stats();
        assert_eq!(
            (
                s.requests,
                s.faults.fail_503,
                s.rate_limited,
                s.tokens_charged
            ),
            (7, 5, 0, 20)
        );
        assert_eq!(s.per_second.iter().map(|(_, n)| n).sum::<u64>(), 2);
        // Charged: the fault follows an admission, which took its request and tokens.
        let k = key(2, 100);
        assert!(matches!(
            k.admit("m", 10, None, false, t0).0,
            Admission::Admitted { .. }
        ));
        k.record_fault(Fault::Fail503);
        let view = k.limit_view("m", t0);
        assert_eq!(view.requests.map(|v| v.remaining), Some(1));
        assert_eq!(view.tokens.map(|v| v.remaining), Some(90));
        assert_eq!((k.stats().requests, k.stats().faults.fail_503), (1, 1));
    }

    #[test]
    fn too_large() {
        let k = key(0, 100);
        assert_eq!(
            k.admit("m", 101, None, false, Instant::now()).0,
            Admission::TooLarge {
                limit: 100,
                requested: 101
            }
        );
    }

    #[test]
    fn undeclared_keys_get_fingerprints_and_declared_keys_are_exclusive() {
        let table = KeyTable::new(&MockConfig::default());
        let Lookup::Key(a) = table.lookup(Some("sk-secret")) else {
            panic!()
        };
        assert_eq!(a.name(), fingerprint("sk-secret"));
        assert_eq!(a.name().len(), 8);
        let Lookup::Key(anon) = table.lookup(None) else {
            panic!()
        };
        assert_eq!(anon.name(), "anonymous");
        let config = MockConfig {
            keys: vec!["a:5".parse().unwrap()],
            ..MockConfig::default()
        };
        let table = KeyTable::new(&config);
        assert!(matches!(table.lookup(Some("a")), Lookup::Key(_)));
        assert!(matches!(table.lookup(Some("b")), Lookup::Unknown));
        assert!(matches!(table.lookup(None), Lookup::Unknown));
    }
}
