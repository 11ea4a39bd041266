//! The `cnet-ipam` plugin: a drop-in replacement for the reference `host-local` IPAM plugin
//! (same config keys, same results), plus GC and STATUS, on top of `cnet_ipam`.
//!
//! Error codes: those of [`cnet_ipam::IpamError::cni_code`] (7 invalid config, 4 bad
//! `CNI_ARGS`, 50 exhausted pool, 100 requested address unavailable, 101 duplicate allocation,
//! 11 store locked, 5 I/O, 6 corrupt state), plus [`CODE_LEASE_MISSING`] for a failed CHECK
//! and 5 for an unreadable `resolvConf`.

use crate::config::Dns;
use crate::env::Env;
use crate::error::{CniError, ErrorCode};
use crate::plugin::{Plugin, Request};
use crate::result::{CniResult, IpConfig, Route};
use cnet_ipam::{AllocationRequest, Allocator, IpamConfig, IpamError, Owner};
use serde_json::Value;
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

/// Plugin-specific code (100+): CHECK found no lease, or a lease without an address that
/// `prevResult` lists, for the attachment.
pub const CODE_LEASE_MISSING: u32 = 102;

/// Opens the allocator for a validated config (the disk store in the binary).
pub type OpenAllocator =
    Box<dyn FnMut(&IpamConfig) -> Result<Box<dyn Allocator>, IpamError> + Send>;

/// The IPAM plugin. [`IpamPlugin::on_disk`] is what the `cnet-ipam` binary runs.
pub struct IpamPlugin {
    open: OpenAllocator,
}

impl std::fmt::Debug for IpamPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpamPlugin").finish_non_exhaustive()
    }
}

/// Convert a library error to the CNI error with its code: `msg` is the short category,
/// `details` the full message naming the input.
pub fn ipam_error(e: &IpamError) -> CniError {
    CniError::new(ErrorCode::from_u32(e.cni_code()), e.cni_msg()).with_details(e.to_string())
}

/// Parse resolv.conf text as host-local does: `nameserver` (one each), `domain` (last wins),
/// `search` and `options` (all fields, accumulated); comments (`#`, `;`) and short lines skipped.
pub fn parse_resolv_conf(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 2 {
            continue;
        }
        let rest = fields[1..].iter().map(|s| s.to_string());
        match fields[0] {
            "nameserver" => dns.nameservers.push(fields[1].to_string()),
            "domain" => dns.domain = fields[1].to_string(),
            "search" => dns.search.extend(rest),
            "options" => dns.options.extend(rest),
            _ => {}
        }
    }
    dns
}

fn read_resolv_conf(path: &Path) -> Result<Dns, CniError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CniError::io(format!("resolvConf {}: {e}", path.display())))?;
    Ok(parse_resolv_conf(&text))
}

