//! What the caller asks for: an [`EndpointSpec`], plus the deterministic names and MAC
//! addresses derived from it (so DEL finds the host interface without state).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;

use crate::error::Error;

/// A pod endpoint to attach to the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// Container id (CNI_CONTAINERID); with `ifname` it identifies the attachment.
    pub container_id: String,
    /// Interface name inside the pod (CNI_IFNAME), e.g. `eth0`.
    pub ifname: String,
    /// Path of the pod's network namespace (CNI_NETNS), e.g. `/var/run/netns/pod1`.
    pub netns: PathBuf,
    /// Pod addresses with the prefix of their subnet (IPv4 and/or IPv6).
    pub addresses: Vec<IpNetwork>,
    /// Gateways (bridge mode: the bridge's address per family; default: the first host
    /// address of the pod's subnet). Ignored in transparent mode, whose gateways are the
    /// link-local [`V4_LINK_GATEWAY`](crate::V4_LINK_GATEWAY) and
    /// [`V6_LINK_GATEWAY`](crate::V6_LINK_GATEWAY).
    pub gateways: Vec<IpAddr>,
    /// MTU of both veth ends; `None` = the node uplink's MTU (fallback 1500).
    pub mtu: Option<u32>,
    /// MAC of the pod end (e.g. CNI `runtimeConfig.mac`); `None` = derived from the
    /// attachment ([`derived_mac`]). Must be unicast and not all zeros.
    pub mac: Option<MacAddr>,
    /// Routes to install in the pod besides the default route per family (e.g. an IPAM's
    /// routes). Transparent mode sends each through the family's link-local gateway (the
    /// node routes everything); bridge mode uses the route's gateway, which must be on the
    /// pod's subnet, or the family's gateway.
    pub routes: Vec<PodRoute>,
}

/// A route for the pod's routing table (see [`EndpointSpec::routes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodRoute {
    /// Destination prefix (not a default route; host bits are ignored).
    pub destination: IpNetwork,
    /// Next hop, when the route names one.
    pub gateway: Option<IpAddr>,
    /// Path MTU of the route (`RTAX_MTU`), when given.
    pub mtu: Option<u32>,
    /// Advertised MSS of the route (`RTAX_ADVMSS`), when given.
    pub advmss: Option<u32>,
}

impl EndpointSpec {
    /// A spec with no gateways and the default MTU.
    pub fn new(
        container_id: impl Into<String>,
        ifname: impl Into<String>,
        netns: impl Into<PathBuf>,
        addresses: Vec<IpNetwork>,
    ) -> EndpointSpec {
        EndpointSpec {
            container_id: container_id.into(),
            ifname: ifname.into(),
            netns: netns.into(),
            addresses,
            gateways: Vec::new(),
            mtu: None,
            mac: None,
            routes: Vec::new(),
        }
    }

    /// The host-side veth name derived from `(container_id, ifname)`.
    pub fn host_ifname(&self) -> String {
        host_ifname(&self.container_id, &self.ifname)
    }

    /// The owner tag stored as the host veth's alias: `cnet:<container_id>:<ifname>`. It lets
    /// detach refuse to delete a link it does not own and GC list attachments.
    pub fn owner_alias(&self) -> String {
        owner_alias(&self.container_id, &self.ifname)
    }

