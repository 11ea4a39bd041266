//! Statically linked builds (`-C target-feature=+crt-static`, or any musl target) get cnet's
//! own libmnl (`mnl/mnl.c`): Debian ships libnftnl.a but no libmnl.a. It is built into
//! `OUT_DIR/libmnl.a`, whose directory is added to the linker's search path, so the `-lmnl`
//! that `mnl-sys` asks for (and that libnftnl.a needs) finds it. Other builds link the
//! system's shared libmnl as before.
//!
//! On musl (the workspace's target: see `.cargo/config.toml`), `musl-gcc` sees only musl's
//! headers, so the kernel's and libmnl's are offered from a directory of links in `OUT_DIR`;
//! and `mnl/musl.c` adds the two glibc-only symbols that Debian's libnftnl.a calls, and
//! memcpy, memmove, memset and memcmp faster than musl's for small sizes.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=mnl/mnl.c");
    println!("cargo:rerun-if-changed=mnl/musl.c");
    println!("cargo:rerun-if-changed=build.rs");
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let musl = std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|e| e == "musl");
    // musl targets link statically by default without listing `crt-static`.
    if !musl && !features.split(',').any(|f| f == "crt-static") {
        return;
    }
    let out = std::env::var("OUT_DIR").unwrap_or_else(|e| panic!("OUT_DIR: {e}"));
    let mut build = cc::Build::new();
    build
        .file("mnl/mnl.c")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .cargo_metadata(false);
    if musl {
        let include = Path::new(&out).join("include");
        header_links(&include);
        build.include(&include);
        // Linked whole: libnftnl comes after this crate's libraries on the linker's line,
        // so an archive scanned only for symbols already wanted would be skipped.
        cc::Build::new()
            .file("mnl/musl.c")
            // The memory functions must not be compiled into calls to themselves.
            .flag("-O2")
            .flag("-fno-builtin")
            .flag("-fno-tree-loop-distribute-patterns")
            .warnings(true)
            .extra_warnings(true)
            .warnings_into_errors(true)
            .cargo_metadata(false)
            .compile("cnet_musl");
        println!("cargo:rustc-link-lib=static:+whole-archive=cnet_musl");
    }
    // Also linked whole, from this crate: `mnl-sys`'s `-lmnl` can come before `-lnftnl` on
    // the linker's line (before anything asks for libmnl's symbols).
    build.compile("mnl");
    println!("cargo:rustc-link-lib=static:+whole-archive=mnl");
    println!("cargo:rustc-link-search=native={out}");
}

/// `dir/{linux,asm,asm-generic,libmnl}` linked to the system's kernel and libmnl headers.
fn header_links(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for (name, target) in [
        ("linux", "/usr/include/linux"),
        ("asm-generic", "/usr/include/asm-generic"),
        ("asm", "/usr/include/x86_64-linux-gnu/asm"),
        ("libmnl", "/usr/include/libmnl"),
    ] {
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, &link)
            .unwrap_or_else(|e| panic!("{} -> {target}: {e}", link.display()));
    }
}
