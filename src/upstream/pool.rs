//! The key pool: every upstream key with its own quota per model; a request goes to the key
//! that can send it soonest, and a key the provider refuses for good leaves rotation.
//!
//! A key may carry a [`Route`] (a gateway's `[[models]]` deployment): its own upstream (base
//! URL and provider), the public model name it serves and the model name it sends instead. A
//! request for a public model goes only to the deployments serving it whose provider speaks its
//! endpoint; other requests go to the keys without a route. Among the eligible keys the one
//! that can send soonest wins (ties: fewest in flight, then the order of the configuration), so
//! a paused deployment is passed over for the next; and a retry after a failure (5xx, overload,
//! timeout) avoids the key that failed when another one is eligible.
//!
//! In distributed mode each quota has a shared counterpart ([`super::shared`]); a [`Pick`]
//! carries both, and settling, cancelling or pausing through it reaches both.
//!
//! It must not know Redis (a shared quota is only the [`super::shared`] seam), the engine or what
//! an answer means: the engine settles, cancels and pauses through the [`Pick`].

use super::client::Upstream;
use super::key::ApiKey;
use super::shared::{QuotaSharing, SharedQuota};
use super::shortest::Shortest;
use crate::api::Endpoint;
use crate::quota::{Cost, Dimension, Quota, QuotaConfig, QuotaError, Reservation};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// Where a routed key's requests go.
#[derive(Debug, Clone)]
pub struct Route {
    /// The public model name clients ask for.
    pub serves: String,
    /// The model (Azure: deployment) name sent upstream.
    pub model: String,
    /// The deployment's endpoint and provider.
    pub upstream: Upstream,
}

/// One key as [`KeyPool::keys`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyView {
    /// Its label (variable and fingerprint).
    pub label: String,
    /// For a `[[models]]` deployment: `public name → upstream model (provider)`.
    pub serves: Option<String>,
    /// Attempts being sent with it now.
    pub sending: usize,
    /// Why it left rotation, if it did.
    pub removed: Option<String>,
}

/// One key and its state.
#[derive(Debug)]
struct Slot {
    key: ApiKey,
    config: QuotaConfig,
    route: Option<Route>,
    quotas: Mutex<HashMap<String, KeyQuota>>,
    removed: Mutex<Option<String>>,
    in_flight: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One key's quota for one model, and its shared counterpart in distributed mode.
#[derive(Debug, Clone)]
struct KeyQuota {
    local: Arc<Quota>,
    shared: Option<Arc<dyn SharedQuota>>,
}

/// Where a request goes: a key, its quota for the model, and the reservation made there.
#[derive(Debug)]
pub struct Pick {
    /// Index of the key in the pool.
    pub key_index: usize,
    /// The key.
    pub key: ApiKey,
    /// The quota the reservation was made in.
    pub quota: Arc<Quota>,
    /// The reservation.
    pub reservation: Reservation,
    /// The key's route, when it is a `[[models]]` deployment.
    pub route: Option<Route>,
    /// The quota's shared counterpart, in distributed mode: the booking asks it after the
    /// local quota ([`SharedQuota::admit`]).
    pub shared: Option<Arc<dyn SharedQuota>>,
    /// Whether the shared quota holds the reservation too (it admitted it): settling and
    /// cancelling then reach it.
    pub shared_holds: bool,
}

impl Pick {
    /// Replace the reserved cost with what the provider charged, locally and in the shared
    /// quota when it holds the reservation.
    pub fn settle(&self, actual: Cost, now: Instant) {
        self.quota.settle(&self.reservation, actual, now);
        self.settle_shared(&actual);
    }

    /// Give the reservation back whole (the request was not sent, or was refused), locally and
    /// in the shared quota when it holds it.
    pub fn cancel(&self, now: Instant) {
        self.quota.cancel(&self.reservation, now);
        self.settle_shared(&Cost::default());
    }

    /// Pause the quota until `until` (see [`Quota::pause`]), and the shared quota with it.
    pub fn pause(&self, until: Instant, refused: Option<Dimension>, retry: &Cost) {
        self.quota.pause(until, refused, retry, &self.reservation);
        // After the local pause, so the margin it widened goes to the shared quota too.
        if let Some(shared) = &self.shared {
            shared.pause(&self.quota, until, refused, retry);
        }
    }

