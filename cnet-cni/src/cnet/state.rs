//! The node state of one network: endpoints and stored policies in one JSON document,
//! `<dir>/state.json`, changed only under an exclusive `flock` on `<dir>/lock`.
//!
//! - **Bounded wait**: [`NodeState::lock`] waits at most the configured timeout, then fails
//!   with CNI error 11 ("try again later") instead of hanging a runtime.
//! - **Atomic writes**: every commit writes a temporary file and renames it over
//!   `state.json`, so a `kill -9` at any instant leaves the old or the new document, never a
//!   torn one (the page cache survives a killed process); stray temporary files are removed
//!   under the lock. The directory is not `fsync`ed.
//! - **Journal**: a commit of one endpoint record ([`StateGuard::commit_endpoint`], with the
//!   network's mode, table and node name) appends one JSON line to `<dir>/state.journal`
//!   instead of rewriting the document: `{"generation": N, ..., "upsert": [records],
//!   "remove": [[id, ifname]]}`. Readers apply the lines whose generations follow the document's (N = its
//!   generation + 1, + 2, ...) and stop at the first that does not (a torn line left by a
//!   `kill -9`, zero-filled blocks after a power loss, or lines of an older document). The
//!   writer overwrites anything after the last good line. After [`COMPACT_AFTER`] lines, or
//!   for any other change, the whole document is written again (temp file and rename) and the
//!   journal emptied. Why: replacing a file by rename costs ~0.2–0.5 ms on ext4 (it starts
//!   writeback of the new file, `auto_da_alloc`), an append a few microseconds, and ADD
//!   commits twice.
//! - **Durable and volatile commits**: [`StateGuard::commit`] also `fsync`s the document and
//!   hard-links it as `state.durable.json` (no second write); [`StateGuard::commit_volatile`]
//!   does not `fsync`. Every plugin commit (ADD's *pending* and *ready* records, DEL, GC) is
//!   volatile: what they record (links, routes, nftables, pod netns) is kernel state that a
//!   power loss erases anyway, and the IPAM's leases are durable on their own and keyed by
//!   the attachment. After a power loss a volatile `state.json` may come back empty or with
//!   zero-filled blocks (its rename reached the disk, its data did not); such a document
//!   (empty, or holding a NUL byte, which JSON text never does) is replaced by the last
//!   durable one on read, so operator data (`cnetctl` policies and labels, always committed
//!   durably) is never lost. Any other undecodable document is reported as unusable.
//! - **Intent first**: ADD records the endpoint as [`Phase::Pending`] before it allocates an
//!   address or creates a link, so DEL and GC of a network always know every attachment that
//!   may hold resources, even one whose ADD was killed.
//! - **Unusable state** (a document that does not decode) is reported, never silently reset:
//!   an empty state would forget attachments that hold addresses and links.

use crate::error::{CniError, ErrorCode};
use fs4::fs_std::FileExt as _;
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The state document's file name.
pub const STATE_FILE: &str = "state.json";
/// The lock file's name.
pub const LOCK_FILE: &str = "lock";
/// The last durably committed document (a hard link to a `state.json` that was `fsync`ed).
pub const DURABLE_FILE: &str = "state.durable.json";
/// Endpoint changes committed after the document (one JSON line per volatile commit).
pub const JOURNAL_FILE: &str = "state.journal";
/// Journal lines after which a commit rewrites the whole document instead.
pub const COMPACT_AFTER: usize = 64;
const TMP_PREFIX: &str = "state.json.tmp.";

/// Plugin-specific error code: the node state document does not decode.
pub const CODE_STATE_CORRUPT: u32 = 120;

/// Where an endpoint is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// ADD has started (it may still be running, or have been killed).
    Pending,
    /// ADD completed.
    Ready,
}

/// One attachment as the node state knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointRecord {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_NETNS` at ADD.
    pub netns: String,
    /// Host end of the veth pair.
    pub host_ifname: String,
    /// Addresses as configured in the pod (empty until IPAM answered).
    #[serde(default)]
    pub addresses: Vec<IpNetwork>,
    /// Pod namespace (`K8S_POD_NAMESPACE`, or `default`).
    pub namespace: String,
    /// Pod name (`K8S_POD_NAME`, or the container id).
    pub name: String,
    /// Labels, implicit ones included.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// False while labels are expected from an outside source and have not arrived: the
    /// endpoint is isolated until then.
    #[serde(default = "yes")]
    pub labels_known: bool,
    /// Attachment mode (`transparent` or `bridge`).
    pub mode: String,
    /// Life cycle.
    pub phase: Phase,
    /// Container ports (named ones resolve named-port rules); see [`crate::cnet::ports`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<crate::cnet::ports::ContainerPort>,
}

