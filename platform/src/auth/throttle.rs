//! Sign-in attempts per client address (this node's view): an address may make so many
//! attempts within a window, each counted from the moment it is admitted (so parallel guesses
//! cannot all pass one check) and handed back when it succeeds. Refused attempts are summed per
//! address and window for the audit log, so a flood writes one entry, not one per request.

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lru::LruCache;
use parking_lot::Mutex;

/// Client addresses whose attempts are counted together: an IPv4 address, or an IPv6 /64 (one
/// subscriber's usual allocation; counting single IPv6 addresses would let a client rotate
/// through 2^64 of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressBucket(IpAddr);

impl AddressBucket {
    pub fn of(addr: IpAddr) -> AddressBucket {
        match addr.to_canonical() {
            IpAddr::V4(a) => AddressBucket(IpAddr::V4(a)),
            IpAddr::V6(a) => {
                let prefix = u128::from(a) & !u128::from(u64::MAX);
                AddressBucket(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
        }
    }
}

impl fmt::Display for AddressBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

/// Attempts refused to one address within one window.
#[derive(Debug, Clone)]
pub(super) struct Refusals {
    pub count: u64,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    opened: Instant,
}

#[derive(Default)]
struct Bucket {
    /// When each counted attempt was admitted, oldest first.
    attempts: VecDeque<Instant>,
    refused: Option<Refusals>,
}

/// An admitted attempt; `give_back` uncounts it, otherwise it counts as a failure.
#[must_use]
pub(super) struct Slot {
    bucket: AddressBucket,
    at: Instant,
}

pub(super) enum Admission {
    Admitted(Slot),
    Refused { retry_after: Duration },
}

struct Buckets {
    live: LruCache<AddressBucket, Bucket>,
    /// Refusals of buckets pushed out of `live` before their window closed, kept for the audit.
    evicted: Vec<(AddressBucket, Refusals)>,
}

pub(super) struct AddressThrottle {
    max_attempts: usize,
    window: Duration,
    buckets: Mutex<Buckets>,
}

impl AddressThrottle {
    /// `capacity` addresses are tracked at most: when a new one comes, the one seen least
    /// recently goes (its attempts are the oldest), never everyone's counts at once.
    pub(super) fn new(max_attempts: usize, window: Duration, capacity: usize) -> AddressThrottle {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        AddressThrottle {
            max_attempts,
            window,
            buckets: Mutex::new(Buckets { live: LruCache::new(capacity), evicted: Vec::new() }),
        }
    }

    /// Counts an attempt from `addr`, or refuses it when the address has used up its window.
    pub(super) fn admit(&self, addr: IpAddr) -> Admission {
        let key = AddressBucket::of(addr);
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        if !buckets.live.contains(&key)
            && let Some((old, evicted)) = buckets.live.push(key, Bucket::default())
            && let Some(refused) = evicted.refused
            && buckets.evicted.len() < buckets.live.cap().get()
        {
            buckets.evicted.push((old, refused));
        }
        let Some(bucket) = buckets.live.get_mut(&key) else { return Admission::Refused { retry_after: self.window } };
        while bucket.attempts.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            bucket.attempts.pop_front();
        }
        if bucket.attempts.len() < self.max_attempts {
            bucket.attempts.push_back(now);
            return Admission::Admitted(Slot { bucket: key, at: now });
        }
        let at = Utc::now();
        match &mut bucket.refused {
            Some(r) => {
                r.count += 1;
                r.last = at;
            }
            None => {
                tracing::warn!(address = %key, "sign-ins from this address are refused for too many failures");
                bucket.refused = Some(Refusals { count: 1, first: at, last: at, opened: now });
            }
        }
        let oldest = bucket.attempts.front().copied().unwrap_or(now);
        Admission::Refused { retry_after: self.window.saturating_sub(now.duration_since(oldest)) }
    }

    /// Uncounts an attempt that succeeded (or was never decided).
    pub(super) fn give_back(&self, slot: Slot) {
        let mut buckets = self.buckets.lock();
        if let Some(bucket) = buckets.live.peek_mut(&slot.bucket)
            && let Some(i) = bucket.attempts.iter().position(|t| *t == slot.at)
        {
            bucket.attempts.remove(i);
        }
    }

    /// Takes the refusals whose window has closed (all of them when `all`), and forgets
    /// addresses with nothing left to count.
    pub(super) fn take_refusals(&self, all: bool) -> Vec<(AddressBucket, Refusals)> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let mut out = std::mem::take(&mut buckets.evicted);
        let mut idle = Vec::new();
        for (key, bucket) in buckets.live.iter_mut() {
            if bucket.refused.as_ref().is_some_and(|r| all || now.duration_since(r.opened) >= self.window)
                && let Some(r) = bucket.refused.take()
            {
                out.push((*key, r));
            }
            let live = bucket.attempts.back().is_some_and(|t| now.duration_since(*t) < self.window);
            if !live && bucket.refused.is_none() {
                idle.push(*key);
            }
        }
        for key in idle {
            buckets.live.pop(&key);
        }
        out
    }

    /// Addresses tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.lock().live.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn admitted(t: &AddressThrottle, addr: &str) -> bool {
        matches!(t.admit(ip(addr)), Admission::Admitted(_))
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_bucket_and_mapped_ipv4_is_ipv4() {
        assert_eq!(AddressBucket::of(ip("2001:db8:1:2::1")), AddressBucket::of(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(AddressBucket::of(ip("2001:db8:1:2::1")), AddressBucket::of(ip("2001:db8:1:3::1")));
        assert_eq!(AddressBucket::of(ip("::ffff:192.0.2.1")), AddressBucket::of(ip("192.0.2.1")));
        assert_eq!(AddressBucket::of(ip("2001:db8:1:2::1")).to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn given_back_attempts_do_not_count() {
        let t = AddressThrottle::new(2, Duration::from_secs(60), 10);
        for _ in 0..5 {
            match t.admit(ip("192.0.2.1")) {
                Admission::Admitted(slot) => t.give_back(slot),
                Admission::Refused { .. } => panic!("refused"),
            }
        }
        assert!(admitted(&t, "192.0.2.1"));
        assert!(admitted(&t, "192.0.2.1"));
        assert!(!admitted(&t, "192.0.2.1"));
    }

    #[test]
    fn a_full_table_forgets_the_least_recent_address_only() {
        let t = AddressThrottle::new(1, Duration::from_secs(60), 3);
        assert!(admitted(&t, "192.0.2.1"));
        assert!(admitted(&t, "192.0.2.2"));
        assert!(admitted(&t, "192.0.2.3"));
        assert!(!admitted(&t, "192.0.2.1"), "refusal keeps the address fresh");
        assert!(admitted(&t, "192.0.2.4"));
        assert_eq!(t.tracked(), 3);
        assert!(!admitted(&t, "192.0.2.1"));
        assert!(!admitted(&t, "192.0.2.3"));
        assert!(admitted(&t, "192.0.2.2"), "the least recently seen went");
    }

    #[test]
    fn refusals_are_summed_until_taken() {
        let t = AddressThrottle::new(1, Duration::from_secs(60), 10);
        assert!(admitted(&t, "192.0.2.1"));
        for _ in 0..7 {
            assert!(!admitted(&t, "192.0.2.1"));
        }
        assert!(t.take_refusals(false).is_empty(), "the window is still open");
        let taken = t.take_refusals(true);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].0.to_string(), "192.0.2.1");
        assert_eq!(taken[0].1.count, 7);
        assert!(t.take_refusals(true).is_empty());
    }
}
