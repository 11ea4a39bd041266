//! `cnet-ipam`: a drop-in replacement for the reference `host-local` IPAM plugin, with GC and
//! STATUS. Same config keys (`ranges`, `subnet`/`rangeStart`/`rangeEnd`/`gateway`, `routes`,
//! `dataDir` — default `/var/lib/cni/networks` — and `resolvConf`); leases live in a
//! crash-safe store under `dataDir/<network name>`.

// musl's own malloc returns memory to the kernel at once (see cnet-cni's Cargo.toml).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut plugin = cnet_cni::ipam::IpamPlugin::on_disk();
    std::process::exit(cnet_cni::run(&mut plugin));
}
