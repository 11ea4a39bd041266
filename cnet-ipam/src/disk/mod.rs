//! The disk-backed allocator (IO shell): one journal per network, an exclusive lock file with a
//! bounded wait, atomic snapshots. See [`DiskAllocator`].

mod crc32;
mod journal;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt as _, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fs4::fs_std::FileExt as _;

use crate::config::{IpamConfig, RangeSet};
use crate::error::{IpamError, Result};
use crate::pool::{Event, Pool, Snapshot};
use crate::types::{AllocationRequest, Allocator, Lease, Owner, PoolStatus};
use journal::Record;

/// Default bound on the wait for the store's lock.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// Name of the lock file in the store directory.
pub const LOCK_FILE: &str = "cnet-ipam.lock";
/// Name of the journal (the lease state) in the store directory.
pub const JOURNAL_FILE: &str = "cnet-ipam.journal";
const TMP_PREFIX: &str = "cnet-ipam.journal.tmp.";

/// Tuning of a [`DiskAllocator`]. Build with `DiskOptions { lock_timeout, ..Default::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskOptions {
    /// How long to wait for the exclusive lock before [`IpamError::LockTimeout`].
    pub lock_timeout: Duration,
    /// The journal is rewritten as one snapshot once it holds more than this many records and
    /// more than twice as many records as leases (amortised O(1) per commit).
    pub compact_min_records: u64,
}

impl Default for DiskOptions {
    fn default() -> Self {
        DiskOptions {
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            compact_min_records: 1024,
        }
    }
}

/// The journal file as this handle last saw it. Holding `file` open pins its inode, so an
/// equal (dev, inode) on the path later really means "the same file", never a recycled inode.
#[derive(Debug)]
struct JournalFile {
    file: File,
    dev: u64,
    ino: u64,
    /// Bytes of complete records applied to `pool`.
    valid_len: u64,
    /// File length seen at the last refresh (may exceed `valid_len` by a torn tail).
    file_len: u64,
    /// Records applied (the snapshot counts as one).
    records: u64,
}

#[derive(Debug)]
struct Loaded {
    pool: Pool,
    journal: Option<JournalFile>,
}

/// An [`Allocator`] whose leases live in `dataDir/<network>/`, safe across processes.
///
/// - **Locking**: every operation takes an exclusive `flock` on `cnet-ipam.lock`, waiting at
///   most [`DiskOptions::lock_timeout`] ([`IpamError::LockTimeout`], CNI code 11).
/// - **Durability**: a change is appended to `cnet-ipam.journal` as one checksummed line and
///   `fdatasync`ed before the call returns; snapshots (journal creation and compaction) are
///   written to a temporary file, fsynced, renamed over the journal and the directory fsynced.
///   A `kill -9` at any instant leaves either the old or the new state; a cut-off last line is
///   ignored, stray temporary files are removed under the lock.
/// - **Integrity**: a journal that does not decode is [`IpamError::CorruptState`] for every
///   operation until repaired; the store never starts empty over a damaged file.
/// - **Cost**: the journal is read once per handle; later operations read only what other
///   processes appended, and the allocation itself is O(log n) (see [`crate::Pool`]).
/// - **Failure atomicity**: a failed operation leaves the files and the handle's view as
///   they were.
#[derive(Debug)]
pub struct DiskAllocator {
    dir: PathBuf,
    sets: Vec<RangeSet>,
    options: DiskOptions,
    lock: File,
    state: Option<Loaded>,
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> IpamError + use<> {
    let path = path.to_path_buf();
    move |source| IpamError::Io { op, path, source }
}

impl DiskAllocator {
    /// Open (creating the directory if needed) the store of `config` in
    /// `config.store_dir()`, with default options.
    pub fn open(config: &IpamConfig) -> Result<Self> {
        Self::open_with(config, DiskOptions::default())
    }

    /// As [`DiskAllocator::open`], with options.
    pub fn open_with(config: &IpamConfig, options: DiskOptions) -> Result<Self> {
        Self::open_dir(config.store_dir(), config.ranges.clone(), options)
    }