fn yes() -> bool {
    true
}

impl EndpointRecord {
    /// Whether this record is the attachment `(container_id, ifname)`.
    pub fn is(&self, container_id: &str, ifname: &str) -> bool {
        self.container_id == container_id && self.ifname == ifname
    }

    /// `namespace/name`.
    pub fn pod(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A policy object as applied by `cnetctl apply` (kept as the JSON the user gave).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPolicy {
    /// `kind` of the object.
    pub kind: String,
    /// `metadata.namespace` (empty for cluster-scoped objects).
    #[serde(default)]
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// The whole object.
    pub object: serde_json::Value,
}

impl StoredPolicy {
    /// `kind namespace/name` for messages.
    pub fn key(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// The whole document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateData {
    /// Incremented on every commit.
    #[serde(default)]
    pub generation: u64,
    /// The network's attachment mode as last configured by ADD (`transparent` or `bridge`;
    /// empty before the first ADD). `cnetctl` compiles policy for it.
    #[serde(default)]
    pub mode: String,
    /// The nftables table (`inet`) that holds this network's policy, as last configured by
    /// ADD (`policy.table`; empty: [`crate::cnet::conf::DEFAULT_TABLE`]).
    #[serde(default)]
    pub table: String,
    /// This node's name as last configured by ADD (`policy.nodeName`); empty: unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// Endpoints, ordered by `(container_id, ifname)`.
    #[serde(default)]
    pub endpoints: Vec<EndpointRecord>,
    /// Stored policies, ordered by `(kind, namespace, name)`.
    #[serde(default)]
    pub policies: Vec<StoredPolicy>,
    /// Labels set by an operator (`cnetctl label`) per pod `namespace/name`, kept apart from
    /// the endpoint records: DEL forgets the record, but a restarted container (a runtime's
    /// DEL then ADD under the same name) gets them back on ADD, so a pod protected only by
    /// such a label stays protected. Removed only by `cnetctl label KEY-`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, LabelOverride>,
    /// Namespace labels set by an operator (`cnetctl label namespace`, or `cnetctl apply` of a
    /// `kind: Namespace` object), by namespace name. The implicit
    /// `kubernetes.io/metadata.name: <name>` is added by the policy engine, not stored here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

/// Operator label changes of one pod (see [`StateData::pod_labels`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelOverride {
    /// Labels set (`KEY=VALUE`).
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Labels removed (`KEY-`): removed again from what the runtime supplies.
    #[serde(default)]
    pub removed: std::collections::BTreeSet<String>,
    /// Container ports set by an operator (`cnetctl ports`): replace what the runtime supplies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<crate::cnet::ports::ContainerPort>>,
}

impl LabelOverride {
    /// Apply to a record's labels; an operator-labeled endpoint's labels are known.
    pub fn apply(&self, labels: &mut BTreeMap<String, String>) {
        for k in &self.removed {
            labels.remove(k);
        }
        for (k, v) in &self.set {
            labels.insert(k.clone(), v.clone());
        }
    }
}

impl StateData {
    /// The record of an attachment.
    pub fn endpoint(&self, container_id: &str, ifname: &str) -> Option<&EndpointRecord> {
        self.endpoints.iter().find(|e| e.is(container_id, ifname))
    }

    /// Mutable access to the record of an attachment.
    pub fn endpoint_mut(
        &mut self,
        container_id: &str,
        ifname: &str,
    ) -> Option<&mut EndpointRecord> {
        self.endpoints
            .iter_mut()
            .find(|e| e.is(container_id, ifname))
    }

    /// Insert or replace a record (kept ordered).
    pub fn upsert_endpoint(&mut self, rec: EndpointRecord) {
        self.remove_endpoint(&rec.container_id.clone(), &rec.ifname.clone());
        let pos = self
            .endpoints
            .partition_point(|e| (&e.container_id, &e.ifname) < (&rec.container_id, &rec.ifname));
        self.endpoints.insert(pos, rec);
    }

    /// Remove a record; returns it.
    pub fn remove_endpoint(&mut self, container_id: &str, ifname: &str) -> Option<EndpointRecord> {
        let i = self
            .endpoints
            .iter()
            .position(|e| e.is(container_id, ifname))?;
        Some(self.endpoints.remove(i))
    }

    /// Record operator label changes (`Some(v)`: set, `None`: remove) of pod
    /// `namespace/name`, for [`StateData::pod_labels`].
    pub fn record_pod_labels(
        &mut self,
        namespace: &str,
        name: &str,
        changes: &[(String, Option<String>)],
    ) {
        let o = self
            .pod_labels
            .entry(format!("{namespace}/{name}"))
            .or_default();
        for (k, v) in changes {
            match v {
                Some(v) => {
                    o.removed.remove(k);
                    o.set.insert(k.clone(), v.clone());
                }
                None => {
                    o.set.remove(k);
                    o.removed.insert(k.clone());
                }
            }
        }
    }

    /// The operator label changes of pod `namespace/name`.
    pub fn pod_label_override(&self, namespace: &str, name: &str) -> Option<&LabelOverride> {
        self.pod_labels.get(&format!("{namespace}/{name}"))
    }

    /// Insert or replace a policy (same kind, namespace and name); returns whether it changed.
    pub fn upsert_policy(&mut self, p: StoredPolicy) -> bool {
        let key = (p.kind.clone(), p.namespace.clone(), p.name.clone());
        match self
            .policies
            .iter()
            .position(|q| (q.kind.clone(), q.namespace.clone(), q.name.clone()) == key)
        {
            Some(i) if self.policies[i] == p => false,
            Some(i) => {
                self.policies[i] = p;
                true
            }
            None => {
                let pos = self.policies.partition_point(|q| {
                    (q.kind.clone(), q.namespace.clone(), q.name.clone()) < key
                });
                self.policies.insert(pos, p);
                true
            }
        }
    }

    /// Remove a policy; returns it.
    pub fn remove_policy(
        &mut self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<StoredPolicy> {
        let i = self
            .policies
            .iter()
            .position(|q| q.kind == kind && q.namespace == namespace && q.name == name)?;
        Some(self.policies.remove(i))
    }
}

/// One journal line: what a volatile commit changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JournalRecord {
    /// The document's generation after this commit.
    generation: u64,
    mode: String,
    table: String,
    #[serde(default)]
    node: String,
    /// Records inserted or replaced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    upsert: Vec<EndpointRecord>,
    /// Records removed, as `(container_id, ifname)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    remove: Vec<(String, String)>,
}

impl JournalRecord {
    /// The record of one attachment as `data` has it now (an upsert, or a removal when
    /// `data` has no such record), with the network's mode, table and node name.
    fn of_endpoint(data: &StateData, container_id: &str, ifname: &str) -> JournalRecord {
        let (upsert, remove) = match data.endpoint(container_id, ifname) {
            Some(r) => (vec![r.clone()], Vec::new()),
            None => (
                Vec::new(),
                vec![(container_id.to_string(), ifname.to_string())],
            ),
        };
        JournalRecord {
            generation: data.generation,
            mode: data.mode.clone(),
            table: data.table.clone(),
            node: data.node.clone(),
            upsert,
            remove,
        }
    }

    fn apply(self, data: &mut StateData) {
        data.generation = self.generation;
        data.mode = self.mode;
        data.table = self.table;
        data.node = self.node;
        for (cid, ifname) in &self.remove {
            data.remove_endpoint(cid, ifname);
        }
        for r in self.upsert {
            data.upsert_endpoint(r);
        }
    }
}

/// Where the journal's good lines end, and how many there are.
#[derive(Debug, Clone, Copy, Default)]
struct JournalEnd {
    /// Bytes of the lines applied.
    good: u64,
    /// Their number.
    lines: usize,
    /// Bytes in the file (more than `good` after a torn or stale tail).
    file: u64,
}

/// Apply the journal `bytes` to `data`: every line whose generation follows, until one does
/// not (or does not decode, or lacks its newline).
fn replay(data: &mut StateData, bytes: &[u8]) -> JournalEnd {
    let mut end = JournalEnd {
        file: bytes.len() as u64,
        ..JournalEnd::default()
    };
    let mut at = 0usize;
    while let Some(nl) = bytes[at..].iter().position(|b| *b == b'\n') {
        let line = &bytes[at..at + nl];
        match serde_json::from_slice::<JournalRecord>(line) {
            Ok(r) if Some(r.generation) == data.generation.checked_add(1) => r.apply(data),
            _ => break,
        }
        at += nl + 1;
        end.good = at as u64;
        end.lines += 1;
    }
    end
}

/// A network's state directory.
#[derive(Debug, Clone)]
pub struct NodeState {
    dir: PathBuf,
    lock_timeout: Duration,
}

/// The state, locked: read on [`NodeState::lock`], written by [`StateGuard::commit`], unlocked
/// on drop.
#[derive(Debug)]
pub struct StateGuard {
    lock: File,
    dir: PathBuf,
    /// The document as read under the lock; change it, then [`StateGuard::commit`].
    pub data: StateData,
    journal: JournalEnd,
}

fn io_error(op: &str, path: &Path, e: &io::Error) -> CniError {
    CniError::io(format!("node state: {op} {}: {e}", path.display()))
}

impl NodeState {
    /// The state in `dir` (created when missing, on first lock).
    pub fn new(dir: impl Into<PathBuf>, lock_timeout: Duration) -> NodeState {
        NodeState {
            dir: dir.into(),
            lock_timeout,
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Take the exclusive lock (waiting at most the timeout: CNI error 11) and read the
    /// document (code 5 on I/O errors, [`CODE_STATE_CORRUPT`] when it does not decode).
    pub fn lock(&self) -> Result<StateGuard, CniError> {
        fs::create_dir_all(&self.dir).map_err(|e| io_error("create", &self.dir, &e))?;
        let lock_path = self.dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| io_error("open", &lock_path, &e))?;
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match lock.try_lock_exclusive() {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(io_error("lock", &lock_path, &e)),
            }
            let waited = started.elapsed();
            if waited >= self.lock_timeout {
                return Err(CniError::new(
                    ErrorCode::TryAgainLater,
                    "node state is busy: try again later",
                )
                .with_details(format!(
                    "lock {} still held by another process after {} ms",
                    lock_path.display(),
                    waited.as_millis()
                )));
            }
            std::thread::sleep(pause.min(self.lock_timeout - waited));
            pause = (pause * 2).min(Duration::from_millis(10));
        }
        self.remove_stray_temps();
        let (data, journal) = self.read_with_journal()?;
        Ok(StateGuard {
            lock,
            dir: self.dir.clone(),
            data,
            journal,
        })
    }

    /// Read the document without the lock (a consistent snapshot: the document is replaced
    /// by atomic renames, the journal only grows between them, and it is read first, so a
    /// rewrite in between leaves its lines unused rather than half-applied).
    pub fn read(&self) -> Result<StateData, CniError> {
        self.read_with_journal().map(|(data, _)| data)
    }

    fn read_with_journal(&self) -> Result<(StateData, JournalEnd), CniError> {
        let jpath = self.dir.join(JOURNAL_FILE);
        let journal = match fs::read(&jpath) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_error("read", &jpath, &e)),
        };
        let mut data = self.read_document()?;
        let end = replay(&mut data, &journal);
        Ok((data, end))
    }

    fn read_document(&self) -> Result<StateData, CniError> {
        let path = self.dir.join(STATE_FILE);
        match fs::read(&path) {
            // A volatile commit that a power loss cut short: the last durable document.
            Ok(bytes) if bytes.is_empty() || bytes.contains(&0) => {
                let durable = self.dir.join(DURABLE_FILE);
                match fs::read(&durable) {
                    Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                        CniError::new(
                            ErrorCode::Other(CODE_STATE_CORRUPT),
                            "node state is unusable",
                        )
                        .with_details(format!("{}: {e}", durable.display()))
                    }),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(StateData::default()),
                    Err(e) => Err(io_error("read", &durable, &e)),
                }
            }
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                CniError::new(
                    ErrorCode::Other(CODE_STATE_CORRUPT),
                    "node state is unusable",
                )
                .with_details(format!("{}: {e}", path.display()))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(StateData::default()),
            Err(e) => Err(io_error("read", &path, &e)),
        }
    }

    fn remove_stray_temps(&self) {
        if let Ok(rd) = fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }
}

