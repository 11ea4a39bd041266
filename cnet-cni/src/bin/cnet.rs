//! `cnet`: the main CNI plugin — addresses (in-process `cnet-ipam` or any delegated IPAM),
//! routing (cnet-route, transparent or bridge mode) and policy, with a crash-safe node state
//! per network. See `cnet_cni::cnet` for the configuration and the error codes.
//!
//! `cnet reap <container_id> <ifname>` is the detached reaper a deferred DEL starts (see
//! `cnet_cni::cnet::teardown`); runtimes call the plugin without arguments.

// No `std::rt` start-up: its main-thread stack-guard set-up reads `/proc/self/maps`, a
// measurable share of a CNI call's start on a busy node. The arguments are read from
// `main`'s own (musl, unlike glibc, does not hand them to std's `.init_array` hook, so
// `std::env::args` would be empty); what is lost is the "stack overflow" message on a stack
// overflow (the process still dies by SIGSEGV). SIGPIPE is ignored as
// std would: a closed stdout is an error, not a silent death. (The unit-test build keeps
// the test harness's `main`.)
#![cfg_attr(not(test), no_main)]

// musl's own malloc returns freed memory to the kernel at once: TLB shootdowns between the
// plugin's threads (README, "Benchmarks").
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(argc: std::ffi::c_int, argv: *const *const std::ffi::c_char) -> std::ffi::c_int {
    // SAFETY: setting a signal's disposition to SIG_IGN and a malloc parameter before any
    // other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        // glibc builds: the heap grows by 1 MiB beyond each request (glibc's default:
        // 128 KiB) and keeps as much when it shrinks, so a call's heap is grown and trimmed a
        // few times instead of dozens; each such change on a virtualised MMU is dear. Only
        // touched pages take memory. (musl builds allocate with mimalloc, above.)
        #[cfg(target_env = "gnu")]
        libc::mallopt(libc::M_TOP_PAD, TOP_PAD);
    }
    let n = usize::try_from(argc).unwrap_or(0);
    let args: Vec<String> = (1..n)
        .filter_map(|i| {
            // SAFETY: the C runtime passes `argc` valid pointers to NUL-terminated strings.
            let p = unsafe { *argv.add(i) };
            (!p.is_null()).then(|| {
                // SAFETY: as above: `p` is a live NUL-terminated string.
                let s = unsafe { std::ffi::CStr::from_ptr(p) };
                s.to_string_lossy().into_owned()
            })
        })
        .collect();
    run(args)
}

/// The heap's growth step (`M_TOP_PAD`).
#[cfg(all(not(test), target_env = "gnu"))]
const TOP_PAD: std::ffi::c_int = 1 << 20;

#[cfg(not(test))]
fn run(args: Vec<String>) -> ! {
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
