//! The disk store: persistence, journal damage, stray temp files, lock timeout, data dir
//! errors, many processes at once, and kill -9.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cnet_ipam::{
    AllocationRequest, Allocator, DiskAllocator, DiskOptions, IpamError, Owner, RangeSet,
};
use common::{owner, subnets};

const JOURNAL: &str = "cnet-ipam.journal";

fn open(dir: &Path, sets: &[RangeSet]) -> DiskAllocator {
    DiskAllocator::open_dir(dir, sets.to_vec(), DiskOptions::default()).expect("open")
}

fn alloc(a: &mut DiskAllocator, o: Owner) -> Result<cnet_ipam::Lease, IpamError> {
    a.allocate(&AllocationRequest::new(o))
}

fn v4() -> Vec<RangeSet> {
    subnets(&[&["10.0.0.0/24"]])
}

#[test]
fn leases_survive_reopen_and_round_robin_continues() {
    let d = tempfile::tempdir().expect("tmp");
    let dir = d.path().join("missing/parents/net");
    let mut a = open(&dir, &v4());
    for i in 0..3 {
        alloc(&mut a, owner(i)).expect("alloc");
    }
    a.release(&owner(2)).expect("release");
    drop(a);
    let mut b = open(&dir, &v4());
    let ips: Vec<String> = b
        .leases()
        .expect("leases")
        .iter()
        .map(|l| l.ips()[0].to_string())
        .collect();
    assert_eq!(ips, ["10.0.0.2", "10.0.0.3"]);
    // Last reserved was .4 (released since): next is .5.
    assert_eq!(
        alloc(&mut b, owner(9)).expect("alloc").ips()[0].to_string(),
        "10.0.0.5"
    );
}

#[test]
fn two_handles_see_each_others_commits() {
    let d = tempfile::tempdir().expect("tmp");
    let mut a = open(d.path(), &v4());
    let mut b = open(d.path(), &v4());
    for i in 0..20 {
        let (x, y) = if i % 2 == 0 {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        alloc(x, owner(i)).expect("alloc");
        assert_eq!(y.leases().expect("leases").len(), i + 1);
        let e = alloc(y, owner(i)).expect_err("duplicate seen through the other handle");
        assert!(matches!(e, IpamError::DuplicateAllocation { .. }));
    }
    let all: HashSet<IpAddr> = a.leases().expect("l").iter().map(|l| l.ips()[0]).collect();
    assert_eq!(all.len(), 20);
}

#[test]
fn compaction_keeps_exactly_the_leases() {
    let d = tempfile::tempdir().expect("tmp");
    let opts = DiskOptions {
        compact_min_records: 8,
        ..Default::default()
    };
    let mut a = DiskAllocator::open_dir(d.path(), v4(), opts.clone()).expect("open");
    let mut other = DiskAllocator::open_dir(d.path(), v4(), opts).expect("open");
    for i in 0..200 {
        alloc(&mut a, owner(i)).expect("alloc");
        if i % 3 != 0 {
            a.release(&owner(i)).expect("release");
        }
        if i % 50 == 0 {
            // A handle whose cached file was replaced by compaction reloads.
            assert_eq!(other.leases().expect("l"), a.leases().expect("l"));
        }
    }
    let lines = fs::read_to_string(d.path().join(JOURNAL))
        .expect("read")
        .lines()
        .count();
    assert!(lines < 200, "journal was compacted ({lines} lines)");
    let want = a.leases().expect("leases");
    assert_eq!(want.len(), 67);
    assert_eq!(open(d.path(), &v4()).leases().expect("leases"), want);
}

/// Every operation on a damaged journal is a CorruptState error (code 6) and changes nothing.
fn assert_refuses(dir: &Path) {
    let before = fs::read(dir.join(JOURNAL)).expect("read");
    let mut a = open(dir, &v4());
    let ops: Vec<Result<(), IpamError>> = vec![
        alloc(&mut a, owner(50)).map(|_| ()),
        a.release(&owner(0)).map(|_| ()),
        a.gc(&[]).map(|_| ()),
        a.leases().map(|_| ()),
        a.status().map(|_| ()),
    ];
    for r in ops {
        let e = r.expect_err("corrupt journal must refuse");
        assert!(matches!(e, IpamError::CorruptState { .. }), "{e}");
        assert_eq!(e.cni_code(), 6);
    }
    assert_eq!(
        fs::read(dir.join(JOURNAL)).expect("read"),
        before,
        "journal untouched"
    );
}

fn journal_with_leases(n: usize) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tmp");
    let mut a = open(d.path(), &v4());
    for i in 0..n {
        alloc(&mut a, owner(i)).expect("alloc");
    }
    d
}

