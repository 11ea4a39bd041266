//! Which specific addresses a CNI invocation asks for, with host-local's precedence.

use std::net::IpAddr;

use serde_json::Value;

use crate::config::parse_ip;
use crate::error::{IpamError, Result};

/// The addresses a CNI call asks for, in host-local's order: `CNI_ARGS` `IP=` first, then the
/// network config's `args.cni.ips`, then `runtimeConfig.ips`. All three sources are used (not
/// just the first present); duplicates are dropped, keeping the first. Addresses may carry a
/// prefix (`10.1.2.3/24`), which is ignored.
///
/// `IP=` may hold one address (as host-local) or a comma-separated list (as the `static`
/// plugin). Other `CNI_ARGS` keys (`K8S_POD_NAME`, `IgnoreUnknown`, ...) are ignored.
///
/// The rule that every requested address must be used by some range set is enforced when
/// allocating ([`crate::IpamError::RequestedNotUsed`]).
pub fn requested_addresses(cni_args: Option<&str>, netconf: &Value) -> Result<Vec<IpAddr>> {
    let mut out: Vec<IpAddr> = Vec::new();
    let mut push = |ip: IpAddr| {
        if !out.contains(&ip) {
            out.push(ip);
        }
    };
    for (key, value) in parse_cni_args(cni_args.unwrap_or(""))? {
        if key == "IP" {
            for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let ip = parse_ip(part, "IP").map_err(|_| IpamError::InvalidArgs {
                    var: "IP".into(),
                    reason: format!("invalid IP address {part:?}"),
                })?;
                push(ip);
            }
        }
    }
    for (path, list) in [
        ("args.cni.ips", netconf.pointer("/args/cni/ips")),
        ("runtimeConfig.ips", netconf.pointer("/runtimeConfig/ips")),
    ] {
        let Some(list) = list.filter(|v| !v.is_null()) else {
            continue;
        };
        let arr = list
            .as_array()
            .ok_or_else(|| IpamError::config(path, "must be an array of addresses"))?;
        for (i, v) in arr.iter().enumerate() {
            let field = format!("{path}[{i}]");
            let s = v.as_str().ok_or_else(|| {
                IpamError::config(&field, format!("expected a string, found {v}"))
            })?;
            push(parse_ip(s, &field)?);
        }
    }
    Ok(out)
}

/// Split `CNI_ARGS` (`K1=V1;K2=V2`) into pairs. An empty string is no pairs; a part without
/// `=` is an [`IpamError::InvalidArgs`].
pub fn parse_cni_args(cni_args: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for part in cni_args.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| IpamError::InvalidArgs {
            var: part.to_string(),
            reason: "expected KEY=VALUE".into(),
        })?;
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}
