//! Bench `ipam`: allocations per second in the cnet-ipam library, filling a /16 from empty to
//! full (65 533 addresses), with the in-memory allocator (also per decile of fill, and refilling
//! holes in a full pool) and with the disk allocator committing (fdatasync) every allocation as
//! the plugin does. Also: the cost of one plugin-style call (open the store, allocate, close) at
//! several fill levels, which includes reading the journal.
//!
//! `cargo bench -p cnet-benches --bench ipam` measures; under `cargo test` a /24 smoke pass runs.

use std::time::Instant;

use cnet_benches::{measuring, median};
use cnet_ipam::{
    AllocationRequest, Allocator, DiskAllocator, DiskOptions, IpamConfig, MemoryAllocator, Owner,
    RangeSet,
};

fn sets(subnet: &str) -> Vec<RangeSet> {
    let ipam = serde_json::json!({ "subnet": subnet });
    match IpamConfig::from_ipam("bench", &ipam) {
        Ok(c) => c.ranges,
        Err(e) => panic!("bench config: {e}"),
    }
}

fn owner(i: usize) -> Owner {
    Owner::new(format!("bench-container-{i:08}"), "eth0")
}

/// Fill `a` to exhaustion; returns (allocations, seconds, per-decile allocations/s).
fn fill(a: &mut dyn Allocator, capacity: usize) -> (usize, f64, Vec<f64>) {
    let start = Instant::now();
    let mut deciles = Vec::new();
    let mut mark = Instant::now();
    let step = (capacity / 10).max(1);
    let mut n = 0;
    loop {
        match a.allocate(&AllocationRequest::new(owner(n))) {
            Ok(_) => n += 1,
            Err(cnet_ipam::IpamError::Exhausted { .. }) => break,
            Err(e) => panic!("allocate {n}: {e}"),
        }
        if n % step == 0 {
            deciles.push(step as f64 / mark.elapsed().as_secs_f64());
            mark = Instant::now();
        }
    }
    (n, start.elapsed().as_secs_f64(), deciles)
}

fn fmt_rates(r: &[f64]) -> String {
    r.iter()
        .map(|x| format!("{:.0}", x))
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let full = measuring();
    let profile = cnet_benches::profile();
    let subnet = profile.pick("10.0.0.0/24", "10.0.0.0/20", "10.0.0.0/16");
    let s = sets(subnet);
    let capacity = MemoryAllocator::new(s.clone()).pool().status().range_sets[0].free as usize;
    println!("ipam bench: {subnet}, {capacity} allocatable addresses");

    // In-memory: fill from empty to full, several runs.
    let runs = profile.pick(1, 3, 7);
    let mut rates = Vec::new();
    let mut last_deciles = Vec::new();
    for _ in 0..runs {
        let mut a = MemoryAllocator::new(s.clone());
        let (n, secs, dec) = fill(&mut a, capacity);
        assert_eq!(n, capacity);
        rates.push(n as f64 / secs);
        last_deciles = dec;
    }
    let mut rec = cnet_benches::record::Recorder::new("ipam");
    let case = format!("fill {subnet}");
    rec.samples(
        &case,
        "memory allocator",
        "allocations_per_s",
        "alloc/s",
        &rates,
    )
    .higher();
    let mem = median(&mut rates).unwrap_or(0.0);
    println!("memory: fill empty->full: median {mem:.0} allocations/s over {runs} runs");
    println!(
        "memory: per-decile allocations/s (last run): {}",
        fmt_rates(&last_deciles)
    );

    // In-memory, nearly full and fragmented: release every 97th lease, then allocate them back.
    let mut a = MemoryAllocator::new(s.clone());
    fill(&mut a, capacity);
    let freed: Vec<usize> = (0..capacity).step_by(97).collect();
    for i in &freed {
        let _ = a.release(&owner(*i));
    }
    let t = Instant::now();
    for (k, _) in freed.iter().enumerate() {
        if let Err(e) = a.allocate(&AllocationRequest::new(owner(capacity + k))) {
            panic!("refill: {e}");
        }
    }
    let frag = freed.len() as f64 / t.elapsed().as_secs_f64();
    println!(
        "memory: refill {} holes in a full pool: {frag:.0} allocations/s",
        freed.len()
    );

    // Disk, one long-lived handle, fdatasync per allocation. At a few fill levels, pause and
    // time plugin-style calls: a fresh handle each (open, lock, read the journal, allocate,
    // commit), released again so the level stays put.
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let path = dir.path().join("bench");
    let open = || match DiskAllocator::open_dir(&path, s.clone(), DiskOptions::default()) {
        Ok(d) => d,
        Err(e) => panic!("open: {e}"),
    };
    let levels: Vec<usize> = profile.pick(
        vec![0, 200],
        vec![0, 2_000],
        vec![0, 16_384, 32_768, 65_000],
    );
    let per_level = profile.pick(20, 50, 200);
    let _ = full;
    let mut d = open();
    let mut fill_secs = 0.0;
    let mut plugin_style = Vec::new();
    let mut n = 0;
    for level in levels.iter().copied().chain(std::iter::once(capacity)) {
        let t = Instant::now();
        while n < level {
            if let Err(e) = d.allocate(&AllocationRequest::new(owner(n))) {
                panic!("allocate {n}: {e}");
            }
            n += 1;
        }
        fill_secs += t.elapsed().as_secs_f64();
        if level == capacity {
            break;
        }
        let mut samples = Vec::new();
        for k in 0..per_level {
            let o = owner(10_000_000 + k);
            let t = Instant::now();
            let mut fresh = open();
            if let Err(e) = fresh.allocate(&AllocationRequest::new(o.clone())) {
                panic!("alloc at level {level}: {e}");
            }
            samples.push(t.elapsed().as_secs_f64() * 1e6);
            if let Err(e) = fresh.release(&o) {
                panic!("release: {e}");
            }
        }
        plugin_style.push((level, median(&mut samples).unwrap_or(0.0)));
    }
    match d.allocate(&AllocationRequest::new(owner(n))) {
        Err(cnet_ipam::IpamError::Exhausted { .. }) => {}
        other => panic!("expected exhaustion after {n}: {other:?}"),
    }
    let disk = n as f64 / fill_secs;
    rec.value(
        &case,
        "disk allocator (fdatasync each)",
        "allocations_per_s",
        "alloc/s",
        disk,
    )
    .higher();
    println!(
        "disk (fdatasync per allocation, one handle): fill empty->full: {disk:.0} allocations/s ({n} in {fill_secs:.1} s)"
    );
    println!("ratio memory/disk: {:.0}x", mem / disk);
    for (level, m) in &plugin_style {
        rec.value(
            &format!("plugin-style call, {level} leases held"),
            "disk allocator",
            "open_allocate",
            "us",
            *m,
        );
    }
    for (level, m) in plugin_style {
        println!(
            "disk, fresh handle per call (plugin-style), {level} leases held: median {m:.0} us per open+allocate ({per_level} calls)"
        );
    }
}
