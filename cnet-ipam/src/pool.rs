//! The pure core: range sets, the lease table, the used-address index and the round-robin
//! allocation strategy. No I/O. Changes are expressed as [`Event`]s, planned first (which
//! checks everything) and applied second (which cannot fail), so a store can persist an event
//! before it changes its memory: all-or-nothing by construction.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::addr::{canonical, from_u128, to_u128};
use crate::config::RangeSet;
use crate::error::{IpamError, Result};
use crate::intervals::IntervalSet;
use crate::types::{AllocationRequest, Lease, LeasedAddress, Owner, PoolStatus, RangeSetStatus};

/// One change to the lease table; what the disk store journals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Event {
    /// A lease was taken; `last` is the new last-reserved address per range set.
    Allocate {
        lease: Lease,
        last: Vec<Option<IpAddr>>,
    },
    /// The owner's lease was released.
    Release { owner: Owner },
}

/// The whole state, as a snapshot record stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub(crate) leases: Vec<Lease>,
    pub(crate) last: Vec<Option<IpAddr>>,
}

/// Range sets plus who holds what.
#[derive(Debug, Clone)]
pub struct Pool {
    sets: Vec<RangeSet>,
    /// Per range set, per range: used values (reserved addresses and leased ones).
    used: Vec<Vec<IntervalSet>>,
    /// Per range set: how many of the used values are reserved (gateway, network, broadcast).
    reserved: Vec<u128>,
    /// Per range set: addresses that may ever be handed out.
    capacity: Vec<u128>,
    leases: BTreeMap<Owner, Lease>,
    holders: HashMap<IpAddr, Owner>,
    last: Vec<Option<IpAddr>>,
}

impl Pool {
    /// An empty pool over `sets` (validated range sets, e.g. [`crate::IpamConfig::ranges`]).
    pub fn new(sets: Vec<RangeSet>) -> Self {
        let mut used = Vec::with_capacity(sets.len());
        let mut reserved = Vec::with_capacity(sets.len());
        let mut capacity = Vec::with_capacity(sets.len());
        for set in &sets {
            let mut per_range = Vec::with_capacity(set.ranges.len());
            let mut res = 0u128;
            let mut cap = 0u128;
            for r in &set.ranges {
                let mut iv = IntervalSet::default();
                for ip in r.reserved_in_range() {
                    if iv.insert(to_u128(ip)) {
                        res += 1;
                    }
                }
                let size = to_u128(r.range_end) - to_u128(r.range_start);
                cap = cap.saturating_add(size.saturating_add(1) - iv.len());
                per_range.push(iv);
            }
            used.push(per_range);
            reserved.push(res);
            capacity.push(cap);
        }
        let n = sets.len();
        Pool {
            sets,
            used,
            reserved,
            capacity,
            leases: BTreeMap::new(),
            holders: HashMap::new(),
            last: vec![None; n],
        }
    }

    /// A pool over `sets` already holding `leases`, resuming round-robin after `last`
    /// (per range set). Fails with [`IpamError::InvalidConfig`] when two leases share an
    /// owner or an address.
    pub fn restore(
        sets: Vec<RangeSet>,
        leases: Vec<Lease>,
        last: Vec<Option<IpAddr>>,
    ) -> Result<Self> {
        let mut pool = Pool::new(sets);
        pool.load_snapshot(Snapshot { leases, last })
            .map_err(|r| IpamError::config("leases", r))?;
        Ok(pool)
    }

    /// The range sets.
    pub fn range_sets(&self) -> &[RangeSet] {
        &self.sets
    }

    /// The lease of `owner`.
    pub fn lease(&self, owner: &Owner) -> Option<&Lease> {
        self.leases.get(owner)
    }

    /// Every lease, ordered by owner.
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// Who holds `ip`, if anyone.
    pub fn holder(&self, ip: IpAddr) -> Option<&Owner> {
        self.holders.get(&canonical(ip))
    }

    /// The last address reserved in each range set (where round-robin resumes).
    pub fn last_reserved(&self) -> &[Option<IpAddr>] {
        &self.last
    }