    fn settle_shared(&self, actual: &Cost) {
        if let (Some(shared), true) = (&self.shared, self.shared_holds) {
            shared.settle(&self.quota, &self.reservation.cost, actual);
        }
    }
}

/// Why no key can take a request.
#[derive(Debug, thiserror::Error)]
pub enum PickError {
    /// Every key was removed from rotation.
    #[error("no usable API key left: {0}")]
    NoKeys(String),
    /// Every key in rotation is waiting for its probe request to answer.
    #[error("every key is probing its limits")]
    Busy,
    /// The request can never fit the limits of any key.
    #[error(transparent)]
    NeverFits(#[from] QuotaError),
    /// No key in rotation serves the model at this endpoint (other keys remain).
    #[error("no upstream deployment in rotation serves model {model:?} at {endpoint}")]
    NoRoute {
        /// The model asked for.
        model: String,
        /// The endpoint asked for.
        endpoint: Endpoint,
    },
}

/// What a request asks the pool for.
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    /// The model named in the request.
    pub model: &'a str,
    /// Its endpoint.
    pub endpoint: Endpoint,
    /// A key to pass over when another one is eligible (the one that just failed).
    pub avoid: Option<usize>,
}

/// Every upstream key with its quotas.
#[derive(Debug)]
pub struct KeyPool {
    slots: Vec<Slot>,
    sharing: Option<Arc<dyn QuotaSharing>>,
    /// The shortest time a connection to the provider took to open, as every quota was told
    /// it.
    connected_in: Shortest,
}

impl KeyPool {
    /// A pool of `keys`, each with the limits it was configured with.
    pub fn new(keys: Vec<(ApiKey, QuotaConfig)>) -> Self {
        Self::with_routes(keys.into_iter().map(|(k, c)| (k, c, None)).collect())
    }

    /// A pool of keys of which some are `[[models]]` deployments (see the module
    /// documentation).
    pub fn with_routes(keys: Vec<(ApiKey, QuotaConfig, Option<Route>)>) -> Self {
        KeyPool {
            slots: keys
                .into_iter()
                .map(|(key, config, route)| Slot {
                    key,
                    config,
                    route,
                    quotas: Mutex::new(HashMap::new()),
                    removed: Mutex::new(None),
                    in_flight: AtomicUsize::new(0),
                })
                .collect(),
            sharing: None,
            connected_in: Shortest::default(),
        }
    }

    /// A connection to the provider opened in `took`: every quota's probe schedule may step
    /// that fast ([`Quota::connected_in`]), and the quotas made later start so. Cheap when
    /// `took` is no news.
    pub fn connected_in(&self, took: Duration) {
        if !self.connected_in.note(took) {
            return;
        }
        for slot in &self.slots {
            for quota in lock(&slot.quotas).values() {
                quota.local.connected_in(took);
            }
        }
    }

    /// Share every quota of the pool with other processes through `sharing`.
    pub fn with_shared(mut self, sharing: Arc<dyn QuotaSharing>) -> Self {
        self.sharing = Some(sharing);
        self
    }

    /// How the quotas are shared with other processes, if they are.
    pub fn sharing(&self) -> Option<&dyn QuotaSharing> {
        self.sharing.as_deref()
    }

    /// Number of keys, removed ones included.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the pool has no keys at all.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The quota of key `index` for `model`, created on first use.
    pub fn quota(&self, index: usize, model: &str, now: Instant) -> Option<Arc<Quota>> {
        self.key_quota(index, model, now).map(|q| q.local)
    }

    /// The quota of key `index` for `model` with its shared counterpart, created on first use.
    fn key_quota(&self, index: usize, model: &str, now: Instant) -> Option<KeyQuota> {
        let slot = self.slots.get(index)?;
        let connected = self.connected_in.get();
        let mut quotas = lock(&slot.quotas);
        Some(
            quotas
                .entry(model.to_string())
                .or_insert_with(|| {
                    let quota = Quota::new(slot.config, now);
                    if let Some(took) = connected {
                        quota.connected_in(took);
                    }
                    match &self.sharing {
                        Some(sharing) => KeyQuota {
                            local: Arc::new(quota.level_shared()),
                            shared: Some(sharing.quota(slot.key.secret(), model, now)),
                        },
                        None => KeyQuota {
                            local: Arc::new(quota),
                            shared: None,
                        },
                    }
                })
                .clone(),
        )
    }

