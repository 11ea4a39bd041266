//! `cnet`: the main CNI plugin — addresses (in-process `cnet-ipam` or any delegated IPAM),
//! routing (cnet-route, transparent or bridge mode) and policy, with a crash-safe node state
//! per network. See `cnet_cni::cnet` for the configuration and the error codes.

fn main() {
    let mut plugin = cnet_cni::cnet::CnetPlugin::default();
    std::process::exit(cnet_cni::run(&mut plugin));
}