    /// Check what needs no kernel: ids, names, addresses, gateways, MTU.
    pub fn validate(&self) -> Result<(), Error> {
        if self.container_id.is_empty() {
            return Err(invalid("container_id", "must not be empty"));
        }
        validate_ifname(&self.ifname).map_err(|r| invalid("ifname", r))?;
        validate_owner(&self.container_id, &self.ifname)?;
        if self.netns.as_os_str().is_empty() {
            return Err(invalid("netns", "must not be empty"));
        }
        if self.addresses.is_empty() {
            return Err(invalid("addresses", "at least one address is required"));
        }
        for (i, a) in self.addresses.iter().enumerate() {
            let ip = a.ip();
            if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
                return Err(invalid(&format!("addresses[{i}]"), "not a unicast address"));
            }
            let link_local = match ip {
                IpAddr::V4(v4) => v4.is_link_local() || v4.is_broadcast(),
                IpAddr::V6(v6) => v6.is_unicast_link_local(),
            };
            if link_local {
                return Err(invalid(
                    &format!("addresses[{i}]"),
                    "link-local addresses are not pod addresses",
                ));
            }
            if self.addresses[..i].iter().any(|b| b.ip() == ip) {
                return Err(invalid(&format!("addresses[{i}]"), "duplicate address"));
            }
        }
        for (i, g) in self.gateways.iter().enumerate() {
            if self.gateways[..i]
                .iter()
                .any(|h| h.is_ipv4() == g.is_ipv4())
            {
                return Err(invalid(
                    &format!("gateways[{i}]"),
                    "at most one gateway per address family",
                ));
            }
        }
        if let Some(m) = self.mtu
            && !(68..=65535).contains(&m)
        {
            return Err(invalid("mtu", "must be within 68..=65535"));
        }
        if let Some(m) = self.mac
            && (m.0[0] & 0x01 != 0 || m.0 == [0; 6])
        {
            return Err(invalid("mac", &format!("{m} is not a unicast address")));
        }
        for (i, r) in self.routes.iter().enumerate() {
            let field = format!("routes[{i}]");
            let v4 = r.destination.is_ipv4();
            if r.destination.prefix() == 0 {
                return Err(invalid(
                    &field,
                    "default routes come from the gateways, not from routes",
                ));
            }
            if !self.addresses.iter().any(|a| a.is_ipv4() == v4) {
                return Err(invalid(
                    &field,
                    "the pod has no address of the route's family",
                ));
            }
            if r.gateway.is_some_and(|g| g.is_ipv4() != v4) {
                return Err(invalid(&field, "gateway of another address family"));
            }
        }
        Ok(())
    }
}

/// The alias prefix that marks host veths created by cnet-route.
pub const OWNER_PREFIX: &str = "cnet:";

/// `cnet:<container_id>:<ifname>`.
pub fn owner_alias(container_id: &str, ifname: &str) -> String {
    format!("{OWNER_PREFIX}{container_id}:{ifname}")
}

/// Parse an owner alias back into `(container_id, ifname)`.
pub fn parse_owner_alias(alias: &str) -> Option<(String, String)> {
    let rest = alias.strip_prefix(OWNER_PREFIX)?;
    let (cid, ifname) = rest.rsplit_once(':')?;
    if cid.is_empty() || validate_ifname(ifname).is_err() {
        return None;
    }
    Some((cid.to_string(), ifname.to_string()))
}

/// Container ids must fit the kernel's 255-byte interface alias and contain no control
/// characters (CNI allows `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; anything printable is accepted).
pub(crate) fn validate_owner(container_id: &str, ifname: &str) -> Result<(), Error> {
    if container_id.is_empty() {
        return Err(invalid("container_id", "must not be empty"));
    }
    if container_id.chars().any(char::is_control) {
        return Err(invalid(
            "container_id",
            "must not contain control characters",
        ));
    }
    if owner_alias(container_id, ifname).len() > 255 {
        return Err(invalid(
            "container_id",
            "too long (at most 244 bytes with the ifname)",
        ));
    }
    Ok(())
}