    /// Quotas for `model` of the keys still in rotation that serve it.
    pub fn active_quotas(&self, model: &str, now: Instant) -> Vec<Arc<Quota>> {
        let routed = self
            .slots
            .iter()
            .any(|s| s.route.as_ref().is_some_and(|r| r.serves == model));
        (0..self.slots.len())
            .filter(|i| {
                let slot = &self.slots[*i];
                let serves = match &slot.route {
                    Some(route) => route.serves == model,
                    None => !routed,
                };
                serves && lock(&slot.removed).is_none()
            })
            .filter_map(|i| self.quota(i, model, now))
            .collect()
    }

    /// Reserve `cost` for `model` on the key that can send it soonest (ties: fewest in
    /// flight), among the keys without a route.
    pub fn pick(&self, model: &str, cost: Cost, now: Instant) -> Result<Pick, PickError> {
        let want = Want {
            model,
            endpoint: Endpoint::ChatCompletions,
            avoid: None,
        };
        self.pick_for(want, cost, now)
    }

    /// Whether key `slot` may take `want` (ignoring `avoid`).
    fn eligible(&self, slot: &Slot, want: &Want<'_>, routed: bool) -> bool {
        match &slot.route {
            Some(route) => {
                routed
                    && route.serves == want.model
                    && route.upstream.provider().speaks(want.endpoint)
            }
            None => !routed,
        }
    }

    /// Reserve `cost` for `want` on the eligible key that can send it soonest (see the module
    /// documentation).
    pub fn pick_for(&self, want: Want<'_>, cost: Cost, now: Instant) -> Result<Pick, PickError> {
        let routed = self
            .slots
            .iter()
            .any(|s| s.route.as_ref().is_some_and(|r| r.serves == want.model));
        let usable = |i: usize| {
            let slot = &self.slots[i];
            self.eligible(slot, &want, routed) && lock(&slot.removed).is_none()
        };
        let count = (0..self.slots.len()).filter(|i| usable(*i)).count();
        if count == 0 && self.active() > 0 {
            return Err(PickError::NoRoute {
                model: want.model.to_string(),
                endpoint: want.endpoint,
            });
        }
        let skip = want
            .avoid
            .filter(|a| count > 1 && *a < self.slots.len() && usable(*a));
        let mut best: Option<(Instant, usize, usize, KeyQuota)> = None;
        let mut never_fits = None;
        let mut busy = false;
        for index in (0..self.slots.len()).filter(|i| usable(*i) && Some(*i) != skip) {
            let slot = &self.slots[index];
            let Some(quota) = self.key_quota(index, want.model, now) else {
                continue;
            };
            match quota.local.earliest(&cost, now) {
                Ok(at) => {
                    let load = slot.in_flight.load(Ordering::Relaxed);
                    let better = best
                        .as_ref()
                        .is_none_or(|(t, l, _, _)| (at, load) < (*t, *l));
                    if better {
                        best = Some((at, load, index, quota));
                    }
                }
                Err(QuotaError::Probing) => busy = true,
                Err(err) => never_fits = Some(err),
            }
        }
        match best {
            Some((_, _, index, quota)) => {
                let reservation = quota.local.reserve(cost, now)?;
                Ok(Pick {
                    key_index: index,
                    key: self.slots[index].key.clone(),
                    quota: quota.local,
                    reservation,
                    route: self.slots[index].route.clone(),
                    shared: quota.shared,
                    shared_holds: false,
                })
            }
            None if busy => Err(PickError::Busy),
            None => match never_fits {
                Some(err) => Err(PickError::NeverFits(err)),
                None => Err(PickError::NoKeys(self.removal_summary())),
            },
        }
    }

    /// Every quota created so far: (key label, model, quota), keys in rotation only.
    pub fn quotas(&self) -> Vec<(String, String, Arc<Quota>)> {
        let mut all = Vec::new();
        for slot in self.slots.iter().filter(|s| lock(&s.removed).is_none()) {
            for (model, quota) in lock(&slot.quotas).iter() {
                all.push((
                    slot.key.label().to_string(),
                    model.clone(),
                    Arc::clone(&quota.local),
                ));
            }
        }
        all
    }

    /// Every key, removed ones included, as a status page shows it.
    pub fn keys(&self) -> Vec<KeyView> {
        self.slots
            .iter()
            .map(|slot| KeyView {
                label: slot.key.label().to_string(),
                serves: slot.route.as_ref().map(|r| {
                    format!(
                        "{} → {} ({})",
                        r.serves,
                        r.model,
                        r.upstream.provider().name()
                    )
                }),
                sending: slot.in_flight.load(Ordering::Relaxed),
                removed: lock(&slot.removed).clone(),
            })
            .collect()
    }

