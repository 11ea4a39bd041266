//! `cnet`: the main CNI plugin — addresses (in-process `cnet-ipam` or any delegated IPAM),
//! routing (cnet-route, transparent or bridge mode) and policy, with a crash-safe node state
//! per network. See `cnet_cni::cnet` for the configuration and the error codes.
//!
//! `cnet reap <container_id> <ifname>` is the detached reaper a deferred DEL starts (see
//! `cnet_cni::cnet::teardown`); runtimes call the plugin without arguments.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(cnet_cni::cnet::teardown::REAP_ARG) {
        std::process::exit(cnet_cni::cnet::teardown::run_reaper(&args[1..]));
    }
    // `/proc/self/exe` is this very binary, even if its file was replaced meanwhile.
    let mut plugin = cnet_cni::cnet::CnetPlugin::default().with_reaper("/proc/self/exe");
    let code = cnet_cni::run(&mut plugin);
    // Closes the nftables socket (cheap when a reaper holds it too) and prints the trace's
    // total (CNET_TRACE=1).
    plugin.finish();
    std::process::exit(code);
}
