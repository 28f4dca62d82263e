//! Turning one adapter-supplied random `u64` into every random choice Envoy makes for a request.
//!
//! `decide` stays deterministic; the adapter calls [`Decision::sample`] with fresh entropy. Each
//! choice uses its own draw from a splitmix64 sequence seeded by the entropy, so the choices are
//! independent of each other, and a fixed entropy reproduces the same outcome (tests, `eval`).

use crate::decision::{Action, Decision, DestinationChoice, FaultAbort};

/// Envoy's fractional percentages for faults and mirrors use the MILLION denominator (istiod's
/// `translatePercentToFractionalPercent`), and fire when `random % denominator < numerator`.
const MILLION: u64 = 1_000_000;

/// splitmix64 (Steele, Lea, Flood 2014): one well-mixed output per step. The adapters also use
/// it to turn one per-worker seed into per-request entropy.
#[derive(Debug, Clone, Copy)]
pub struct Entropy(u64);

impl Entropy {
    /// Seeds the generator.
    pub fn new(seed: u64) -> Self {
        Entropy(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Whether a percentage (0..=100) fires for a draw, at Envoy's MILLION granularity.
pub(crate) fn fires(percentage: f64, draw: u64) -> bool {
    let numerator = (percentage * 10_000.0).round();
    let numerator = if numerator <= 0.0 {
        0
    } else if numerator >= MILLION as f64 {
        MILLION
    } else {
        numerator as u64
    };
    draw % MILLION < numerator
}

/// Envoy's weighted-cluster pick (`random % total_weight` over the cumulative weights); the
/// only destination of a single-destination list.
fn pick_weighted(dests: &[crate::decision::DestinationChoice], draw: u64) -> Option<usize> {
    if dests.is_empty() {
        return None;
    }
    let total: u64 = dests.iter().map(|d| u64::from(d.weight)).sum();
    if dests.len() == 1 || total == 0 {
        return Some(0);
    }
    let mut pick = draw % total;
    for (i, d) in dests.iter().enumerate() {
        let w = u64::from(d.weight);
        if pick < w {
            return Some(i);
        }
        pick -= w;
    }
    None
}

/// The random part of a decision, resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampled {
    /// Index into [`Decision::destinations`] of the picked destination (forwarding only; `None`
    /// when an abort fired).
    pub destination: Option<usize>,
    /// Index into [`Decision::route_destinations`] of the destination Envoy's route resolution
    /// picked, also when the proxy then answers itself (its response header operations apply
    /// to the local reply). Equals `destination` whenever that is set.
    pub route_destination: Option<usize>,
    /// Delay to inject before continuing, if the delay fault fired.
    pub delay_ms: Option<u64>,
    /// The abort that fired, if any.
    pub abort: Option<FaultAbort>,
    /// Bit `i` set: mirror `i` of [`Decision::mirrors`] receives a copy.
    pub mirrors: u64,
    /// Final status when the proxy answers itself: the decision's own status, an abort that
    /// fired, or the unavailable-destination status. `None`: forwarded upstream.
    pub status: Option<u16>,
}

impl Sampled {
    /// Whether mirror `i` fires.
    pub fn mirror_fires(&self, i: usize) -> bool {
        i < 64 && self.mirrors & (1u64 << i) != 0
    }
}

impl<'a> Decision<'a> {
    /// The destination a sample picked (with its combined header operations), if forwarding.
    pub fn picked(&self, sampled: &Sampled) -> Option<&'a DestinationChoice> {
        sampled.destination.and_then(|i| self.destinations.get(i))
    }

    /// Resolve the random choices from one `entropy` value: the weighted destination (Envoy
    /// picks `random % total_weight` over the cumulative weights), whether the delay and abort
    /// faults fire, and which mirrors fire. Independent draws, deterministic for a given entropy.
    pub fn sample(&self, entropy: u64) -> Sampled {
        let mut rng = Entropy::new(entropy);
        let d_dest = rng.next_u64();
        let d_delay = rng.next_u64();
        let d_abort = rng.next_u64();

        let proxy_answers = !matches!(self.action, Action::Forward);
        let fault = self.fault;
        let delay_ms = fault
            .and_then(|f| f.delay)
            .filter(|d| fires(d.percentage, d_delay))
            .map(|d| d.fixed_delay_ms);
        // `decide` only reports a fault when the fault filter runs for this request (not after a
        // deny, a CORS preflight answer or a missing route, which answer before it).
        let abort = fault
            .and_then(|f| f.abort)
            .filter(|a| fires(a.percentage, d_abort));

        let mut destination = None;
        // An abort answers before the router picks anything.
        if matches!(self.action, Action::Forward) && abort.is_none() {
            destination = pick_weighted(self.destinations, d_dest);
        }
        // The same draw: when forwarding, both name the same destination.
        let route_destination = pick_weighted(self.route_destinations, d_dest);

        let mut mirrors = 0u64;
        if matches!(self.action, Action::Forward) && abort.is_none() {
            for (i, m) in self.mirrors.iter().enumerate().take(64) {
                if fires(m.percentage, rng.next_u64()) {
                    mirrors |= 1u64 << i;
                }
            }
        }

        let status = if let Some(a) = abort {
            Some(a.status())
        } else if proxy_answers {
            self.status
        } else {
            destination
                .and_then(|i| self.destinations.get(i))
                .filter(|d| d.unavailable)
                .map(|_| self.unavailable_status)
        };
        Sampled {
            destination,
            route_destination,
            delay_ms,
            abort,
            mirrors,
            status,
        }
    }
}