#[test]
fn corrupt_journal_is_refused_never_started_empty() {
    // A flipped byte inside a committed record.
    let d = journal_with_leases(3);
    let p = d.path().join(JOURNAL);
    let mut bytes = fs::read(&p).expect("read");
    let pos = bytes.len() / 2;
    bytes[pos] ^= 0x20;
    fs::write(&p, &bytes).expect("write");
    assert_refuses(d.path());

    // Garbage appended as a complete line.
    let d = journal_with_leases(3);
    let p = d.path().join(JOURNAL);
    fs::OpenOptions::new()
        .append(true)
        .open(&p)
        .expect("open")
        .write_all(b"hello world\n")
        .expect("w");
    assert_refuses(d.path());

    // Truncated to nothing, and a journal that is not ours at all.
    for content in [&b""[..], b"{\"leases\": []}\n", b"\x00\x01\x02"] {
        let d = journal_with_leases(1);
        fs::write(d.path().join(JOURNAL), content).expect("write");
        assert_refuses(d.path());
    }

    // A record that would hand one address to two owners (valid checksum, bad content).
    let d = journal_with_leases(2);
    let p = d.path().join(JOURNAL);
    let text = fs::read_to_string(&p).expect("read");
    let second = text.lines().nth(1).expect("second record (a commit)");
    let json = &second[9..];
    let forged = json.replace("container-1", "container-9");
    let line = format!("{:08x} {}\n", crc32fast::hash(forged.as_bytes()), forged);
    fs::OpenOptions::new()
        .append(true)
        .open(&p)
        .expect("open")
        .write_all(line.as_bytes())
        .expect("w");
    assert_refuses(d.path());
}

#[test]
fn corruption_seen_by_a_warm_handle_is_refused_too() {
    let d = journal_with_leases(2);
    let mut a = open(d.path(), &v4());
    assert_eq!(a.leases().expect("warm").len(), 2);
    fs::OpenOptions::new()
        .append(true)
        .open(d.path().join(JOURNAL))
        .expect("open")
        .write_all(b"deadbeef {}\n")
        .expect("w");
    let e = alloc(&mut a, owner(7)).expect_err("refused");
    assert!(matches!(e, IpamError::CorruptState { .. }), "{e}");
    assert!(matches!(a.leases(), Err(IpamError::CorruptState { .. })));
}

#[test]
fn torn_tail_is_ignored_and_cut_off_by_the_next_commit() {
    let d = journal_with_leases(2);
    let p = d.path().join(JOURNAL);
    fs::OpenOptions::new()
        .append(true)
        .open(&p)
        .expect("open")
        .write_all(b"0badc0de {\"op\":\"com")
        .expect("w");
    let mut a = open(d.path(), &v4());
    assert_eq!(a.leases().expect("leases").len(), 2);
    alloc(&mut a, owner(5)).expect("alloc after torn tail");
    let text = fs::read_to_string(&p).expect("read");
    assert!(!text.contains("0badc0de"), "torn tail removed");
    assert!(text.ends_with('\n'));
    assert_eq!(open(d.path(), &v4()).leases().expect("leases").len(), 3);
}

#[test]
fn stray_temp_files_are_removed_and_ignored() {
    let d = journal_with_leases(2);
    let stray = d.path().join("cnet-ipam.journal.tmp.999999.1");
    fs::write(&stray, b"half a snapshot").expect("write");
    let mut a = open(d.path(), &v4());
    assert_eq!(a.leases().expect("leases").len(), 2);
    assert!(!stray.exists());
}

