//! Client virtual keys: who is calling, and each caller's own quota.
//!
//! Every `[[clients]]` entry names an environment variable holding the key its callers send
//! as `Authorization: Bearer KEY`. Keys are kept only as SHA-256 digests and looked up by
//! digest, so no client key is stored or compared in the clear. With no `[[clients]]` the
//! gateway is open and every caller is the client `anonymous`.
//!
//! A client with `rpm`/`tpm` has its own [`Quota`] (the same GCRA as the upstream keys, with no
//! jitter margin since it is enforced here, not by a remote provider): a request reserves its
//! estimated cost there first and waits its turn, up to its deadline; past it the client gets a
//! 429 naming its own limit. The reservation is settled with the usage the provider reports.
//!
//! A client's quota is its own: this module must not know the engine, the fair queue or the
//! upstream key pool.

use super::config::ClientSpec;
use super::errors::ApiError;
use crate::provider::usage::{Charge, Usage};
use crate::quota::{Cost, Quota, QuotaError, Reservation};
use crate::upstream::{KeyError, KeyProblem};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Name of the single client of an open gateway.
pub const ANONYMOUS: &str = "anonymous";

/// One client.
#[derive(Debug)]
pub struct Client {
    /// Its name, for logs and metrics.
    pub name: Arc<str>,
    /// Its position in the configuration (its flow in the fair queue).
    pub index: usize,
    /// Its share of upstream capacity.
    pub weight: u32,
    quota: Option<Quota>,
}

/// Every client, by key digest.
#[derive(Debug)]
pub struct Clients {
    by_digest: HashMap<[u8; 32], Arc<Client>>,
    open: Option<Arc<Client>>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Why a client's own quota refuses a request.
#[derive(Debug)]
pub enum Refusal {
    /// The cost exceeds the client's limit outright.
    NeverFits(QuotaError),
    /// Its turn would come after the deadline; this long from now.
    TooLate(Duration),
}

/// A request's reservation on its client's quota.
#[derive(Debug)]
pub struct ClientTicket {
    client: Arc<Client>,
    reservation: Option<Reservation>,
}

impl Clients {
    /// Clients from their specs, reading each key from its environment variable; no specs
    /// makes an open gateway.
    pub fn load(specs: &[ClientSpec]) -> Result<Self, KeyProblem> {
        Self::load_with(specs, |name| std::env::var(name).ok())
    }