    /// Open the store in directory `dir` over `sets`. Creates `dir` when missing
    /// ([`IpamError::DataDir`] when it cannot be created or written).
    pub fn open_dir(
        dir: impl Into<PathBuf>,
        sets: Vec<RangeSet>,
        options: DiskOptions,
    ) -> Result<Self> {
        let dir = dir.into();
        let data_dir = |source| IpamError::DataDir {
            path: dir.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(data_dir)?;
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(data_dir)?;
        Ok(DiskAllocator {
            dir,
            sets,
            options,
            lock,
            state: None,
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The journal's path.
    pub fn journal_path(&self) -> PathBuf {
        self.dir.join(JOURNAL_FILE)
    }

    /// Run `f` under the exclusive lock, with the state refreshed from disk.
    fn locked<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match self.lock.try_lock_exclusive() {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(io_err("lock", &self.dir.join(LOCK_FILE))(e)),
            }
            let waited = started.elapsed();
            if waited >= self.options.lock_timeout {
                return Err(IpamError::LockTimeout {
                    path: self.dir.join(LOCK_FILE),
                    waited,
                });
            }
            std::thread::sleep(pause.min(self.options.lock_timeout - waited));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
        let out = self.refresh().and_then(|()| f(self));
        // Closing the process releases the lock too; an unlock error changes nothing we did.
        let _ = fs4::fs_std::FileExt::unlock(&self.lock);
        out
    }

    fn corrupt(&self, record: u64, reason: impl Into<String>) -> IpamError {
        IpamError::CorruptState {
            path: self.journal_path(),
            record,
            reason: reason.into(),
        }
    }

    /// Bring `self.state` up to date with the journal on disk (lock held).
    fn refresh(&mut self) -> Result<()> {
        let path = self.journal_path();
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !matches!(&self.state, Some(l) if l.journal.is_none()) {
                    self.remove_stray_temps();
                    self.state = Some(Loaded {
                        pool: Pool::new(self.sets.clone()),
                        journal: None,
                    });
                }
                return Ok(());
            }
            Err(e) => return Err(io_err("stat", &path)(e)),
        };
        if let Some(Loaded {
            pool,
            journal: Some(j),
        }) = &mut self.state
        {
            if j.dev == meta.dev() && j.ino == meta.ino() && meta.len() >= j.valid_len {
                if meta.len() == j.valid_len {
                    j.file_len = meta.len();
                    return Ok(());
                }
                // Others appended: apply just the new records.
                let mut tail = vec![0u8; (meta.len() - j.valid_len) as usize];
                let read = j.file.read_exact_at(&mut tail, j.valid_len);
                let first = j.records;
                let result = read.map_err(io_err("read", &path)).and_then(|()| {
                    let d = journal::decode(&tail).map_err(|e| IpamError::CorruptState {
                        path: path.clone(),
                        record: first + e.record,
                        reason: e.reason,
                    })?;
                    for (k, rec) in d.records.iter().enumerate() {
                        apply_commit(pool, rec).map_err(|reason| IpamError::CorruptState {
                            path: path.clone(),
                            record: first + k as u64 + 1,
                            reason,
                        })?;
                        j.records += 1;
                    }
                    j.valid_len += d.consumed as u64;
                    j.file_len = meta.len();
                    Ok(())
                });
                if result.is_err() {
                    self.state = None;
                }
                return result;
            }
        }
        self.state = None;
        let loaded = self.load(&path)?;
        self.remove_stray_temps();
        self.state = Some(loaded);
        Ok(())
    }

    /// Read the whole journal into a fresh pool.
    fn load(&self, path: &Path) -> Result<Loaded> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io_err("open", path))?;
        let meta = file.metadata().map_err(io_err("stat", path))?;
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut bytes).map_err(io_err("read", path))?;
        let d = journal::decode(&bytes).map_err(|e| self.corrupt(e.record, e.reason))?;
        let count = d.records.len() as u64;
        let mut records = d.records.into_iter();
        let mut pool = Pool::new(self.sets.clone());
        match records.next() {
            Some(Record::Snapshot {
                format,
                leases,
                last,
            }) => {
                if format != journal::FORMAT {
                    return Err(self.corrupt(1, format!("unknown format {format}")));
                }
                pool.load_snapshot(Snapshot { leases, last })
                    .map_err(|r| self.corrupt(1, r))?;
            }
            Some(Record::Commit { .. }) => {
                return Err(self.corrupt(1, "journal does not start with a snapshot"));
            }
            None => return Err(self.corrupt(1, "journal has no complete record")),
        }
        for (k, rec) in records.enumerate() {
            apply_commit(&mut pool, &rec).map_err(|r| self.corrupt(k as u64 + 2, r))?;
        }
        Ok(Loaded {
            pool,
            journal: Some(JournalFile {
                file,
                dev: meta.dev(),
                ino: meta.ino(),
                valid_len: d.consumed as u64,
                file_len: meta.len(),
                records: count,
            }),
        })
    }

    /// Temporary files left by a writer that died before its rename (lock held, so no
    /// writer is alive).
    fn remove_stray_temps(&self) {
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }

    fn pool(&self) -> Result<&Pool> {
        self.state
            .as_ref()
            .map(|l| &l.pool)
            .ok_or_else(|| self.corrupt(0, "state not loaded"))
    }

    /// Make `events` durable, then apply them to the in-memory state (lock held, state fresh).
    fn commit(&mut self, events: Vec<Event>) -> Result<()> {
        self.commit_with(events, true).map(drop)
    }

    /// As [`DiskAllocator::commit`]; with `sync` false an appended record is written but not
    /// `fdatasync`ed, and the journal file to sync is returned (a snapshot is always synced).
    fn commit_with(&mut self, events: Vec<Event>, sync: bool) -> Result<Option<File>> {
        if events.is_empty() {
            return Ok(None);
        }
        let Some(loaded) = self.state.as_mut() else {
            return Err(self.corrupt(0, "state not loaded"));
        };
        let compact = match &loaded.journal {
            None => true,
            Some(j) => {
                j.records >= self.options.compact_min_records
                    && j.records > 2 * loaded.pool.leases().count() as u64
            }
        };
        if compact {
            let mut next = loaded.pool.clone();
            apply_events(&mut next, &events).map_err(|r| self.corrupt(0, r))?;
            let bytes = journal::encode(&Record::snapshot(next.snapshot()));
            let file = self.write_atomic(&bytes)?;
            let meta = file
                .metadata()
                .map_err(io_err("stat", &self.journal_path()))?;
            self.state = Some(Loaded {
                pool: next,
                journal: Some(JournalFile {
                    file,
                    dev: meta.dev(),
                    ino: meta.ino(),
                    valid_len: bytes.len() as u64,
                    file_len: bytes.len() as u64,
                    records: 1,
                }),
            });
            return Ok(None);
        }
        let path = self.journal_path();
        let Some(Loaded {
            pool,
            journal: Some(j),
        }) = self.state.as_mut()
        else {
            return Err(self.corrupt(0, "state not loaded"));
        };
        let line = journal::encode(&Record::Commit {
            events: events.clone(),
        });
        let written = (|| {
            if j.file_len > j.valid_len {
                // Cut off a torn tail so the new record starts on its own line.
                j.file
                    .set_len(j.valid_len)
                    .map_err(io_err("truncate", &path))?;
            }
            j.file
                .write_all_at(&line, j.valid_len)
                .map_err(io_err("write", &path))?;
            if sync {
                j.file.sync_data().map_err(io_err("fsync", &path))?;
                Ok(None)
            } else {
                j.file.try_clone().map(Some).map_err(io_err("dup", &path))
            }
        })();
        let unsynced = match written {
            Ok(f) => f,
            Err(e) => {
                // Undo what may have reached the file; then forget our view and re-read next
                // time.
                let _ = j.file.set_len(j.valid_len);
                let _ = j.file.sync_data();
                self.state = None;
                return Err(e);
            }
        };
        apply_events(pool, &events).map_err(|r| IpamError::CorruptState {
            path: path.clone(),
            record: j.records + 1,
            reason: r,
        })?;
        j.valid_len += line.len() as u64;
        j.file_len = j.valid_len;
        j.records += 1;
        Ok(unsynced)
    }

    /// [`Allocator::allocate`], except that the new lease's journal record is written but not
    /// yet `fdatasync`ed when this returns: the returned [`PendingSync`] makes it durable, so
    /// a caller can overlap the flush with other work. The lease is visible to other
    /// processes at once (the journal is under the lock) and survives a `kill -9` of this
    /// process; it is durable across a power loss only once [`PendingSync::wait`] returned
    /// `Ok`. Until then the caller must not report the lease as granted; when `wait` fails it
    /// should release the lease ([`Allocator::release`] writes and syncs a release record).
    pub fn allocate_deferred(
        &mut self,
        request: &AllocationRequest,
    ) -> Result<(Lease, PendingSync)> {
        self.locked(|s| {
            let (lease, event) = s.pool()?.plan_allocate(request)?;
            let file = s.commit_with(vec![event], false)?;
            Ok((
                lease,
                PendingSync {
                    file,
                    path: s.journal_path(),
                },
            ))
        })
    }

    /// [`Allocator::release`], except that the release record is written but not yet
    /// `fdatasync`ed when this returns (see [`DiskAllocator::allocate_deferred`]): the address
    /// is free for other processes at once; the caller reports the release only once
    /// [`PendingSync::wait`] returned `Ok`. Until then a power loss may bring the lease back
    /// (it is then collected like any lease of a vanished attachment, by DEL again or GC).
    pub fn release_deferred(&mut self, owner: &Owner) -> Result<(Option<Lease>, PendingSync)> {
        self.locked(|s| {
            let path = s.journal_path();
            let Some(lease) = s.pool()?.lease(owner).cloned() else {
                return Ok((None, PendingSync { file: None, path }));
            };
            let file = s.commit_with(
                vec![Event::Release {
                    owner: owner.clone(),
                }],
                false,
            )?;
            Ok((Some(lease), PendingSync { file, path }))
        })
    }

    /// Replace the journal with `bytes`: temp file, fsync, rename, fsync directory.
    fn write_atomic(&self, bytes: &[u8]) -> Result<File> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let tmp = self
            .dir
            .join(format!("{TMP_PREFIX}{}.{nanos}", std::process::id()));
        let result = (|| {
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(io_err("create", &tmp))?;
            f.write_all(bytes).map_err(io_err("write", &tmp))?;
            f.sync_all().map_err(io_err("fsync", &tmp))?;
            f.seek(SeekFrom::Start(0)).map_err(io_err("seek", &tmp))?;
            fs::rename(&tmp, self.journal_path()).map_err(io_err("rename", &tmp))?;
            Ok(f)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        let f = result?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync", &self.dir))?;
        Ok(f)
    }
}

