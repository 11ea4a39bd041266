//! Statically linked builds (`-C target-feature=+crt-static`, as this workspace's
//! `.cargo/config.toml` sets) get cnet's own libmnl (`mnl/mnl.c`): Debian ships libnftnl.a but
//! no libmnl.a. It is built into `OUT_DIR/libmnl.a`, whose directory is added to the linker's
//! search path, so the `-lmnl` that `mnl-sys` asks for (and that libnftnl.a needs) finds it.
//! Other builds link the system's shared libmnl as before.

fn main() {
    println!("cargo:rerun-if-changed=mnl/mnl.c");
    println!("cargo:rerun-if-changed=build.rs");
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if !features.split(',').any(|f| f == "crt-static") {
        return;
    }
    let out = std::env::var("OUT_DIR").unwrap_or_else(|e| panic!("OUT_DIR: {e}"));
    cc::Build::new()
        .file("mnl/mnl.c")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .cargo_metadata(false)
        .compile("mnl");
    println!("cargo:rustc-link-search=native={out}");
}