pub(crate) fn invalid(field: &str, reason: &str) -> Error {
    Error::InvalidSpec {
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

/// Linux interface name rules: 1–15 bytes, no `/`, no whitespace, not `.` or `..`.
pub fn validate_ifname(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 15 {
        return Err("interface names have 1 to 15 bytes");
    }
    if name == "." || name == ".." {
        return Err("`.` and `..` are not interface names");
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
    {
        return Err("interface names contain no '/', ':', whitespace or NUL");
    }
    Ok(())
}

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl std::str::FromStr for MacAddr {
    type Err = String;

    /// Six hexadecimal octets separated by `:` or `-` (`02:42:ac:11:00:02`).
    fn from_str(s: &str) -> Result<MacAddr, String> {
        let bad = || format!("MAC {s:?}: expected six hex octets like 02:42:ac:11:00:02");
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut out = [0u8; 6];
        for (o, p) in out.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(bad());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        Ok(MacAddr(out))
    }
}

/// 64-bit FNV-1a: fixed, documented, stable across runs and builds (unlike std's
/// randomised hasher), so names derived from it are the same in ADD and DEL.
pub fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            // A separator byte that cannot occur in names keeps ("ab","c") != ("a","bc").
            h ^= 0xff;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Host-side veth name: `cnet` + 8 hex digits of the FNV-1a hash of `(container_id, ifname)`.
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    let h = fnv1a64(&[container_id.as_bytes(), ifname.as_bytes()]);
    format!("cnet{:08x}", (h ^ (h >> 32)) as u32)
}

/// A locally administered unicast MAC derived from `(role, container_id, ifname)`.
pub fn derived_mac(role: &str, container_id: &str, ifname: &str) -> MacAddr {
    let h = fnv1a64(&[role.as_bytes(), container_id.as_bytes(), ifname.as_bytes()]).to_be_bytes();
    MacAddr([(h[0] & 0xfc) | 0x02, h[1], h[2], h[3], h[4], h[5]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> EndpointSpec {
        EndpointSpec::new(
            "abc",
            "eth0",
            "/var/run/netns/x",
            vec!["10.0.0.5/24".parse().expect("cidr")],
        )
    }

    #[test]
    fn host_name_is_stable_and_short() {
        let a = host_ifname("c1", "eth0");
        assert_eq!(a, host_ifname("c1", "eth0"));
        assert_eq!(a.len(), 12);
        assert!(a.starts_with("cnet"));
        assert_ne!(a, host_ifname("c1", "eth1"));
        assert_ne!(a, host_ifname("c2", "eth0"));
        assert_ne!(host_ifname("ab", "c"), host_ifname("a", "bc"));
        // Pinned value: a change here breaks DEL of pods attached by an older version.
        assert_eq!(host_ifname("", ""), host_ifname("", ""));
        assert_eq!(fnv1a64(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn macs_are_local_unicast_and_distinct_per_role() {
        let h = derived_mac("host", "c1", "eth0");
        let p = derived_mac("pod", "c1", "eth0");
        assert_ne!(h, p);
        for m in [h, p] {
            assert_eq!(m.0[0] & 0x01, 0, "unicast");
            assert_eq!(m.0[0] & 0x02, 0x02, "locally administered");
        }
        assert_eq!(
            MacAddr([2, 0, 0, 0xab, 0, 1]).to_string(),
            "02:00:00:ab:00:01"
        );
    }

    #[test]
    fn owner_alias_round_trips() {
        let a = owner_alias("abc-1.2_3", "eth0");
        assert_eq!(a, "cnet:abc-1.2_3:eth0");
        assert_eq!(
            parse_owner_alias(&a),
            Some(("abc-1.2_3".into(), "eth0".into()))
        );
        assert_eq!(
            parse_owner_alias("cnet:x:y:eth1"),
            Some(("x:y".into(), "eth1".into()))
        );
        assert_eq!(parse_owner_alias("other"), None);
        assert_eq!(parse_owner_alias("cnet::eth0"), None);
        let mut s = spec();
        s.container_id = "x".repeat(300);
        assert!(s.validate().is_err());
    }

    #[test]
    fn validation() {
        assert!(spec().validate().is_ok());
        let mut s = spec();
        s.ifname = "a-very-long-interface".into();
        assert!(matches!(s.validate(), Err(Error::InvalidSpec { field, .. }) if field == "ifname"));
        let mut s = spec();
        s.ifname = "a/b".into();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.container_id.clear();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.addresses.clear();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.addresses.push("10.0.0.5/24".parse().expect("cidr"));
        assert!(s.validate().is_err());
        let mut s = spec();
        s.gateways = vec![
            "10.0.0.1".parse().expect("ip"),
            "10.0.0.2".parse().expect("ip"),
        ];
        assert!(s.validate().is_err());
        let mut s = spec();
        s.mtu = Some(20);
        assert!(s.validate().is_err());
        for bad in [
            "224.0.0.1/32",
            "169.254.1.5/16",
            "fe80::5/64",
            "255.255.255.255/32",
        ] {
            let mut s = spec();
            s.addresses = vec![bad.parse().expect("cidr")];
            assert!(s.validate().is_err(), "{bad}");
        }
    }
}
