//! `cnet-ipam`: a drop-in replacement for the reference `host-local` IPAM plugin, with GC and
//! STATUS. Same config keys (`ranges`, `subnet`/`rangeStart`/`rangeEnd`/`gateway`, `routes`,
//! `dataDir` — default `/var/lib/cni/networks` — and `resolvConf`); leases live in a
//! crash-safe store under `dataDir/<network name>`.

fn main() {
    let mut plugin = cnet_cni::ipam::IpamPlugin::on_disk();
    std::process::exit(cnet_cni::run(&mut plugin));
}
