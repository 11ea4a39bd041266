//! Address arithmetic on `u128` keys (IPv4 addresses are their `u32` value), shared by the
//! range and allocation code.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The numeric value of an address (IPv4 as its 32-bit value).
pub(crate) fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address of numeric value `v` in the family given by `v4`.
pub(crate) fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        // Values of IPv4 ranges never exceed u32::MAX; saturate rather than panic.
        IpAddr::V4(Ipv4Addr::from(u32::try_from(v).unwrap_or(u32::MAX)))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

/// An IPv4-mapped IPv6 address becomes the IPv4 address (host-local's canonicalizeIP).
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}