impl StateGuard {
    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write the document atomically and durably (temp file, fsync, rename; the same inode
    /// becomes [`DURABLE_FILE`]). For operator data (policies, labels).
    pub fn commit(&mut self) -> Result<(), CniError> {
        self.write(true)
    }

    /// Write the document atomically without `fsync` (see the module documentation: safe
    /// under `kill -9`; after a power loss the last durable document is read instead).
    pub fn commit_volatile(&mut self) -> Result<(), CniError> {
        self.write(false)
    }

    /// Commit, volatile like [`StateGuard::commit_volatile`], when the only change since the
    /// last commit is the record of attachment `(container_id, ifname)` (inserted, changed
    /// or removed) and the network's mode, table and node name: one journal line (a few
    /// microseconds), or the whole document after [`COMPACT_AFTER`] lines. Any other change
    /// must be committed with [`StateGuard::commit_volatile`] or [`StateGuard::commit`].
    pub fn commit_endpoint(&mut self, container_id: &str, ifname: &str) -> Result<(), CniError> {
        if self.journal.lines >= COMPACT_AFTER {
            return self.write(false);
        }
        self.data.generation += 1;
        let rec = JournalRecord::of_endpoint(&self.data, container_id, ifname);
        self.append(&rec).map_err(|e| {
            self.data.generation -= 1;
            io_error("append", &self.dir.join(JOURNAL_FILE), &e)
        })
    }

    fn write(&mut self, durable: bool) -> Result<(), CniError> {
        self.data.generation += 1;
        self.write_document(durable)?;
        // The journal's lines are older than the document now: empty it (a reader that
        // still finds them skips them by generation).
        if self.journal.file > 0 {
            let jpath = self.dir.join(JOURNAL_FILE);
            OpenOptions::new()
                .write(true)
                .open(&jpath)
                .and_then(|f| f.set_len(0))
                .map_err(|e| io_error("truncate", &jpath, &e))?;
        }
        self.journal = JournalEnd::default();
        Ok(())
    }

    /// Append one line after the journal's good lines (overwriting a torn or stale tail).
    fn append(&mut self, rec: &JournalRecord) -> io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        let mut line = serde_json::to_vec(rec).map_err(io::Error::other)?;
        line.push(b'\n');
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.dir.join(JOURNAL_FILE))?;
        if self.journal.file > self.journal.good {
            f.set_len(self.journal.good)?;
        }
        f.write_all_at(&line, self.journal.good)?;
        self.journal.good += line.len() as u64;
        self.journal.file = self.journal.good;
        self.journal.lines += 1;
        Ok(())
    }

    fn write_document(&mut self, durable: bool) -> Result<(), CniError> {
        let bytes = serde_json::to_vec(&self.data)
            .map_err(|e| CniError::io(format!("node state: encode: {e}")))?;
        let tmp = self.dir.join(format!("{TMP_PREFIX}{}", std::process::id()));
        let path = self.dir.join(STATE_FILE);
        let written = (|| -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            if durable {
                f.sync_all()?;
                // The fsynced inode under a second name, replaced atomically too.
                let dtmp = self
                    .dir
                    .join(format!("{TMP_PREFIX}d.{}", std::process::id()));
                let _ = fs::remove_file(&dtmp);
                fs::hard_link(&tmp, &dtmp)?;
                fs::rename(&dtmp, self.dir.join(DURABLE_FILE))?;
            }
            fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            self.data.generation -= 1;
            return Err(io_error("write", &path, &e));
        }
        Ok(())
    }
}