    /// [`Clients::load`] with `lookup` standing for the environment.
    pub fn load_with(
        specs: &[ClientSpec],
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, KeyProblem> {
        if specs.is_empty() {
            return Ok(Clients {
                by_digest: HashMap::new(),
                open: Some(Arc::new(Client {
                    name: ANONYMOUS.into(),
                    index: 0,
                    weight: 1,
                    quota: None,
                })),
            });
        }
        let now = Instant::now();
        let mut by_digest = HashMap::new();
        for (index, spec) in specs.iter().enumerate() {
            let fix = || {
                format!(
                    "set it to the key client {:?} sends (clients[{index}].key_env, the config's \
                     [[clients]] entry with name = {:?})",
                    spec.name, spec.name
                )
            };
            let key = match lookup(&spec.key_env) {
                None => return Err(KeyError::Missing(spec.key_env.clone()).with_fix(fix())),
                Some(key) if key.trim().is_empty() => {
                    return Err(KeyError::Empty(spec.key_env.clone()).with_fix(fix()));
                }
                Some(key) => key.trim().to_string(),
            };
            let limited =
                spec.limits != crate::quota::QuotaConfig::default().with_margin(Duration::ZERO);
            by_digest.insert(
                digest(&key),
                Arc::new(Client {
                    name: spec.name.as_str().into(),
                    index,
                    weight: spec.weight,
                    quota: limited.then(|| Quota::new(spec.limits, now)),
                }),
            );
        }
        Ok(Clients {
            by_digest,
            open: None,
        })
    }

    /// Number of fair-share flows (one per client).
    pub fn flows(&self) -> usize {
        self.by_digest.len().max(1)
    }

    /// The client whose key is in `authorization` (`Bearer KEY`).
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Arc<Client>, ApiError> {
        if let Some(open) = &self.open {
            return Ok(Arc::clone(open));
        }
        let key = authorization
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|k| !k.is_empty());
        let Some(key) = key else {
            return Err(ApiError::unauthorized(false));
        };
        self.by_digest
            .get(&digest(key))
            .cloned()
            .ok_or_else(|| ApiError::unauthorized(true))
    }
}

impl Client {
    /// Reserve `cost` on the client's own quota: the ticket and when the request may go, or
    /// why not. A client without limits goes at once.
    pub fn admit(
        self: &Arc<Self>,
        cost: Cost,
        deadline: Instant,
        now: Instant,
    ) -> Result<(ClientTicket, Instant), Refusal> {
        let Some(quota) = &self.quota else {
            return Ok((
                ClientTicket {
                    client: Arc::clone(self),
                    reservation: None,
                },
                now,
            ));
        };
        let reservation = quota.reserve(cost, now).map_err(Refusal::NeverFits)?;
        if crate::engine::job::misses_deadline(reservation.go_at, deadline, now) {
            quota.cancel(&reservation, now);
            return Err(Refusal::TooLate(
                reservation.go_at.saturating_duration_since(now),
            ));
        }
        let go_at = reservation.go_at;
        Ok((
            ClientTicket {
                client: Arc::clone(self),
                reservation: Some(reservation),
            },
            go_at,
        ))
    }
}

impl ClientTicket {
    /// The provider answered: charge what it charged (see [`Charge`]), or keep the estimate
    /// when no usage was reported.
    pub fn settle(self, usage: Option<Usage>, charge: Charge) {
        if let (Some(quota), Some(reservation), Some(usage)) =
            (&self.client.quota, &self.reservation, usage)
        {
            quota.settle(reservation, charge.cost(&usage), Instant::now());
        }
    }

    /// The request never reached the provider: give the reservation back.
    pub fn cancel(self) {
        if let (Some(quota), Some(reservation)) = (&self.client.quota, &self.reservation) {
            quota.cancel(reservation, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::limits;

    #[test]
    fn open_gateway_and_key_lookup() {
        let open = Clients::load(&[]).unwrap();
        assert_eq!(&*open.authenticate(None).unwrap().name, ANONYMOUS);
        let spec = ClientSpec {
            name: "a".into(),
            key_env: "PACELINE_TEST_CLIENT_A".into(),
            limits: limits(Some(60), None).with_margin(Duration::ZERO),
            weight: 2,
        };
        let env =
            |name: &str| (name == "PACELINE_TEST_CLIENT_A").then(|| "client-secret-a".to_string());
        let missing = Clients::load_with(std::slice::from_ref(&spec), |_| None);
        assert!(matches!(
            missing,
            Err(KeyProblem {
                error: KeyError::Missing(_),
                ..
            })
        ));
        let text = missing.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.starts_with("environment variable PACELINE_TEST_CLIENT_A is not set; ")
                && text.contains("clients[0].key_env")
                && text.contains("[[clients]] entry with name = \"a\""),
            "{text}"
        );
        let clients = Clients::load_with(&[spec], env).unwrap();
        let a = clients
            .authenticate(Some("Bearer client-secret-a"))
            .unwrap();
        assert_eq!((&*a.name, a.weight), ("a", 2));
        assert_eq!(
            clients
                .authenticate(Some("Bearer nope"))
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(clients.authenticate(None).unwrap_err().status, 401);
        // 60 rpm with a burst of one second's worth: the second request waits a second.
        let now = Instant::now();
        let (_t1, go1) = a
            .admit(Cost::request(1), now + Duration::from_secs(5), now)
            .unwrap();
        assert_eq!(go1, now);
        let (t2, go2) = a
            .admit(Cost::request(1), now + Duration::from_secs(5), now)
            .unwrap();
        assert_eq!(go2 - now, Duration::from_secs(1));
        t2.cancel();
        match a.admit(Cost::request(1), now, now) {
            Err(Refusal::TooLate(wait)) => assert_eq!(wait, Duration::from_secs(1)),
            other => panic!("expected TooLate, got {other:?}"),
        }
    }
}