/// A journal record written by [`DiskAllocator::allocate_deferred`] whose flush is still due.
/// Dropping it without [`PendingSync::wait`] leaves the record to the kernel's writeback.
#[derive(Debug)]
#[must_use = "the lease is not durable until wait() returned Ok"]
pub struct PendingSync {
    /// The journal (a duplicate descriptor); `None` when the commit was already synced.
    file: Option<File>,
    path: PathBuf,
}

impl PendingSync {
    /// `fdatasync` the journal the record was appended to. Another process may have
    /// compacted the journal meanwhile: its snapshot, which holds this record, was synced
    /// before it replaced the file, and syncing the old file is then harmless.
    pub fn wait(self) -> Result<()> {
        match &self.file {
            Some(f) => f.sync_data().map_err(io_err("fsync", &self.path)),
            None => Ok(()),
        }
    }
}

fn apply_events(pool: &mut Pool, events: &[Event]) -> std::result::Result<(), String> {
    for e in events {
        pool.apply(e)?;
    }
    Ok(())
}

fn apply_commit(pool: &mut Pool, rec: &Record) -> std::result::Result<(), String> {
    match rec {
        Record::Commit { events } => apply_events(pool, events),
        Record::Snapshot { .. } => Err("snapshot record after the first record".into()),
    }
}