    /// Where in the used index an address lives: (set, range).
    fn locate(&self, ip: IpAddr) -> Option<(usize, usize)> {
        self.sets
            .iter()
            .enumerate()
            .find_map(|(s, set)| set.range_for(ip).map(|(r, _)| (s, r)))
    }

    /// Occupancy per range set.
    pub fn status(&self) -> PoolStatus {
        let range_sets = (0..self.sets.len())
            .map(|i| {
                let total: u128 = self.used[i].iter().map(IntervalSet::len).sum();
                let used = total - self.reserved[i];
                RangeSetStatus {
                    range_set: i,
                    capacity: self.capacity[i],
                    used,
                    free: self.capacity[i].saturating_sub(used),
                }
            })
            .collect();
        PoolStatus {
            range_sets,
            leases: self.leases.len(),
        }
    }

    /// Decide what `request` would get, without changing anything.
    pub(crate) fn plan_allocate(&self, request: &AllocationRequest) -> Result<(Lease, Event)> {
        let owner = &request.owner;
        if owner.container_id.trim().is_empty() || owner.ifname.is_empty() {
            return Err(IpamError::InvalidOwner {
                owner: owner.clone(),
                reason: "container id and interface name must not be empty".into(),
            });
        }
        if let Some(l) = self.leases.get(owner) {
            return Err(IpamError::DuplicateAllocation {
                owner: owner.clone(),
                addrs: l.ips(),
            });
        }
        // Assign requested addresses to range sets: each set takes the first one it contains.
        let mut pending: Vec<IpAddr> = Vec::new();
        for ip in request.requested.iter().map(|ip| canonical(*ip)) {
            if !pending.contains(&ip) {
                pending.push(ip);
            }
        }
        let mut wanted: Vec<Option<IpAddr>> = vec![None; self.sets.len()];
        for (i, set) in self.sets.iter().enumerate() {
            if let Some(pos) = pending.iter().position(|ip| set.contains(*ip)) {
                wanted[i] = Some(pending.remove(pos));
            }
        }
        if let Some(ip) = pending
            .iter()
            .find(|ip| !self.sets.iter().any(|s| s.contains(**ip)))
        {
            return Err(IpamError::RequestedOutsideRanges { addr: *ip });
        }
        if !pending.is_empty() {
            return Err(IpamError::RequestedNotUsed { addrs: pending });
        }
        let mut addresses = Vec::with_capacity(self.sets.len());
        for (i, set) in self.sets.iter().enumerate() {
            let (ip, r) = match wanted[i] {
                Some(ip) => {
                    let Some((r, range)) = set.range_for(ip) else {
                        return Err(IpamError::RequestedOutsideRanges { addr: ip });
                    };
                    let reason = range
                        .reserved_reason(ip)
                        .map(str::to_string)
                        .or_else(|| self.holders.get(&ip).map(|o| format!("held by {o}")));
                    if let Some(reason) = reason {
                        return Err(IpamError::AddressUnavailable {
                            addr: ip,
                            range_set: i,
                            reason,
                        });
                    }
                    (ip, r)
                }
                None => self.next_free(i).ok_or_else(|| IpamError::Exhausted {
                    range_set: i,
                    ranges: set.to_string(),
                })?,
            };
            let range = &set.ranges[r];
            let address = IpNetwork::new(ip, range.subnet.prefix()).map_err(|e| {
                IpamError::config(format!("ranges[{i}]"), format!("address {ip}: {e}"))
            })?;
            addresses.push(LeasedAddress {
                range_set: i,
                address,
                gateway: range.gateway,
            });
        }
        let last = addresses.iter().map(|a| Some(a.address.ip())).collect();
        let lease = Lease {
            owner: owner.clone(),
            addresses,
        };
        Ok((lease.clone(), Event::Allocate { lease, last }))
    }

