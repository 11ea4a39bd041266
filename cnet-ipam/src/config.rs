//! The `ipam` section of a CNI network config, as host-local reads it: range sets, legacy
//! single-range keys, routes, dataDir, resolvConf; canonicalised and validated.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::addr::{canonical, from_u128, to_u128};
use crate::error::{IpamError, Result};

/// Where host-local keeps its state when `dataDir` is not given.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// One range of a range set, canonicalised: every field is filled and consistent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Range {
    /// The subnet (network address, no host bits).
    pub subnet: IpNetwork,
    /// First address of the range, inclusive (default: network + 1).
    pub range_start: IpAddr,
    /// Last address of the range, inclusive (default: broadcast - 1 for IPv4, last for IPv6).
    pub range_end: IpAddr,
    /// Gateway (default: network + 1); never handed out.
    pub gateway: IpAddr,
}

impl Range {
    /// Build and validate a range as host-local's `Range.Canonicalize` does, plus: the
    /// gateway must be in the subnet and rangeStart must not be after rangeEnd.
    pub fn new(
        subnet: IpNetwork,
        range_start: Option<IpAddr>,
        range_end: Option<IpAddr>,
        gateway: Option<IpAddr>,
    ) -> Result<Self> {
        Self::build(subnet, range_start, range_end, gateway, "")
    }

    fn build(
        subnet: IpNetwork,
        range_start: Option<IpAddr>,
        range_end: Option<IpAddr>,
        gateway: Option<IpAddr>,
        at: &str,
    ) -> Result<Self> {
        let f = |k: &str| {
            if at.is_empty() {
                k.to_string()
            } else {
                format!("{at}.{k}")
            }
        };
        let max = if subnet.is_ipv4() { 32 } else { 128 };
        if subnet.prefix() > max - 2 {
            return Err(IpamError::config(
                f("subnet"),
                format!("network {subnet} too small to allocate from"),
            ));
        }
        if subnet.ip() != subnet.network() {
            return Err(IpamError::config(
                f("subnet"),
                format!(
                    "network has host bits set: for a prefix of length {} the network address is {}",
                    subnet.prefix(),
                    subnet.network()
                ),
            ));
        }
        let v4 = subnet.is_ipv4();
        let net = to_u128(subnet.network());
        let last = to_u128(last_address(subnet));
        let check = |key: &str, ip: IpAddr| -> Result<IpAddr> {
            let ip = canonical(ip);
            if ip.is_ipv4() != v4 || !subnet.contains(ip) {
                return Err(IpamError::config(
                    f(key),
                    format!("{ip} not in network {subnet}"),
                ));
            }
            Ok(ip)
        };
        let gateway = match gateway {
            Some(g) => check("gateway", g)?,
            None => from_u128(net + 1, v4),
        };
        let range_start = match range_start {
            Some(s) => check("rangeStart", s)?,
            None => from_u128(net + 1, v4),
        };
        let range_end = match range_end {
            Some(e) => check("rangeEnd", e)?,
            None => from_u128(if v4 { last - 1 } else { last }, v4),
        };
        if to_u128(range_start) > to_u128(range_end) {
            return Err(IpamError::config(
                f("rangeStart"),
                format!("rangeStart {range_start} is after rangeEnd {range_end}"),
            ));
        }
        Ok(Range {
            subnet,
            range_start,
            range_end,
            gateway,
        })
    }

    /// True when `ip` is of this range's family and between rangeStart and rangeEnd.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.subnet.is_ipv4()
            && (to_u128(self.range_start)..=to_u128(self.range_end)).contains(&to_u128(ip))
    }

    /// True when `ip` is in the range and may be handed out: not the gateway, not the
    /// network address, not the IPv4 broadcast address.
    pub fn is_allocatable(&self, ip: IpAddr) -> bool {
        self.contains(ip) && self.reserved_reason(canonical(ip)).is_none()
    }

    /// Why `ip` is never handed out, if it is one of the reserved addresses.
    pub(crate) fn reserved_reason(&self, ip: IpAddr) -> Option<&'static str> {
        if ip == self.gateway {
            Some("it is the gateway")
        } else if ip == self.subnet.network() {
            Some("it is the network address")
        } else if self.subnet.is_ipv4() && ip == self.subnet.broadcast() {
            Some("it is the broadcast address")
        } else {
            None
        }
    }

    /// The reserved addresses (gateway, network, broadcast) that fall inside the range.
    pub(crate) fn reserved_in_range(&self) -> Vec<IpAddr> {
        let mut v = vec![self.gateway, self.subnet.network()];
        if self.subnet.is_ipv4() {
            v.push(self.subnet.broadcast());
        }
        v.sort();
        v.dedup();
        v.retain(|ip| self.contains(*ip));
        v
    }

    /// True when the two ranges share an address.
    pub fn overlaps(&self, other: &Range) -> bool {
        self.subnet.is_ipv4() == other.subnet.is_ipv4()
            && to_u128(self.range_start) <= to_u128(other.range_end)
            && to_u128(other.range_start) <= to_u128(self.range_end)
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.range_start, self.range_end)
    }
}