#[test]
fn lock_held_elsewhere_times_out_with_try_again_later() {
    use fs4::fs_std::FileExt;
    let d = journal_with_leases(1);
    let before = fs::read(d.path().join(JOURNAL)).expect("read");
    let holder = fs::File::open(d.path().join("cnet-ipam.lock")).expect("lock file");
    holder.lock_exclusive().expect("lock");
    let opts = DiskOptions {
        lock_timeout: Duration::from_millis(150),
        ..Default::default()
    };
    let mut a = DiskAllocator::open_dir(d.path(), v4(), opts).expect("open");
    let e = alloc(&mut a, owner(3)).expect_err("locked");
    assert!(matches!(e, IpamError::LockTimeout { .. }), "{e}");
    assert_eq!(e.cni_code(), 11);
    assert_eq!(fs::read(d.path().join(JOURNAL)).expect("read"), before);
    FileExt::unlock(&holder).expect("unlock");
    alloc(&mut a, owner(3)).expect("works once the lock is free");
}

#[test]
fn unusable_data_dir_is_a_typed_error() {
    let d = tempfile::tempdir().expect("tmp");
    let file = d.path().join("plain-file");
    fs::write(&file, b"x").expect("write");
    let e = DiskAllocator::open_dir(file.join("net"), v4(), DiskOptions::default())
        .expect_err("not a directory");
    assert!(matches!(e, IpamError::DataDir { .. }), "{e}");
    assert_eq!(e.cni_code(), 5);
}

// ---- many processes -------------------------------------------------------------------

const CHILD_ENV: &str = "CNET_IPAM_TEST_CHILD";

fn child(test: &str, dir: &Path, arg: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("test binary"));
    c.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{}|{arg}", dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    c
}

fn child_args() -> Option<(PathBuf, String)> {
    let v = std::env::var(CHILD_ENV).ok()?;
    let (dir, arg) = v.split_once('|')?;
    Some((PathBuf::from(dir), arg.to_string()))
}

/// Child body for `processes_allocating_at_once_get_distinct_addresses` (no-op otherwise).
#[test]
fn child_allocate_batch() {
    let Some((dir, arg)) = child_args() else {
        return;
    };
    let mut a = DiskAllocator::open_dir(&dir, v4(), DiskOptions::default()).expect("open");
    for i in 0..25 {
        let o = Owner::new(format!("{arg}-{i}"), "eth0");
        // A fresh handle per call, as a CNI plugin process would have.
        if i % 5 == 0 {
            a = DiskAllocator::open_dir(&dir, v4(), DiskOptions::default()).expect("open");
        }
        let l = a
            .allocate(&AllocationRequest::new(o.clone()))
            .expect("alloc");
        println!("LEASE {} {}", o.container_id, l.ips()[0]);
        if i % 4 == 3 {
            a.release(&o).expect("release");
            println!("FREE {}", o.container_id);
        }
    }
}