impl Allocator for DiskAllocator {
    fn allocate(&mut self, request: &AllocationRequest) -> Result<Lease> {
        self.locked(|s| {
            let (lease, event) = s.pool()?.plan_allocate(request)?;
            s.commit(vec![event])?;
            Ok(lease)
        })
    }

    fn release(&mut self, owner: &Owner) -> Result<Option<Lease>> {
        self.locked(|s| {
            let Some(lease) = s.pool()?.lease(owner).cloned() else {
                return Ok(None);
            };
            s.commit(vec![Event::Release {
                owner: owner.clone(),
            }])?;
            Ok(Some(lease))
        })
    }

    fn leases(&mut self) -> Result<Vec<Lease>> {
        self.locked(|s| Ok(s.pool()?.leases().cloned().collect()))
    }

    fn lease(&mut self, owner: &Owner) -> Result<Option<Lease>> {
        self.locked(|s| Ok(s.pool()?.lease(owner).cloned()))
    }

    fn gc(&mut self, live: &[Owner]) -> Result<Vec<Lease>> {
        self.locked(|s| {
            let pool = s.pool()?;
            let events = pool.plan_gc(live);
            let released: Vec<Lease> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Release { owner } => pool.lease(owner).cloned(),
                    Event::Allocate { .. } => None,
                })
                .collect();
            s.commit(events)?;
            Ok(released)
        })
    }

    fn status(&mut self) -> Result<PoolStatus> {
        self.locked(|s| Ok(s.pool()?.status()))
    }
}
