//! `cnet`: the main CNI plugin — addresses (in-process `cnet-ipam` or any delegated IPAM),
//! routing (cnet-route, transparent or bridge mode) and policy, with a crash-safe node state
//! per network. See `cnet_cni::cnet` for the configuration and the error codes.
//!
//! `cnet reap <container_id> <ifname>` is the detached reaper a deferred DEL starts (see
//! `cnet_cni::cnet::teardown`); runtimes call the plugin without arguments.

// No `std::rt` start-up: its main-thread stack-guard set-up reads `/proc/self/maps`, a
// measurable share of a CNI call's start on a busy node. `std::env::args` still works (glibc
// hands the arguments to std through `.init_array`); what is lost is the "stack overflow"
// message on a stack overflow (the process still dies by SIGSEGV). SIGPIPE is ignored as
// std would: a closed stdout is an error, not a silent death. (The unit-test build keeps
// the test harness's `main`.)
#![cfg_attr(not(test), no_main)]

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    // SAFETY: setting a signal's disposition to SIG_IGN and a malloc parameter before any
    // other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        // The heap grows by 1 MiB beyond each request (glibc's default: 128 KiB) and keeps
        // as much when it shrinks: a call's heap then grows and is trimmed a few times
        // instead of dozens (the helper threads' arenas grow by mprotect), and each such
        // change on this machine's virtualised MMU is dear (see
        // README, "Benchmarks"). Only touched pages take memory.
        libc::mallopt(libc::M_TOP_PAD, TOP_PAD);
    }
    run()
}

/// The heap's growth step (`M_TOP_PAD`).
#[cfg(not(test))]
const TOP_PAD: std::ffi::c_int = 1 << 20;

#[cfg(not(test))]
fn run() -> ! {
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