fn cni_args_string(env: &Env) -> String {
    env.args
        .pairs()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

impl IpamPlugin {
    /// A plugin over allocators that `open` returns.
    pub fn new(open: OpenAllocator) -> IpamPlugin {
        IpamPlugin { open }
    }

    /// The plugin over the crash-safe disk store in `dataDir/<network name>`.
    pub fn on_disk() -> IpamPlugin {
        IpamPlugin::new(Box::new(|cfg: &IpamConfig| {
            let a = cnet_ipam::DiskAllocator::open(cfg)?;
            Ok(Box::new(a) as Box<dyn Allocator>)
        }))
    }

    fn config(req: &Request) -> Result<(Value, IpamConfig), CniError> {
        let raw: Value = serde_json::from_slice(&req.stdin)
            .map_err(|e| CniError::decode(format!("error decoding network config: {e}")))?;
        let cfg = IpamConfig::from_net_conf(&raw).map_err(|e| ipam_error(&e))?;
        Ok((raw, cfg))
    }

    fn allocator(&mut self, cfg: &IpamConfig) -> Result<Box<dyn Allocator>, CniError> {
        (self.open)(cfg).map_err(|e| ipam_error(&e))
    }

    fn owner(req: &Request) -> Owner {
        Owner::new(&req.env.container_id, req.env.ifname.clone())
    }
}

/// ADD's inputs: the config, the allocation request (owner and requested addresses) and the
/// DNS settings.
fn add_request(req: &Request) -> Result<(IpamConfig, AllocationRequest, Dns), CniError> {
    req.env.args.check_known(&["IP"])?;
    let (raw, cfg) = IpamPlugin::config(req)?;
    let requested = cnet_ipam::requested_addresses(Some(&cni_args_string(&req.env)), &raw)
        .map_err(|e| ipam_error(&e))?;
    let dns = match &cfg.resolv_conf {
        Some(p) => read_resolv_conf(p)?,
        None => Dns::default(),
    };
    let request = AllocationRequest::with_requested(IpamPlugin::owner(req), requested);
    Ok((cfg, request, dns))
}

/// ADD's (abbreviated) result for a lease.
fn add_result(cfg: &IpamConfig, lease: &cnet_ipam::Lease, dns: Dns) -> CniResult {
    CniResult {
        interfaces: Vec::new(),
        ips: lease
            .addresses
            .iter()
            .map(|a| IpConfig {
                interface: None,
                address: a.address,
                gateway: Some(a.gateway),
            })
            .collect(),
        routes: cfg
            .routes
            .iter()
            .map(|r| Route {
                mtu: r.mtu,
                advmss: r.advmss,
                ..Route::new(r.dst, r.gw)
            })
            .collect(),
        dns,
    }
}

/// ADD on the disk store (as [`IpamPlugin::on_disk`]) with the lease's flush left to the
/// caller: the lease is allocated and written, and the returned [`cnet_ipam::PendingSync`]
/// makes it durable. The caller must not report success before `wait()` returned `Ok`, and
/// releases the lease (DEL) when it fails (see [`cnet_ipam::DiskAllocator::allocate_deferred`]).
pub fn add_on_disk_deferred(
    req: &Request,
) -> Result<(CniResult, cnet_ipam::PendingSync), CniError> {
    let (cfg, request, dns) = add_request(req)?;
    let mut alloc = cnet_ipam::DiskAllocator::open(&cfg).map_err(|e| ipam_error(&e))?;
    let (lease, sync) = alloc
        .allocate_deferred(&request)
        .map_err(|e| ipam_error(&e))?;
    Ok((add_result(&cfg, &lease, dns), sync))
}

/// DEL on the disk store (as [`IpamPlugin::on_disk`]) with the release's flush left to the
/// caller ([`cnet_ipam::DiskAllocator::release_deferred`]): report success only once the
/// returned sync's `wait()` returned `Ok`.
pub fn del_on_disk_deferred(req: &Request) -> Result<cnet_ipam::PendingSync, CniError> {
    req.env.args.check_known(&["IP"])?;
    let (_, cfg) = IpamPlugin::config(req)?;
    let mut alloc = cnet_ipam::DiskAllocator::open(&cfg).map_err(|e| ipam_error(&e))?;
    alloc
        .release_deferred(&IpamPlugin::owner(req))
        .map(|(_, sync)| sync)
        .map_err(|e| ipam_error(&e))
}

impl Plugin for IpamPlugin {
    fn add(&mut self, req: &Request) -> Result<CniResult, CniError> {
        let (cfg, request, dns) = add_request(req)?;
        let mut alloc = self.allocator(&cfg)?;
        let lease = alloc.allocate(&request).map_err(|e| ipam_error(&e))?;
        Ok(add_result(&cfg, &lease, dns))
    }

    fn del(&mut self, req: &Request) -> Result<(), CniError> {
        req.env.args.check_known(&["IP"])?;
        let (_, cfg) = Self::config(req)?;
        let mut alloc = self.allocator(&cfg)?;
        alloc
            .release(&Self::owner(req))
            .map(|_| ())
            .map_err(|e| ipam_error(&e))
    }

    fn check(&mut self, req: &Request) -> Result<(), CniError> {
        req.env.args.check_known(&["IP"])?;
        let (_, cfg) = Self::config(req)?;
        let mut alloc = self.allocator(&cfg)?;
        let owner = Self::owner(req);
        let lease = alloc
            .lease(&owner)
            .map_err(|e| ipam_error(&e))?
            .ok_or_else(|| {
                CniError::new(
                    ErrorCode::Other(CODE_LEASE_MISSING),
                    format!(
                        "cnet-ipam: failed to find address added by container {}",
                        owner.container_id
                    ),
                )
                .with_details(format!("no lease for {owner} in network {}", cfg.network))
            })?;
        // Every prevResult address that lies in one of our range sets must be in the lease.
        if let Some(prev) = &req.config.prev_result {
            let prev = CniResult::parse(prev, req.version)?;
            let held: HashSet<IpAddr> = lease.ips().into_iter().collect();
            for ip in prev.ips.iter().map(|i| i.address.ip()) {
                let ours = cfg.ranges.iter().any(|s| s.contains(ip));
                if ours && !held.contains(&ip) {
                    return Err(CniError::new(
                        ErrorCode::Other(CODE_LEASE_MISSING),
                        format!("cnet-ipam: address {ip} of prevResult is not leased to {owner}"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn gc(&mut self, req: &Request, valid: &[crate::config::GcAttachment]) -> Result<(), CniError> {
        let (_, cfg) = Self::config(req)?;
        let live: Vec<Owner> = valid
            .iter()
            .map(|a| Owner::new(&a.container_id, a.ifname.clone()))
            .collect();
        let mut alloc = self.allocator(&cfg)?;
        alloc.gc(&live).map(|_| ()).map_err(|e| ipam_error(&e))
    }

    fn status(&mut self, req: &Request) -> Result<(), CniError> {
        let (_, cfg) = Self::config(req)?;
        let mut alloc = self.allocator(&cfg)?;
        let status = alloc.status().map_err(|e| ipam_error(&e))?;
        if status.exhausted() {
            let full: Vec<String> = status
                .range_sets
                .iter()
                .filter(|r| r.free == 0)
                .map(|r| format!("range set {} ({})", r.range_set, cfg.ranges[r.range_set]))
                .collect();
            return Err(CniError::new(
                ErrorCode::NotAvailable,
                "address pool exhausted: ADD cannot be serviced",
            )
            .with_details(format!("no free address in {}", full.join(", "))));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::plugin::run_with;
    use cnet_ipam::MemoryAllocator;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    #[test]
    fn resolv_conf_like_host_local() {
        let d = parse_resolv_conf(
            "# comment\n; other\nnameserver 10.1.2.123\nnameserver 8.8.8.8 extra\ndomain a.example\ndomain b.example\nsearch x.example y.example\noptions ndots:5 timeout:2\noptions rotate\nbogus\n",
        );
        assert_eq!(d.nameservers, vec!["10.1.2.123", "8.8.8.8"]);
        assert_eq!(d.domain, "b.example");
        assert_eq!(d.search, vec!["x.example", "y.example"]);
        assert_eq!(d.options, vec!["ndots:5", "timeout:2", "rotate"]);
    }

    /// A plugin whose allocator is one shared in-memory pool (opened per call like the disk one).
    fn memory_plugin() -> IpamPlugin {
        let shared: Arc<Mutex<Option<MemoryAllocator>>> = Arc::new(Mutex::new(None));
        IpamPlugin::new(Box::new(move |cfg: &IpamConfig| {
            let mut g = shared.lock().unwrap();
            if g.is_none() {
                *g = Some(MemoryAllocator::new(cfg.ranges.clone()));
            }
            Ok(Box::new(Shared(shared.clone())) as Box<dyn Allocator>)
        }))
    }

    struct Shared(Arc<Mutex<Option<MemoryAllocator>>>);
    impl Shared {
        fn with<T>(&self, f: impl FnOnce(&mut MemoryAllocator) -> T) -> T {
            f(self.0.lock().unwrap().as_mut().unwrap())
        }
    }
    impl Allocator for Shared {
        fn allocate(&mut self, r: &AllocationRequest) -> cnet_ipam::Result<cnet_ipam::Lease> {
            self.with(|a| a.allocate(r))
        }
        fn release(&mut self, o: &Owner) -> cnet_ipam::Result<Option<cnet_ipam::Lease>> {
            self.with(|a| a.release(o))
        }
        fn leases(&mut self) -> cnet_ipam::Result<Vec<cnet_ipam::Lease>> {
            self.with(|a| a.leases())
        }
        fn gc(&mut self, live: &[Owner]) -> cnet_ipam::Result<Vec<cnet_ipam::Lease>> {
            self.with(|a| a.gc(live))
        }
        fn status(&mut self) -> cnet_ipam::Result<cnet_ipam::PoolStatus> {
            self.with(|a| a.status())
        }
    }

    fn call(p: &mut IpamPlugin, cmd: &str, id: &str, conf: &str) -> (i32, Value) {
        let mut m: HashMap<&str, String> = HashMap::new();
        m.insert("CNI_COMMAND", cmd.into());
        m.insert("CNI_CONTAINERID", id.into());
        m.insert("CNI_NETNS", "/var/run/netns/x".into());
        m.insert("CNI_IFNAME", "eth0".into());
        m.insert("CNI_PATH", "/usr/lib/cni".into());
        let o = run_with(p, |k| m.get(k).cloned(), conf.as_bytes().to_vec());
        let v = if o.stdout.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&o.stdout).unwrap()
        };
        (o.exit_code, v)
    }

    const CONF: &str = r#"{"cniVersion":"1.1.0","name":"n","ipam":{"type":"cnet-ipam",
        "ranges":[[{"subnet":"10.1.2.0/30"}]],"routes":[{"dst":"0.0.0.0/0"}]}}"#;

    #[test]
    fn add_check_del_status_gc_over_memory() {
        let mut p = memory_plugin();
        let (rc, v) = call(&mut p, "ADD", "a", CONF);
        assert_eq!(rc, 0, "{v}");
        assert_eq!(v["ips"][0]["address"], "10.1.2.2/30");
        assert_eq!(v["ips"][0]["gateway"], "10.1.2.1");
        assert_eq!(v["routes"][0]["dst"], "0.0.0.0/0");
        assert_eq!(call(&mut p, "CHECK", "a", CONF).0, 0);
        let (rc, v) = call(&mut p, "CHECK", "b", CONF);
        assert_eq!((rc, v["code"].as_u64()), (1, Some(102)));
        // /30 with gateway .1: one usable address, now taken.
        let (rc, v) = call(&mut p, "STATUS", "", CONF);
        assert_eq!((rc, v["code"].as_u64()), (1, Some(50)));
        let (rc, v) = call(&mut p, "ADD", "b", CONF);
        assert_eq!((rc, v["code"].as_u64()), (1, Some(50)));
        let gc = r#"{"cniVersion":"1.1.0","name":"n","ipam":{"type":"cnet-ipam",
            "ranges":[[{"subnet":"10.1.2.0/30"}]]},"cni.dev/valid-attachments":[]}"#;
        assert_eq!(call(&mut p, "GC", "", gc).0, 0);
        assert_eq!(call(&mut p, "STATUS", "", CONF).0, 0);
        assert_eq!(call(&mut p, "DEL", "a", CONF).0, 0);
        assert_eq!(call(&mut p, "DEL", "a", CONF).0, 0);
    }
}
