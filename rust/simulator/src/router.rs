use std::cmp::Reverse;

use crate::error::{Result, SimulatorError};

/// How the global scheduler picks a replica for each arriving request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterKind {
    RoundRobin,
    /// The replica with the fewest requests added and not yet finished (lowest id on ties).
    LeastOutstanding,
    /// Uniformly at random from a seeded generator.
    Random,
    /// The replica whose prefix cache holds the most of the request's prompt; among those,
    /// the least outstanding (lowest id on ties). While the replicas are out of balance (the
    /// busiest has more than [`AFFINITY_MAX_IMBALANCE`] requests outstanding beyond the
    /// idlest), the least outstanding, as SGLang's cache-aware router does: otherwise a prefix
    /// every request shares (a system prompt) keeps every request on the replica that computed
    /// it first. Needs prefix caching.
    PrefixAffinity,
}

impl RouterKind {
    pub const ALL: [RouterKind; 4] = [
        RouterKind::RoundRobin,
        RouterKind::LeastOutstanding,
        RouterKind::Random,
        RouterKind::PrefixAffinity,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RouterKind::RoundRobin => "round_robin",
            RouterKind::LeastOutstanding => "least_outstanding",
            RouterKind::Random => "random",
            RouterKind::PrefixAffinity => "prefix_affinity",
        }
    }

    pub fn from_name(name: &str) -> Result<RouterKind> {
        RouterKind::ALL
            .into_iter()
            .find(|router| router.name() == name)
            .ok_or_else(|| {
                let known: Vec<_> = RouterKind::ALL.iter().map(|r| r.name()).collect();
                SimulatorError::InvalidDeployment(format!(
                    "unknown router {name:?}; expected one of {}",
                    known.join(", ")
                ))
            })
    }
}

/// How far apart (in requests outstanding) the busiest and the idlest replica may be before the
/// prefix-affinity router balances instead (SGLang's `balance_abs_threshold`).
pub const AFFINITY_MAX_IMBALANCE: u32 = 32;

/// SplitMix64: a tiny generator whose output depends only on the seed, on every platform.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (Lemire's multiply-shift; the bias is below 2^-32 for small bounds).
    pub fn below(&mut self, bound: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(bound)) >> 32) as u32
    }
}

#[derive(Debug, Clone)]
pub struct Router {
    kind: RouterKind,
    next: u32,
    rng: SplitMix64,
}

impl Router {
    pub fn new(kind: RouterKind, seed: u64) -> Self {
        Router {
            kind,
            next: 0,
            rng: SplitMix64::new(seed),
        }
    }

    /// `outstanding[i]` is replica i's number of unfinished requests; `cached_tokens(i)` how
    /// many of the request's prompt tokens replica i's prefix cache holds (asked only by
    /// `PrefixAffinity`).
    pub fn pick(&mut self, outstanding: &[u32], cached_tokens: impl Fn(usize) -> u32) -> u32 {
        let num_replicas = outstanding.len() as u32;
        match self.kind {
            RouterKind::RoundRobin => {
                let replica = self.next;
                self.next = (self.next + 1) % num_replicas;
                replica
            }
            RouterKind::LeastOutstanding => least_outstanding(outstanding),
            RouterKind::Random => self.rng.below(num_replicas),
            RouterKind::PrefixAffinity => {
                let busiest = outstanding.iter().max().copied().unwrap_or(0);
                let idlest = outstanding.iter().min().copied().unwrap_or(0);
                if busiest - idlest > AFFINITY_MAX_IMBALANCE {
                    return least_outstanding(outstanding);
                }
                outstanding
                    .iter()
                    .enumerate()
                    .min_by_key(|&(index, &count)| (Reverse(cached_tokens(index)), count, index))
                    .map_or(0, |(index, _)| index as u32)
            }
        }
    }
}

/// The replica with the fewest requests outstanding, the lowest id on ties.
fn least_outstanding(outstanding: &[u32]) -> u32 {
    outstanding
        .iter()
        .enumerate()
        .min_by_key(|&(index, &count)| (count, index))
        .map_or(0, |(index, _)| index as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_cache(_: usize) -> u32 {
        0
    }

    #[test]
    fn round_robin_cycles_from_replica_zero() {
        let mut router = Router::new(RouterKind::RoundRobin, 0);
        let picks: Vec<_> = (0..5).map(|_| router.pick(&[0, 0, 0], no_cache)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1]);
    }

    #[test]
    fn least_outstanding_takes_the_lowest_id_on_ties() {
        let mut router = Router::new(RouterKind::LeastOutstanding, 0);
        assert_eq!(router.pick(&[3, 1, 1, 2], no_cache), 1);
        assert_eq!(router.pick(&[0, 0], no_cache), 0);
    }

    #[test]
    fn random_is_seeded_and_covers_every_replica() {
        let picks = |seed| {
            let mut router = Router::new(RouterKind::Random, seed);
            (0..1000)
                .map(|_| router.pick(&[0; 4], no_cache))
                .collect::<Vec<_>>()
        };
        assert_eq!(picks(7), picks(7));
        assert_ne!(picks(7), picks(8));
        let counts = (0..4).map(|r| picks(7).iter().filter(|&&p| p == r).count());
        assert!(counts.into_iter().all(|count| (200..300).contains(&count)));
    }

    #[test]
    fn prefix_affinity_takes_the_most_cached_then_the_least_outstanding() {
        let mut router = Router::new(RouterKind::PrefixAffinity, 0);
        let cached = [16, 48, 48, 0];
        assert_eq!(router.pick(&[0, 5, 2, 0], |i| cached[i]), 2);
        assert_eq!(router.pick(&[0, 2, 2, 0], |i| cached[i]), 1);
        assert_eq!(router.pick(&[3, 1, 1, 0], no_cache), 3);
        assert_eq!(router.pick(&[1, 1], no_cache), 0);
        // Out of balance (34 - 1 > 32): the least outstanding, whatever the cache holds.
        assert_eq!(router.pick(&[34, 32, 2, 1], |i| cached[i]), 3);
        assert_eq!(router.pick(&[33, 32, 2, 1], |i| cached[i]), 2);
    }
}