    /// Round-robin: the first free address after the last reserved one of set `i`, wrapping
    /// through the set's ranges in order (host-local's RangeIter, without visiting used ones).
    fn next_free(&self, i: usize) -> Option<(IpAddr, usize)> {
        let set = &self.sets[i];
        let n = set.ranges.len();
        let v4 = set.is_ipv4();
        let bounds = |r: usize| {
            (
                to_u128(set.ranges[r].range_start),
                to_u128(set.ranges[r].range_end),
            )
        };
        // Cursor (range, value): search starts at value, inclusive.
        let (r0, c0) = match self
            .last
            .get(i)
            .copied()
            .flatten()
            .and_then(|ip| set.range_for(ip).map(|(r, _)| (r, to_u128(ip))))
        {
            Some((r, v)) if v < bounds(r).1 => (r, v + 1),
            Some((r, _)) => {
                let nr = (r + 1) % n;
                (nr, bounds(nr).0)
            }
            None => (0, bounds(0).0),
        };
        for k in 0..=n {
            let r = (r0 + k) % n;
            let (start, end) = bounds(r);
            let (lo, hi) = match k {
                0 => (c0, end),
                k if k == n => {
                    if c0 == start {
                        break;
                    }
                    (start, c0 - 1)
                }
                _ => (start, end),
            };
            if let Some(v) = self.used[i][r].next_free(lo, hi) {
                return Some((from_u128(v, v4), r));
            }
        }
        None
    }

    /// Events that release every lease whose owner is not in `live`.
    pub(crate) fn plan_gc(&self, live: &[Owner]) -> Vec<Event> {
        let live: HashSet<&Owner> = live.iter().collect();
        self.leases
            .keys()
            .filter(|o| !live.contains(o))
            .map(|o| Event::Release { owner: o.clone() })
            .collect()
    }

    /// Apply an event. Events come from `plan_*` or from a journal; a journal event that
    /// contradicts the state (an address held twice) is reported as an error string and the
    /// state is left unchanged.
    pub(crate) fn apply(&mut self, event: &Event) -> std::result::Result<Option<Lease>, String> {
        match event {
            Event::Allocate { lease, last } => {
                self.insert_lease(lease.clone())?;
                for (i, l) in last.iter().enumerate() {
                    if let (Some(slot), Some(ip)) = (self.last.get_mut(i), l) {
                        *slot = Some(*ip);
                    }
                }
                Ok(Some(lease.clone()))
            }
            Event::Release { owner } => Ok(self.remove_lease(owner)),
        }
    }

    /// Add a lease, marking its addresses used. Fails (changing nothing) when the owner already
    /// holds one or an address is held by someone else.
    pub(crate) fn insert_lease(&mut self, lease: Lease) -> std::result::Result<(), String> {
        if self.leases.contains_key(&lease.owner) {
            return Err(format!("{} holds two leases", lease.owner));
        }
        let mut seen = HashSet::new();
        for a in &lease.addresses {
            let ip = canonical(a.address.ip());
            if let Some(o) = self.holders.get(&ip) {
                return Err(format!("{ip} held by both {o} and {}", lease.owner));
            }
            if !seen.insert(ip) {
                return Err(format!(
                    "{ip} appears twice in the lease of {}",
                    lease.owner
                ));
            }
        }
        for ip in seen {
            self.holders.insert(ip, lease.owner.clone());
            if let Some((s, r)) = self.locate(ip) {
                // A reserved address (config changed under a lease) is already marked.
                self.used[s][r].insert(to_u128(ip));
            }
        }
        self.leases.insert(lease.owner.clone(), lease);
        Ok(())
    }

    fn remove_lease(&mut self, owner: &Owner) -> Option<Lease> {
        let lease = self.leases.remove(owner)?;
        for a in &lease.addresses {
            let ip = canonical(a.address.ip());
            self.holders.remove(&ip);
            if let Some((s, r)) = self.locate(ip) {
                if self.sets[s].ranges[r].reserved_reason(ip).is_none() {
                    self.used[s][r].remove(to_u128(ip));
                }
            }
        }
        Some(lease)
    }

    /// The state as a snapshot.
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            leases: self.leases.values().cloned().collect(),
            last: self.last.clone(),
        }
    }

    /// Load a snapshot into an empty pool.
    pub(crate) fn load_snapshot(&mut self, snap: Snapshot) -> std::result::Result<(), String> {
        for l in snap.leases {
            self.insert_lease(l)?;
        }
        for (i, l) in snap.last.into_iter().enumerate() {
            if let Some(slot) = self.last.get_mut(i) {
                *slot = l;
            }
        }
        Ok(())
    }
}