    /// Attempts being sent now, over every key.
    pub fn sending(&self) -> usize {
        self.slots
            .iter()
            .map(|s| s.in_flight.load(Ordering::Relaxed))
            .sum()
    }

    /// A key without a route still in rotation (the first), for calls that are not paced
    /// (`GET /v1/models`).
    pub fn any_key(&self) -> Option<ApiKey> {
        self.slots
            .iter()
            .find(|s| s.route.is_none() && lock(&s.removed).is_none())
            .map(|s| s.key.clone())
    }

    /// Count a request in flight on key `index` until the returned guard drops.
    pub fn start(&self, index: usize) -> InFlight<'_> {
        if let Some(slot) = self.slots.get(index) {
            slot.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        InFlight { pool: self, index }
    }

    /// Take key `index` out of rotation for `reason`. Returns true if it was in rotation.
    pub fn remove(&self, index: usize, reason: &str) -> bool {
        let Some(slot) = self.slots.get(index) else {
            return false;
        };
        let mut removed = lock(&slot.removed);
        if removed.is_some() {
            return false;
        }
        *removed = Some(reason.to_string());
        true
    }

    /// Keys still in rotation.
    pub fn active(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| lock(&s.removed).is_none())
            .count()
    }

    /// Per-minute limits summed over the keys in rotation (each key counted at its largest
    /// per-model limit), per dimension; `None` where no key knows one.
    pub fn limit_totals(&self) -> [Option<u64>; 4] {
        let mut totals = [None; 4];
        for slot in self.slots.iter().filter(|s| lock(&s.removed).is_none()) {
            let mut best = [None::<u64>; 4];
            for quota in lock(&slot.quotas).values() {
                for (i, limit) in quota.local.limits().iter().enumerate() {
                    if let Some((per_minute, _)) = limit {
                        best[i] = Some(best[i].map_or(*per_minute, |b: u64| b.max(*per_minute)));
                    }
                }
            }
            for i in 0..4 {
                if let Some(b) = best[i] {
                    totals[i] = Some(totals[i].unwrap_or(0) + b);
                }
            }
        }
        totals
    }

    /// Every removed key's fingerprint with the reason it was removed.
    pub fn removed(&self) -> Vec<(String, String)> {
        self.slots
            .iter()
            .filter_map(|s| {
                let reason = lock(&s.removed).clone()?;
                Some((s.key.label().to_string(), reason))
            })
            .collect()
    }

    /// "KEY#abcd: reason; ..." for every removed key.
    pub fn removal_summary(&self) -> String {
        let parts: Vec<String> = self
            .slots
            .iter()
            .filter_map(|s| lock(&s.removed).as_ref().map(|r| format!("{}: {r}", s.key)))
            .collect();
        if parts.is_empty() {
            "no keys configured".to_string()
        } else {
            parts.join("; ")
        }
    }
}