fn last_address(subnet: IpNetwork) -> IpAddr {
    match subnet {
        IpNetwork::V4(n) => IpAddr::V4(n.broadcast()),
        IpNetwork::V6(n) => {
            let host_bits = 128 - u32::from(n.prefix());
            let mask = if host_bits == 128 {
                u128::MAX
            } else {
                (1u128 << host_bits) - 1
            };
            IpAddr::V6((u128::from(n.network()) | mask).into())
        }
    }
}

/// A pool of ranges of one family; each attachment gets one address from each range set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RangeSet {
    /// The ranges, in the order they are tried.
    pub ranges: Vec<Range>,
}

impl RangeSet {
    /// Validate a set: non-empty, one family, no two ranges overlapping.
    pub fn new(ranges: Vec<Range>) -> Result<Self> {
        Self::validate(ranges, "")
    }

    fn validate(ranges: Vec<Range>, at: &str) -> Result<Self> {
        let Some(first) = ranges.first() else {
            return Err(IpamError::config(at, "empty range set"));
        };
        let v4 = first.subnet.is_ipv4();
        if ranges.iter().any(|r| r.subnet.is_ipv4() != v4) {
            return Err(IpamError::config(at, "mixed address families"));
        }
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                if a.overlaps(b) {
                    return Err(IpamError::config(
                        at,
                        format!("subnets {a} and {b} overlap"),
                    ));
                }
            }
        }
        Ok(RangeSet { ranges })
    }

    /// True for an IPv4 set.
    pub fn is_ipv4(&self) -> bool {
        self.ranges.first().is_some_and(|r| r.subnet.is_ipv4())
    }

    /// The range containing `ip`, with its index.
    pub fn range_for(&self, ip: IpAddr) -> Option<(usize, &Range)> {
        self.ranges.iter().enumerate().find(|(_, r)| r.contains(ip))
    }

    /// True when some range of the set contains `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    /// True when some range of this set overlaps some range of `other`.
    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.ranges
            .iter()
            .any(|a| other.ranges.iter().any(|b| a.overlaps(b)))
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// A route handed to the container (`{"dst": ..., "gw": ..., "mtu": ..., "advmss": ...}`),
/// passed through unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Route {
    /// Destination.
    pub dst: IpNetwork,
    /// Next hop; absent means "the interface's gateway".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// Path MTU for the route (CNI 1.1 `mtu`), if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Advertised MSS for the route (CNI 1.1 `advmss`), if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
}

/// The validated `ipam` configuration of one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamConfig {
    /// The network's `name`: the store lives in `dataDir/<network>`.
    pub network: String,
    /// `ipam.type`.
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// Range sets: legacy single range first, then `ranges` (and runtime `ipRanges` before all).
    pub ranges: Vec<RangeSet>,
    /// `ipam.routes`.
    pub routes: Vec<Route>,
    /// `ipam.dataDir`, if given.
    pub data_dir: Option<PathBuf>,
    /// `ipam.resolvConf`, if given.
    pub resolv_conf: Option<PathBuf>,
}

impl IpamConfig {
    /// Parse the `ipam` object of a network called `network`.
    pub fn from_ipam(network: &str, ipam: &Value) -> Result<Self> {
        Self::parse(network, ipam, &[])
    }