impl Drop for StateGuard {
    fn drop(&mut self) {
        let _ = fs4::fs_std::FileExt::unlock(&self.lock);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rec(cid: &str) -> EndpointRecord {
        EndpointRecord {
            container_id: cid.into(),
            ifname: "eth0".into(),
            netns: "/var/run/netns/x".into(),
            host_ifname: cnet_route::host_ifname(cid, "eth0"),
            addresses: vec!["10.0.0.2/32".parse().unwrap()],
            namespace: "default".into(),
            name: cid.into(),
            labels: BTreeMap::new(),
            labels_known: true,
            mode: "transparent".into(),
            phase: Phase::Pending,
            ports: Vec::new(),
        }
    }

    #[test]
    fn commit_and_read_back_in_order() {
        let d = tempfile::tempdir().unwrap();
        let s = NodeState::new(d.path().join("net"), Duration::from_secs(1));
        {
            let mut g = s.lock().unwrap();
            g.data.upsert_endpoint(rec("b"));
            g.data.upsert_endpoint(rec("a"));
            g.commit().unwrap();
        }
        let data = s.read().unwrap();
        assert_eq!(data.generation, 1);
        assert_eq!(data.endpoints[0].container_id, "a");
        let mut g = s.lock().unwrap();
        assert!(g.data.remove_endpoint("a", "eth0").is_some());
        assert!(g.data.remove_endpoint("a", "eth0").is_none());
        g.commit().unwrap();
        drop(g);
        assert_eq!(s.read().unwrap().endpoints.len(), 1);
    }

    #[test]
    fn lock_wait_is_bounded_with_code_11() {
        let d = tempfile::tempdir().unwrap();
        let s = NodeState::new(d.path(), Duration::from_millis(30));
        let held = s.lock().unwrap();
        let e = s.lock().unwrap_err();
        assert_eq!(e.code, ErrorCode::TryAgainLater);
        drop(held);
        assert!(s.lock().is_ok());
    }

    #[test]
    fn corrupt_document_is_reported_and_stray_temps_removed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(STATE_FILE), b"{not json").unwrap();
        std::fs::write(d.path().join(format!("{TMP_PREFIX}77")), b"x").unwrap();
        let s = NodeState::new(d.path(), Duration::from_secs(1));
        let e = s.lock().unwrap_err();
        assert_eq!(e.code, ErrorCode::Other(CODE_STATE_CORRUPT));
        assert!(!d.path().join(format!("{TMP_PREFIX}77")).exists());
    }

    #[test]
    fn volatile_commit_lost_to_power_loss_reads_the_durable_document() {
        let d = tempfile::tempdir().unwrap();
        let s = NodeState::new(d.path(), Duration::from_secs(1));
        let mut g = s.lock().unwrap();
        g.data.upsert_endpoint(rec("durable"));
        g.commit().unwrap();
        g.data.upsert_endpoint(rec("volatile"));
        g.commit_endpoint("volatile", "eth0").unwrap();
        drop(g);
        assert_eq!(s.read().unwrap().endpoints.len(), 2);
        assert_eq!(s.read().unwrap().generation, 2);
        // What a power loss can leave of an unsynced rename or append: empty, or
        // zero-filled blocks.
        for torn in [&b""[..], &[0u8; 64][..], &b"{\"generation\": 2, \0\0\0"[..]] {
            // A new inode (the durable document is a hard link to the old one).
            let _ = std::fs::remove_file(d.path().join(STATE_FILE));
            std::fs::write(d.path().join(STATE_FILE), torn).unwrap();
            std::fs::write(d.path().join(JOURNAL_FILE), torn).unwrap();
            let data = s.read().unwrap();
            assert_eq!(data.generation, 1);
            assert_eq!(data.endpoints.len(), 1);
            assert_eq!(data.endpoints[0].container_id, "durable");
            assert_eq!(s.lock().unwrap().data, data);
        }
        // Nothing durable yet: an empty state.
        let e = tempfile::tempdir().unwrap();
        std::fs::write(e.path().join(STATE_FILE), b"").unwrap();
        let s = NodeState::new(e.path(), Duration::from_secs(1));
        assert_eq!(s.read().unwrap(), StateData::default());
    }

    #[test]
    fn volatile_endpoint_commits_append_to_the_journal() {
        let d = tempfile::tempdir().unwrap();
        let s = NodeState::new(d.path(), Duration::from_secs(1));
        let mut g = s.lock().unwrap();
        g.data.upsert_endpoint(rec("a"));
        g.commit().unwrap();
        let document = std::fs::read(d.path().join(STATE_FILE)).unwrap();
        g.data.upsert_endpoint(rec("b"));
        g.commit_endpoint("b", "eth0").unwrap();
        g.data.endpoint_mut("b", "eth0").unwrap().phase = Phase::Ready;
        g.data.mode = "bridge".into();
        g.commit_endpoint("b", "eth0").unwrap();
        g.data.remove_endpoint("a", "eth0");
        g.commit_endpoint("a", "eth0").unwrap();
        // The document is untouched; the journal holds three lines.
        assert_eq!(std::fs::read(d.path().join(STATE_FILE)).unwrap(), document);
        let journal = std::fs::read(d.path().join(JOURNAL_FILE)).unwrap();
        assert_eq!(journal.iter().filter(|b| **b == b'\n').count(), 3);
        let want = g.data.clone();
        drop(g);
        assert_eq!(s.read().unwrap(), want);
        assert_eq!(want.generation, 4);
        // A torn last line (a killed append) is ignored, then overwritten.
        std::fs::write(d.path().join(JOURNAL_FILE), &journal[..journal.len() - 5]).unwrap();
        let mut g = s.lock().unwrap();
        assert_eq!(g.data.generation, 3);
        assert!(g.data.endpoint("a", "eth0").is_some());
        g.data.remove_endpoint("a", "eth0");
        g.commit_endpoint("a", "eth0").unwrap();
        drop(g);
        let back = s.read().unwrap();
        assert_eq!(back.generation, 4);
        assert_eq!(back.endpoints.len(), 1);
        // A policy change rewrites the document and empties the journal; old lines that
        // survive (an undone truncation) do not follow its generation and are skipped.
        let mut g = s.lock().unwrap();
        g.data.upsert_policy(StoredPolicy {
            kind: "NetworkPolicy".into(),
            namespace: "ns".into(),
            name: "p".into(),
            object: serde_json::json!({}),
        });
        g.commit_volatile().unwrap();
        let want = g.data.clone();
        drop(g);
        assert_eq!(
            std::fs::metadata(d.path().join(JOURNAL_FILE))
                .unwrap()
                .len(),
            0
        );
        std::fs::write(d.path().join(JOURNAL_FILE), &journal).unwrap();
        assert_eq!(s.read().unwrap(), want);
    }

    #[test]
    fn journal_is_compacted_into_the_document() {
        let d = tempfile::tempdir().unwrap();
        let s = NodeState::new(d.path(), Duration::from_secs(1));
        let mut g = s.lock().unwrap();
        for i in 0..COMPACT_AFTER + 3 {
            g.data.upsert_endpoint(rec(&format!("c{i}")));
            g.commit_endpoint(&format!("c{i}"), "eth0").unwrap();
        }
        let want = g.data.clone();
        drop(g);
        let lines = std::fs::read(d.path().join(JOURNAL_FILE))
            .unwrap()
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        assert_eq!(lines, 2);
        let doc: StateData =
            serde_json::from_slice(&std::fs::read(d.path().join(STATE_FILE)).unwrap()).unwrap();
        assert_eq!(doc.endpoints.len(), COMPACT_AFTER + 1);
        assert_eq!(s.read().unwrap(), want);
        assert_eq!(s.lock().unwrap().data, want);
    }

    #[test]
    fn pod_labels_set_remove_and_apply() {
        let mut data = StateData::default();
        data.record_pod_labels(
            "ns",
            "p",
            &[("a".into(), Some("1".into())), ("b".into(), None)],
        );
        data.record_pod_labels(
            "ns",
            "p",
            &[("a".into(), None), ("c".into(), Some("3".into()))],
        );
        assert!(data.pod_label_override("ns", "q").is_none());
        let o = data.pod_label_override("ns", "p").unwrap();
        let mut labels = BTreeMap::from([
            ("a".to_string(), "0".to_string()),
            ("b".to_string(), "0".to_string()),
        ]);
        o.apply(&mut labels);
        assert_eq!(labels, BTreeMap::from([("c".to_string(), "3".to_string())]));
        // Kept through an encode/decode round trip; absent when empty.
        let back: StateData = serde_json::from_slice(&serde_json::to_vec(&data).unwrap()).unwrap();
        assert_eq!(back, data);
        let empty = serde_json::to_string(&StateData::default()).unwrap();
        assert!(!empty.contains("podLabels") && !empty.contains("pod_labels"));
    }

    #[test]
    fn policies_upsert_replace_remove() {
        let mut data = StateData::default();
        let p = |n: &str, v: i32| StoredPolicy {
            kind: "NetworkPolicy".into(),
            namespace: "ns".into(),
            name: n.into(),
            object: serde_json::json!({"v": v}),
        };
        assert!(data.upsert_policy(p("b", 1)));
        assert!(data.upsert_policy(p("a", 1)));
        assert!(!data.upsert_policy(p("a", 1)));
        assert!(data.upsert_policy(p("a", 2)));
        assert_eq!(data.policies.len(), 2);
        assert_eq!(data.policies[0].name, "a");
        assert!(data.remove_policy("NetworkPolicy", "ns", "a").is_some());
        assert_eq!(data.policies.len(), 1);
    }
}