fn read_events(out: &[u8]) -> Vec<(String, String, Option<String>)> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| {
            // The test harness may print "test NAME ... " on the same line first.
            let at = l.find("LEASE ").or_else(|| l.find("FREE "))?;
            let mut w = l[at..].split_whitespace();
            match w.next()? {
                "LEASE" => Some(("LEASE".into(), w.next()?.into(), Some(w.next()?.into()))),
                "FREE" => Some(("FREE".into(), w.next()?.into(), None)),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn processes_allocating_at_once_get_distinct_addresses() {
    if child_args().is_some() {
        return;
    }
    let d = tempfile::tempdir().expect("tmp");
    let kids: Vec<_> = (0..8)
        .map(|k| {
            child("child_allocate_batch", d.path(), &format!("p{k}"))
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for k in kids {
        let out = k.wait_with_output().expect("wait");
        assert!(out.status.success(), "child failed");
        for (ev, id, ip) in read_events(&out.stdout) {
            if ev == "LEASE" {
                expected.insert(id, ip.expect("ip"));
            } else {
                expected.remove(&id);
            }
        }
    }
    assert_eq!(expected.len(), 8 * 25 - 8 * 6);
    let held: BTreeMap<String, String> = open(d.path(), &v4())
        .leases()
        .expect("leases")
        .into_iter()
        .map(|l| (l.owner.container_id.clone(), l.ips()[0].to_string()))
        .collect();
    assert_eq!(held, expected);
    let distinct: HashSet<&String> = held.values().collect();
    assert_eq!(distinct.len(), held.len(), "no address held twice");
}

/// Child body for the kill -9 test: allocate owner i, release owner i-5, forever, printing
/// an acknowledgement after each returns.
#[test]
fn child_allocate_forever() {
    let Some((dir, round)) = child_args() else {
        return;
    };
    let opts = DiskOptions {
        compact_min_records: 16,
        ..Default::default()
    };
    let mut a = DiskAllocator::open_dir(&dir, subnets(&[&["10.0.0.0/24"], &["fd00::/120"]]), opts)
        .expect("open");
    let mut out = std::io::stdout().lock();
    for i in 0usize.. {
        let o = Owner::new(format!("{round}-{i}"), "eth0");
        let l = a.allocate(&AllocationRequest::new(o)).expect("alloc");
        writeln!(out, "LEASE {round}-{i} {}", l.ips()[0]).expect("stdout");
        out.flush().expect("flush");
        if i >= 5 {
            a.release(&Owner::new(format!("{round}-{}", i - 5), "eth0"))
                .expect("release");
            writeln!(out, "FREE {round}-{}", i - 5).expect("stdout");
            out.flush().expect("flush");
        }
    }
}

#[test]
fn kill_dash_nine_at_any_instant_loses_no_acknowledged_lease() {
    if child_args().is_some() {
        return;
    }
    let sets = subnets(&[&["10.0.0.0/24"], &["fd00::/120"]]);
    let d = tempfile::tempdir().expect("tmp");
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for round in 0..6 {
        let tag = format!("r{round}");
        let mut kid = child("child_allocate_forever", d.path(), &tag)
            .spawn()
            .expect("spawn");
        let stdout = kid.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // Let it run a varying number of operations, then SIGKILL it mid-flight.
        let target = 20 + round * 13;
        let mut acked = Vec::new();
        for line in lines.by_ref() {
            let line = line.expect("line");
            acked.push(line);
            if acked.len() >= target {
                break;
            }
        }
        kid.kill().expect("kill -9");
        // Lines already written before the kill still count as acknowledged.
        acked.extend(lines.map_while(Result::ok));
        kid.wait().expect("reap");
        let mut last_alloc = 0usize;
        for (ev, id, ip) in read_events(acked.join("\n").as_bytes()) {
            if ev == "LEASE" {
                last_alloc = id
                    .rsplit('-')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("n");
                expected.insert(id, ip.expect("ip"));
            } else {
                expected.remove(&id);
            }
        }
        let mut a = open(d.path(), &sets);
        let held: BTreeMap<String, String> = a
            .leases()
            .expect("reopen after kill -9")
            .into_iter()
            .map(|l| (l.owner.container_id.clone(), l.ips()[0].to_string()))
            .collect();
        // The one operation in flight may or may not have committed: the next allocation
        // (owner last+1) or the release of owner last-5.
        let mut extra: Vec<&String> = held.keys().filter(|k| !expected.contains_key(*k)).collect();
        let missing: Vec<&String> = expected.keys().filter(|k| !held.contains_key(*k)).collect();
        extra.sort();
        assert!(
            extra.is_empty() || extra == [&format!("{tag}-{}", last_alloc + 1)],
            "round {round}: unexpected leases {extra:?}"
        );
        assert!(
            missing.is_empty()
                || (last_alloc >= 5 && missing == [&format!("{tag}-{}", last_alloc - 5)]),
            "round {round}: lost acknowledged leases {missing:?}"
        );
        for (k, ip) in &expected {
            if let Some(h) = held.get(k) {
                assert_eq!(h, ip, "round {round}: {k} moved");
            }
        }
        let distinct: HashSet<&String> = held.values().collect();
        assert_eq!(distinct.len(), held.len(), "no address held twice");
        // Continue from what is on disk.
        expected = held;
        // The store is usable and no temporary file survives the next operation.
        a.status().expect("status");
        let temps = fs::read_dir(d.path())
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .count();
        assert_eq!(temps, 0);
    }
}

#[test]
fn leases_survive_a_change_of_ranges() {
    let d = tempfile::tempdir().expect("tmp");
    let narrow = common::sets(serde_json::json!({"subnet": "10.0.0.0/24", "rangeEnd": "10.0.0.9"}));
    let mut a = open(d.path(), &narrow);
    for i in 0..3 {
        alloc(&mut a, owner(i)).expect("alloc");
    }
    drop(a);
    // The operator moves the range; leases taken under the old one are kept and still block
    // their addresses where the new range covers them.
    let wide = common::sets(serde_json::json!({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.3"}));
    let mut b = open(d.path(), &wide);
    assert_eq!(b.leases().expect("leases").len(), 3);
    let l = alloc(&mut b, owner(7)).expect("alloc");
    assert_eq!(
        l.ips()[0].to_string(),
        "10.0.0.5",
        "after the last reserved .4, skipping held ones"
    );
    let e = b
        .allocate(&AllocationRequest::with_requested(
            owner(8),
            vec!["10.0.0.3".parse().expect("ip")],
        ))
        .expect_err("held under the old range");
    assert!(matches!(e, IpamError::AddressUnavailable { .. }), "{e}");
    assert!(
        b.release(&owner(0)).expect("release").is_some(),
        "10.0.0.2 lease (now outside) releasable"
    );
    assert_eq!(b.status().expect("status").range_sets[0].used, 3);
}

#[test]
fn deferred_allocation_is_visible_at_once_and_synced_by_wait() {
    let d = tempfile::tempdir().expect("tmp");
    let opts = DiskOptions {
        compact_min_records: 4,
        ..DiskOptions::default()
    };
    let mut a = DiskAllocator::open_dir(d.path(), v4(), opts.clone()).expect("open");
    let mut b = DiskAllocator::open_dir(d.path(), v4(), opts).expect("open");
    let mut seen = HashSet::new();
    // The first commit creates the journal (a synced snapshot); later ones append, and a few
    // compactions by the other handle happen while syncs are still pending.
    let mut pending = Vec::new();
    for i in 0..12 {
        let (lease, sync) = a
            .allocate_deferred(&AllocationRequest::new(owner(i)))
            .expect("deferred allocation");
        assert!(seen.insert(lease.ips()[0]), "address handed out twice");
        // Another process sees the lease before it is synced and cannot take it.
        let e = alloc(&mut b, owner(i)).expect_err("duplicate through the other handle");
        assert!(matches!(e, IpamError::DuplicateAllocation { .. }));
        let other = alloc(&mut b, owner(100 + i)).expect("other allocation");
        assert!(seen.insert(other.ips()[0]), "address handed out twice");
        pending.push(sync);
    }
    for s in pending {
        s.wait().expect("sync");
    }
    drop((a, b));
    let mut c = open(d.path(), &v4());
    assert_eq!(c.leases().expect("leases").len(), 24);
    // A failed or abandoned ADD releases its deferred lease like any other.
    c.release(&owner(3)).expect("release");
    assert_eq!(c.leases().expect("leases").len(), 23);
    // A deferred release frees the address for others at once.
    let (gone, sync) = c.release_deferred(&owner(4)).expect("deferred release");
    let freed = gone.expect("owner 4 held a lease").ips()[0];
    let mut e = open(d.path(), &v4());
    assert!(
        e.leases()
            .expect("leases")
            .iter()
            .all(|l| l.ips()[0] != freed)
    );
    sync.wait().expect("sync");
    let (none, sync) = c.release_deferred(&owner(4)).expect("idempotent");
    assert!(none.is_none());
    sync.wait().expect("nothing to sync");
    assert_eq!(e.leases().expect("leases").len(), 22);
}