    /// Parse a whole CNI network configuration (`name`, `cniVersion`, `ipam`,
    /// `runtimeConfig.ipRanges`), as host-local's `LoadIPAMConfig` does: runtime `ipRanges`
    /// are placed before the configured ranges; more than one range set per family needs
    /// cniVersion >= 0.3.0.
    pub fn from_net_conf(netconf: &Value) -> Result<Self> {
        let obj = netconf
            .as_object()
            .ok_or_else(|| IpamError::config("", "network config must be a JSON object"))?;
        let name = opt_str(obj, "name", "name")?.unwrap_or_default();
        let ipam = obj
            .get("ipam")
            .ok_or_else(|| IpamError::config("ipam", "IPAM config missing 'ipam' key"))?;
        let mut runtime_sets = Vec::new();
        if let Some(rc) = obj.get("runtimeConfig").filter(|v| !v.is_null()) {
            let rc = rc
                .as_object()
                .ok_or_else(|| IpamError::config("runtimeConfig", "must be an object"))?;
            if let Some(r) = rc.get("ipRanges").filter(|v| !v.is_null()) {
                runtime_sets = parse_range_sets(r, "runtimeConfig.ipRanges")?;
            }
        }
        let cfg = Self::parse(&name, ipam, &runtime_sets)?;
        if let Some(v) = opt_str(obj, "cniVersion", "cniVersion")? {
            let v4 = cfg.ranges.iter().filter(|s| s.is_ipv4()).count();
            let v6 = cfg.ranges.len() - v4;
            if (v4 > 1 || v6 > 1) && version_below_0_3(&v) {
                return Err(IpamError::config(
                    "cniVersion",
                    format!("CNI version {v} does not support more than 1 address per family"),
                ));
            }
        }
        Ok(cfg)
    }

    /// As [`IpamConfig::from_net_conf`], from the raw bytes of the network configuration
    /// (CNI stdin); malformed JSON is [`IpamError::Decode`] (CNI code 6).
    pub fn from_net_conf_bytes(bytes: &[u8]) -> Result<Self> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| IpamError::Decode {
            reason: e.to_string(),
        })?;
        Self::from_net_conf(&v)
    }

    fn parse(network: &str, ipam: &Value, runtime_sets: &[RangeSet]) -> Result<Self> {
        let obj = ipam
            .as_object()
            .ok_or_else(|| IpamError::config("ipam", "must be a JSON object"))?;
        if network.is_empty()
            || network == "."
            || network == ".."
            || network.contains('/')
            || network.contains('\0')
        {
            return Err(IpamError::config(
                "name",
                format!("network name {network:?} cannot name a directory"),
            ));
        }
        let plugin_type = opt_str(obj, "type", "ipam.type")?.unwrap_or_default();
        let mut ranges: Vec<RangeSet> = runtime_sets.to_vec();
        if obj.get("subnet").is_some_and(|v| !v.is_null()) {
            let r = parse_range(ipam, "ipam")?;
            ranges.push(RangeSet::validate(vec![r], "ipam")?);
        }
        if let Some(r) = obj.get("ranges").filter(|v| !v.is_null()) {
            ranges.extend(parse_range_sets(r, "ipam.ranges")?);
        }
        if ranges.is_empty() {
            return Err(IpamError::config("ipam.ranges", "no IP ranges specified"));
        }
        for i in 0..ranges.len() {
            for j in i + 1..ranges.len() {
                if ranges[i].overlaps(&ranges[j]) {
                    return Err(IpamError::config(
                        "ipam.ranges",
                        format!("range set {i} overlaps with {j}"),
                    ));
                }
            }
        }
        let mut routes = Vec::new();
        if let Some(rs) = obj.get("routes").filter(|v| !v.is_null()) {
            let arr = rs
                .as_array()
                .ok_or_else(|| IpamError::config("ipam.routes", "must be an array"))?;
            for (i, r) in arr.iter().enumerate() {
                routes.push(parse_route(r, &format!("ipam.routes[{i}]"))?);
            }
        }
        let data_dir = opt_str(obj, "dataDir", "ipam.dataDir")?
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        let resolv_conf = opt_str(obj, "resolvConf", "ipam.resolvConf")?
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        Ok(IpamConfig {
            network: network.to_string(),
            plugin_type,
            ranges,
            routes,
            data_dir,
            resolv_conf,
        })
    }

    /// `dataDir`, or host-local's default `/var/lib/cni/networks`.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
    }

    /// The directory holding this network's lease store: `dataDir/<network>`.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir().join(&self.network)
    }
}

fn version_below_0_3(v: &str) -> bool {
    let mut parts = v.split('.').map(|p| p.parse::<u64>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => major == 0 && minor < 3,
        _ => false,
    }
}

fn opt_str(obj: &Map<String, Value>, key: &str, field: &str) -> Result<Option<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(IpamError::config(
            field,
            format!("expected a string, found {other}"),
        )),
    }
}