/// A request in flight on one key; dropping it ends the count.
#[derive(Debug)]
pub struct InFlight<'a> {
    pool: &'a KeyPool,
    index: usize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.pool.slots.get(self.index) {
            slot.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::LimitSpec;
    use crate::upstream::SharedAdmission;
    use std::time::Duration;

    fn pool(n: usize, rpm: u64) -> KeyPool {
        let config = QuotaConfig::default().with(
            Dimension::Requests,
            LimitSpec {
                per_minute: rpm,
                burst: Some(1),
            },
        );
        KeyPool::new(
            (0..n)
                .map(|i| (ApiKey::new(format!("secret-{i}"), &format!("K{i}")), config))
                .collect(),
        )
    }

    #[test]
    fn spreads_to_the_key_that_can_send_soonest() {
        let t0 = Instant::now();
        let pool = pool(2, 60);
        let picks: Vec<(usize, Duration)> = (0..4)
            .map(|_| {
                let p = pool.pick("m", Cost::request(1), t0).unwrap();
                (p.key_index, p.reservation.go_at - t0)
            })
            .collect();
        let secs = Duration::from_secs;
        assert_eq!(
            picks,
            vec![(0, secs(0)), (1, secs(0)), (0, secs(1)), (1, secs(1))]
        );
    }

    #[test]
    fn routes_by_model_and_endpoint_and_avoids_the_key_that_failed() {
        use crate::provider::Provider;
        let t0 = Instant::now();
        let upstream = |provider| {
            Upstream::new("http://127.0.0.1:9/v1", Duration::from_secs(1))
                .unwrap()
                .with_provider(provider, None)
        };
        let route = |serves: &str, provider| {
            Some(Route {
                serves: serves.to_string(),
                model: "m".to_string(),
                upstream: upstream(provider),
            })
        };
        let key = |i: usize| ApiKey::new(format!("secret-{i}"), &format!("K{i}"));
        let config = QuotaConfig::default();
        let pool = KeyPool::with_routes(vec![
            (key(0), config, None),
            (key(1), config, route("fast", Provider::Azure)),
            (key(2), config, route("fast", Provider::OpenAi)),
            (key(3), config, route("claude", Provider::Anthropic)),
        ]);
        let want = |model, endpoint, avoid| Want {
            model,
            endpoint,
            avoid,
        };
        let pick = |w| pool.pick_for(w, Cost::request(1), t0);
        let chat = Endpoint::ChatCompletions;
        assert_eq!(pick(want("fast", chat, None)).unwrap().key_index, 1);
        assert_eq!(pick(want("fast", chat, Some(1))).unwrap().key_index, 2);
        assert_eq!(pick(want("other", chat, None)).unwrap().key_index, 0);
        let claude = pick(want("claude", Endpoint::Messages, Some(3))).unwrap();
        assert_eq!(
            claude.key_index, 3,
            "the only deployment is used even when avoided"
        );
        assert_eq!(claude.route.map(|r| r.model).as_deref(), Some("m"));
        assert!(matches!(
            pick(want("claude", chat, None)),
            Err(PickError::NoRoute { .. })
        ));
        pool.remove(1, "401");
        pool.remove(2, "401");
        assert!(matches!(
            pick(want("fast", chat, None)),
            Err(PickError::NoRoute { .. })
        ));
    }

    /// A shared quota that records what it is told.
    #[derive(Debug, Default)]
    struct Told(Mutex<Vec<String>>);

    impl SharedQuota for Told {
        fn admit<'a>(
            &'a self,
            _: &'a Quota,
            _: &'a Cost,
            _: Instant,
        ) -> futures::future::BoxFuture<'a, SharedAdmission> {
            Box::pin(async {
                SharedAdmission {
                    wait: Duration::ZERO,
                    holds: true,
                }
            })
        }

        fn settle(&self, _: &Quota, reserved: &Cost, actual: &Cost) {
            let tokens = |c: &Cost| c.get(Dimension::Tokens);
            lock(&self.0).push(format!("settle {} -> {}", tokens(reserved), tokens(actual)));
        }

        fn pause(&self, _: &Quota, _: Instant, refused: Option<Dimension>, _: &Cost) {
            lock(&self.0).push(format!("pause {refused:?}"));
        }
    }

    #[derive(Debug)]
    struct Sharing(Arc<Told>);

    impl QuotaSharing for Sharing {
        fn quota(&self, _: &str, _: &str, _: Instant) -> Arc<dyn SharedQuota> {
            Arc::clone(&self.0) as Arc<dyn SharedQuota>
        }

        fn fallback_share(&self) -> Option<f64> {
            None
        }
    }

    #[test]
    fn a_pick_settles_the_shared_quota_only_when_it_holds_the_reservation() {
        let t0 = Instant::now();
        let told = Arc::new(Told::default());
        let pool = pool(1, 60).with_shared(Arc::new(Sharing(Arc::clone(&told))));
        let mut pick = pool.pick("m", Cost::request(10), t0).unwrap();
        assert!(pick.shared.is_some());
        // Not admitted by the shared quota (paced on the fallback share): it stays local.
        pick.settle(Cost::request(4), t0);
        pick.cancel(t0);
        // A pause reaches the shared quota whoever admitted the request.
        pick.pause(t0, Some(Dimension::Requests), &Cost::request(1));
        pick.shared_holds = true;
        pick.settle(Cost::request(4), t0);
        pick.cancel(t0);
        assert_eq!(
            *lock(&told.0),
            ["pause Some(Requests)", "settle 10 -> 4", "settle 10 -> 0"]
        );
    }

    #[test]
    fn removed_keys_leave_rotation() {
        let t0 = Instant::now();
        let pool = pool(2, 60);
        assert!(pool.remove(0, "insufficient_quota"));
        assert!(!pool.remove(0, "again"));
        for _ in 0..3 {
            assert_eq!(pool.pick("m", Cost::request(1), t0).unwrap().key_index, 1);
        }
        pool.remove(1, "401 invalid_api_key");
        let err = pool.pick("m", Cost::request(1), t0).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("K0#") && text.contains("insufficient_quota"),
            "{text}"
        );
        assert!(!text.contains("secret-"));
    }
}