/// Parse an address (`10.1.2.3`, or with a prefix `10.1.2.3/24`, whose prefix is ignored).
pub(crate) fn parse_ip(s: &str, field: &str) -> Result<IpAddr> {
    let bare = s.split_once('/').map_or(s, |(ip, _)| ip);
    if let Some((_, p)) = s.split_once('/') {
        if p.parse::<u8>().is_err() {
            return Err(IpamError::config(
                field,
                format!("invalid IP address {s:?}"),
            ));
        }
    }
    bare.trim()
        .parse::<IpAddr>()
        .map(canonical)
        .map_err(|e| IpamError::config(field, format!("invalid IP address {s:?}: {e}")))
}

fn parse_cidr(s: &str, field: &str) -> Result<IpNetwork> {
    let (ip, prefix) = s
        .split_once('/')
        .ok_or_else(|| IpamError::config(field, format!("invalid CIDR {s:?}: missing prefix")))?;
    let ip = ip
        .parse::<IpAddr>()
        .map_err(|e| IpamError::config(field, format!("invalid CIDR {s:?}: {e}")))?;
    let prefix = prefix
        .parse::<u8>()
        .map_err(|e| IpamError::config(field, format!("invalid CIDR {s:?}: prefix: {e}")))?;
    // An IPv4-mapped IPv6 subnet is its IPv4 subnet (as Go's net.ParseCIDR reads it).
    let (ip, prefix) = match (ip, canonical(ip)) {
        (IpAddr::V6(_), v4 @ IpAddr::V4(_)) if prefix >= 96 => (v4, prefix - 96),
        _ => (ip, prefix),
    };
    IpNetwork::new(ip, prefix)
        .map_err(|e| IpamError::config(field, format!("invalid CIDR {s:?}: {e}")))
}

fn ip_field(obj: &Map<String, Value>, key: &str, at: &str) -> Result<Option<IpAddr>> {
    let field = format!("{at}.{key}");
    match opt_str(obj, key, &field)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => parse_ip(&s, &field).map(Some),
    }
}

fn parse_range(v: &Value, at: &str) -> Result<Range> {
    let obj = v
        .as_object()
        .ok_or_else(|| IpamError::config(at, "a range must be a JSON object"))?;
    let subnet_field = format!("{at}.subnet");
    let subnet = match opt_str(obj, "subnet", &subnet_field)? {
        Some(s) if !s.is_empty() => parse_cidr(&s, &subnet_field)?,
        _ => return Err(IpamError::config(subnet_field, "missing")),
    };
    Range::build(
        subnet,
        ip_field(obj, "rangeStart", at)?,
        ip_field(obj, "rangeEnd", at)?,
        ip_field(obj, "gateway", at)?,
        at,
    )
}

fn parse_range_sets(v: &Value, at: &str) -> Result<Vec<RangeSet>> {
    let sets = v
        .as_array()
        .ok_or_else(|| IpamError::config(at, "must be an array of range sets"))?;
    let mut out = Vec::with_capacity(sets.len());
    for (i, set) in sets.iter().enumerate() {
        let set_at = format!("{at}[{i}]");
        let arr = set
            .as_array()
            .ok_or_else(|| IpamError::config(&set_at, "a range set must be an array of ranges"))?;
        let mut ranges = Vec::with_capacity(arr.len());
        for (j, r) in arr.iter().enumerate() {
            ranges.push(parse_range(r, &format!("{set_at}[{j}]"))?);
        }
        out.push(RangeSet::validate(ranges, &set_at)?);
    }
    Ok(out)
}

fn parse_route(v: &Value, at: &str) -> Result<Route> {
    let obj = v
        .as_object()
        .ok_or_else(|| IpamError::config(at, "a route must be a JSON object"))?;
    let dst_field = format!("{at}.dst");
    let dst = match opt_str(obj, "dst", &dst_field)? {
        Some(s) => parse_cidr(&s, &dst_field)?,
        None => return Err(IpamError::config(dst_field, "missing")),
    };
    let gw = ip_field(obj, "gw", at)?;
    if let Some(g) = gw {
        if g.is_ipv4() != dst.is_ipv4() {
            return Err(IpamError::config(
                format!("{at}.gw"),
                format!("gateway {g} is not of the family of {dst}"),
            ));
        }
    }
    let metric = |key: &str| -> Result<Option<u32>> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) if n > 0 => Ok(Some(n)),
                _ => Err(IpamError::config(
                    format!("{at}.{key}"),
                    format!("must be a positive integer, got {v}"),
                )),
            },
        }
    };
    let (mtu, advmss) = (metric("mtu")?, metric("advmss")?);
    Ok(Route {
        dst,
        gw,
        mtu,
        advmss,
    })
}
