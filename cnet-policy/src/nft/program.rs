//! The IO shell: writes change lists to the kernel over netlink (nftnl + mnl), one atomic
//! batch per call, and keeps our tables equal to the desired IR across outside interference.
//!
//! # Transport
//! The whole batch goes out in **one** `sendmsg` (all batch pages as iovecs) after the socket's
//! send and receive buffers are enlarged to fit it and one ACK per message (as `nft` does;
//! page-by-page sends fail for large batches). Only the last message (and the batch begin/end
//! messages, which kernels >= 6.10 acknowledge) asks for an ACK: the kernel reports every
//! failing message anyway and sends all replies after processing the whole batch, so the last
//! ACK marks the outcome as known without one datagram per message. Replies are matched to
//! messages by sequence number. The kernel processes a batch synchronously inside
//! `sendmsg`, so all replies are queued when it returns. A rejected batch leaves nothing
//! behind (the kernel aborts the whole transaction) and yields [`NftError::Rejected`] naming
//! each failing change. ENOBUFS on receive, or missing ACKs, mean the batch may or may not have
//! committed: [`NftError::UnknownOutcome`], and the next [`Programmer::sync`] replaces our
//! tables whole.
//!
//! # Reconcile (detecting that someone touched our tables)
//! We chose a cheap netlink check over reading rules back through the `nft` binary:
//! 1. the ruleset **generation** (`NFT_MSG_GETGEN`, one round trip) is compared with the one
//!    recorded right after our own last commit; if nobody committed since, nothing changed;
//! 2. otherwise a **snapshot** of our tables is dumped — the table handle and the handles of
//!    every chain, set and rule, plus each set's element count — and compared with the snapshot
//!    expected from our last commit. A table deleted (`nft flush ruleset`, `delete table`) or
//!    recreated (new handle), a chain flushed (rules gone), a rule added, replaced or deleted, a
//!    set deleted or its elements added/removed by someone else all show up there;
//! 3. any difference (or an earlier unknown outcome/failure) makes the next sync an atomic full
//!    replacement of each of our tables (`add table; delete table; add table ...` in one batch).
//!
//! # Cost of a full replacement (measured at 10k pods x 1k policies)
//! The kernel finds the set of every `lookup` expression and element message by walking the
//! table's list of sets, so sets are created most-looked-up first; element attributes are
//! encoded without per-element allocations; after the commit only the table handle is read
//! back (the other handles are predicted, see `predicted_snapshot`). For large rulesets the
//! side work (validation, rule messages, the model copy, freeing messages) runs on helper
//! threads, overlapping the kernel's commit inside our `sendmsg`.
//!
//! Not detected: someone replacing an element by a different one in the same commit (equal
//! count) without touching anything else. Other users' commits to *other* tables only cost
//! the snapshot dump on the next sync.

use std::collections::BTreeMap;
use std::io;

use nftnl::{Batch, MsgType};

use super::NftError;
use super::diff::{Change, ChangeList, diff};
use super::ir::{Chain, Expr, MatchOp, Rule, Ruleset, Set, SetDecl, Table, TableId};
use super::sys::socket::{self, NlSocket, RecvBuf, ReqBuf};
use super::sys::{self, Msg, Parsed, family_number};
use super::validate::validate;

/// Kernel view of one of our tables, used to detect outside changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableSnapshot {
    /// Table handle (changes when the table is deleted and recreated).
    pub handle: u64,
    /// Chain name → handle.
    pub chains: BTreeMap<String, u64>,
    /// Set name → handle.
    pub sets: BTreeMap<String, u64>,
    /// (chain, rule handle) in dump order.
    pub rules: Vec<(String, u64)>,
    /// Set name → number of kernel elements (interval sets count start and end elements).
    pub elements: BTreeMap<String, usize>,
}

/// What a [`Programmer::sync`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// Nothing to do: the kernel already held the desired state.
    NoChange,
    /// A diff against the programmed state was applied.
    Incremental,
    /// Our tables were replaced whole (first sync, or drift / unknown outcome detected).
    Full,
}

/// Result of one sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    /// What kind of batch was sent.
    pub kind: SyncKind,
    /// Number of IR-level changes in it.
    pub changes: usize,
    /// Whether outside changes to our tables were detected.
    pub drift: bool,
}

/// Programs nftables in the network namespace of the thread that created it. Owns only the
/// tables of the rulesets passed to [`Programmer::sync`].
pub struct Programmer {
    sock: NlSocket,
    seq: u32,
    programmed: Option<Ruleset>,
    expected_gen: Option<u32>,
    snapshots: BTreeMap<TableId, TableSnapshot>,
    /// Every table this programmer has created and not yet deleted; survives `forget`, so a
    /// full replacement after a failure still removes tables no longer desired.
    owned: std::collections::BTreeSet<TableId>,
}

impl std::fmt::Debug for Programmer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Programmer")
            .field("portid", &self.sock.portid())
            .field(
                "programmed_tables",
                &self.programmed.as_ref().map(|r| r.tables.len()),
            )
            .field("expected_gen", &self.expected_gen)
            .finish()
    }
}

fn open_socket() -> Result<NlSocket, NftError> {
    NlSocket::open().map_err(|(op, source)| NftError::Socket { op, source })
}

fn sock_err(op: &'static str) -> impl FnOnce(io::Error) -> NftError {
    move |source| NftError::Socket { op, source }
}

/// Page size of batches: big pages, few iovecs.
const BATCH_PAGE: u32 = 1 << 20;

/// Outcome of reading one reply datagram.
enum Reply {
    /// No datagram queued (non-blocking read).
    Empty,
    /// Parsed messages: (seq, errno or 0 for ACK) for NLMSG_ERROR, data messages, done flag.
    Msgs {
        acks: Vec<(u32, i32)>,
        data: Vec<Parsed>,
        done: bool,
    },
}

impl Programmer {
    /// Open a netfilter netlink socket in the calling thread's network namespace. The
    /// programmer starts with an unknown programmed state: its first sync replaces our tables.
    pub fn new() -> Result<Programmer, NftError> {
        Ok(Programmer {
            sock: open_socket()?,
            seq: 0x4000_0000,
            programmed: None,
            expected_gen: None,
            snapshots: BTreeMap::new(),
            owned: std::collections::BTreeSet::new(),
        })
    }

    /// The ruleset last programmed successfully, if its state is known.
    pub fn programmed(&self) -> Option<&Ruleset> {
        self.programmed.as_ref()
    }

    /// The snapshot of our table `id` recorded after our last commit (what the next drift
    /// check compares a fresh [`Programmer::snapshot`] with, once someone else committed).
    pub fn recorded_snapshot(&self, id: &TableId) -> Option<&TableSnapshot> {
        self.snapshots.get(id)
    }

    /// Forget what is programmed: the next sync replaces our tables whole.
    pub fn forget(&mut self) {
        self.programmed = None;
        self.expected_gen = None;
        self.snapshots.clear();
    }

    /// Bring our tables to `desired` in one atomic batch: a diff when the kernel still holds
    /// what we programmed, a full replacement otherwise (first call, drift, unknown outcome,
    /// earlier failure). Tables we programmed before but that `desired` lacks are deleted.
    pub fn sync(&mut self, desired: &Ruleset) -> Result<SyncReport, NftError> {
        // Before a large full replacement `desired` is validated on a helper thread while the
        // drift check and the batch are prepared; nothing is sent before it passed, and its
        // error comes first.
        std::thread::scope(|s| {
            // Only ahead of a certain full replacement (nothing programmed yet): a diff sync
            // keeps its latency on the calling thread.
            let replacing = self.programmed.is_none();
            let helper = (replacing && worth_a_thread(desired)).then(|| {
                std::thread::Builder::new()
                    .name("nft-validate".into())
                    .spawn_scoped(s, || validate(desired))
                    .ok()
            });
            let mut check = Some(helper.flatten());
            let mut validated = move || match check.take() {
                Some(Some(h)) => match h.join() {
                    Ok(r) => r,
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                Some(None) => validate(desired),
                None => Ok(()),
            };
            let r = self.sync_validating(desired, &mut validated);
            // An early error (the drift check's) still yields the validation error first.
            validated()?;
            r
        })
    }

    /// [`Programmer::sync`] once `validated` (which must be called before anything is sent)
    /// passes.
    fn sync_validating(
        &mut self,
        desired: &Ruleset,
        validated: &mut dyn FnMut() -> Result<(), NftError>,
    ) -> Result<SyncReport, NftError> {
        let drift = match self.detect_drift() {
            Ok(d) => d,
            Err(e) => {
                validated()?;
                return Err(e);
            }
        };
        let changes = match (&self.programmed, drift) {
            (Some(old), false) => {
                let c = diff(old, desired);
                validated()?;
                c
            }
            (old, _) => {
                // Full replacement: messages straight from `desired` (no copy of it as a
                // change list), the same batch as `delete_tables(stale) + replace_all`.
                let stale: std::collections::BTreeSet<TableId> = old
                    .iter()
                    .flat_map(|o| o.tables.keys())
                    .chain(self.owned.iter())
                    .filter(|id| !desired.tables.contains_key(*id))
                    .cloned()
                    .collect();
                return self.replace(desired, &stale, drift, validated);
            }
        };
        let kind = if drift || self.programmed.is_none() {
            SyncKind::Full
        } else if changes.is_empty() {
            SyncKind::NoChange
        } else {
            SyncKind::Incremental
        };
        if changes.is_empty() {
            return Ok(SyncReport {
                kind,
                changes: 0,
                drift,
            });
        }
        let gen_before = self.expected_gen;
        self.owned.extend(desired.tables.keys().cloned());
        if let Err(e) = self.apply(&changes) {
            self.forget();
            return Err(e);
        }
        // Keep the model of what is programmed: patch it for incremental batches (cheap for
        // one pod among 10k).
        match (&mut self.programmed, kind) {
            (Some(model), SyncKind::Incremental) => changes.apply_to(model),
            _ => self.programmed = Some(desired.clone()),
        }
        debug_assert_eq!(self.programmed.as_ref(), Some(desired));
        self.owned = desired.tables.keys().cloned().collect();
        self.after_commit(desired, Some(&changes), gen_before)?;
        Ok(SyncReport {
            kind,
            changes: changes.changes.len(),
            drift,
        })
    }

    /// Apply an element-only change list computed against what this programmer last
    /// programmed (the engine's incremental path), `desired` being the state after it.
    /// Costs `O(changes · log n)`: no validation or diff of the whole ruleset (the elements
    /// come from the compiler's own membership rules). When the programmed state is unknown,
    /// the list is not element-only, or the kernel drifted, this is [`Programmer::sync`]
    /// of `desired` instead.
    pub fn sync_elements(
        &mut self,
        changes: &ChangeList,
        desired: &Ruleset,
    ) -> Result<SyncReport, NftError> {
        if self.programmed.is_none() || !changes.is_elements_only() || self.detect_drift()? {
            return self.sync(desired);
        }
        if changes.is_empty() {
            return Ok(SyncReport {
                kind: SyncKind::NoChange,
                changes: 0,
                drift: false,
            });
        }
        let gen_before = self.expected_gen;
        if let Err(e) = self.apply(changes) {
            self.forget();
            return Err(e);
        }
        if let Some(model) = &mut self.programmed {
            changes.apply_to(model);
        }
        self.after_commit(desired, Some(changes), gen_before)?;
        Ok(SyncReport {
            kind: SyncKind::Incremental,
            changes: changes.changes.len(),
            drift: false,
        })
    }

    /// Replace our tables whole with `desired` and delete the `stale` ones, in one batch
    /// built straight from `desired`.
    fn replace(
        &mut self,
        desired: &Ruleset,
        stale: &std::collections::BTreeSet<TableId>,
        drift: bool,
        validated: &mut dyn FnMut() -> Result<(), NftError>,
    ) -> Result<SyncReport, NftError> {
        let (msgs, n) = full_msgs(stale, desired);
        validated()?;
        if msgs.is_empty() {
            return Ok(SyncReport {
                kind: SyncKind::Full,
                changes: 0,
                drift,
            });
        }
        let gen_before = self.expected_gen;
        self.owned.extend(desired.tables.keys().cloned());
        // The model of what is programmed is a copy of `desired`, made on a helper thread
        // while the kernel commits the batch (the commit runs inside our `sendmsg`); the
        // batch's messages are freed on another while the snapshot is read back. For small
        // rulesets (below PARALLEL_MIN) or when a thread cannot be spawned, both happen inline.
        std::thread::scope(|s| {
            let threads = worth_a_thread(desired);
            let copy = threads
                .then(|| {
                    std::thread::Builder::new()
                        .name("nft-model".into())
                        .spawn_scoped(s, || desired.clone())
                        .ok()
                })
                .flatten();
            let sent = self.send_batch(&msgs);
            let objs: Vec<Msg> = msgs.into_iter().map(|(m, _)| m).collect();
            if threads {
                // On spawn failure the closure, and with it the messages, are dropped here.
                let _ = std::thread::Builder::new()
                    .name("nft-free".into())
                    .spawn_scoped(s, move || drop(objs));
            } else {
                drop(objs);
            }
            if let Err(e) = sent {
                self.forget();
                return Err(e);
            }
            let model = copy
                .and_then(|h| h.join().ok())
                .unwrap_or_else(|| desired.clone());
            self.programmed = Some(model);
            self.owned = desired.tables.keys().cloned().collect();
            self.after_commit(desired, None, gen_before)?;
            Ok(SyncReport {
                kind: SyncKind::Full,
                changes: n,
                drift,
            })
        })
    }

    /// Record generation and snapshots after a successful commit of ours (`changes`: the
    /// change list sent, `None` for a full replacement).
    fn after_commit(
        &mut self,
        desired: &Ruleset,
        changes: Option<&ChangeList>,
        gen_before: Option<u32>,
    ) -> Result<(), NftError> {
        let gen_after = self.generation()?;
        let elements_only = changes.filter(|c| c.is_elements_only());
        if let (Some(changes), Some(_)) = (elements_only, gen_before) {
            // Element-only commit: handles are unchanged; the counts of the touched sets
            // follow the IR.
            for c in &changes.changes {
                if let Change::AddElements { table, decl, .. }
                | Change::DeleteElements { table, decl, .. } = c
                    && let (Some(snap), Some(set)) = (
                        self.snapshots.get_mut(table),
                        desired
                            .tables
                            .get(table)
                            .and_then(|t| t.sets.get(&decl.name)),
                    )
                {
                    snap.elements
                        .insert(decl.name.clone(), sys::kernel_element_count(set));
                }
            }
        } else if changes.is_none() {
            // Full replacement: every table was created afresh by the batch, so its chain,
            // set and rule handles are the kernel's per-table counter in our message order
            // (`full_msgs`); only the table handle is read back. (Were a prediction wrong,
            // the next foreign commit would make us see drift and replace our tables once
            // more: slower, still correct. The test `full_replacement_snapshot_is_predicted`
            // compares it with a dump.)
            self.snapshots.clear();
            for (id, t) in &desired.tables {
                let snap = match self.table_handle(id)? {
                    Some(handle) => predicted_snapshot(handle, t),
                    None => TableSnapshot::default(),
                };
                self.snapshots.insert(id.clone(), snap);
            }
        } else {
            self.snapshots.clear();
            for (id, t) in &desired.tables {
                let snap = self.snapshot_of(id, Some(t))?.unwrap_or_default();
                self.snapshots.insert(id.clone(), snap);
            }
        }
        // Only our own commit happened in between: keep the fast path. Otherwise force a
        // snapshot comparison on the next sync.
        self.expected_gen = match gen_before {
            Some(g) if g.wrapping_add(1) == gen_after => Some(gen_after),
            None => Some(gen_after),
            _ => None,
        };
        Ok(())
    }

    /// Whether the kernel no longer holds what we programmed (or we do not know what it holds).
    fn detect_drift(&mut self) -> Result<bool, NftError> {
        let Some(programmed) = &self.programmed else {
            return Ok(false);
        };
        let ids: Vec<TableId> = programmed.tables.keys().cloned().collect();
        let gen_now = self.generation()?;
        if self.expected_gen == Some(gen_now) {
            return Ok(false);
        }
        for id in &ids {
            let now = self.snapshot(id)?;
            if now.as_ref() != self.snapshots.get(id) {
                return Ok(true);
            }
        }
        self.expected_gen = Some(gen_now);
        Ok(false)
    }

    /// Apply a change list as one atomic batch. Does not update the programmed state; use
    /// [`Programmer::sync`] for that.
    pub fn apply(&mut self, changes: &ChangeList) -> Result<(), NftError> {
        let mut msgs: Vec<(Msg, Desc<'_>)> = Vec::with_capacity(changes.changes.len());
        let mut set_id = 1u32;
        for c in &changes.changes {
            let d = Desc::Change(c);
            match c {
                Change::AddTable(t) => msgs.push((sys::table(t, true), d)),
                Change::DeleteTable(t) => msgs.push((sys::table(t, false), d)),
                Change::AddChain { table, name, kind } => {
                    msgs.push((sys::add_chain(table, name, *kind), d));
                }
                Change::FlushChain { table, chain } => {
                    msgs.push((sys::flush_chain(table, chain), d))
                }
                Change::DeleteChain { table, chain } => {
                    msgs.push((sys::delete_chain(table, chain), d));
                }
                Change::AddSet { table, decl } => {
                    msgs.push((sys::set(table, decl, true, set_id), d));
                    set_id += 1;
                }
                Change::DeleteSet { table, decl } => {
                    msgs.push((sys::set(table, decl, false, 0), d))
                }
                Change::AddElements {
                    table,
                    decl,
                    elements,
                } => msgs.extend(
                    sys::elems(table, decl, elements.iter().map(|(e, v)| (e, v)), true)
                        .into_iter()
                        .map(|m| (m, d)),
                ),
                Change::DeleteElements {
                    table,
                    decl,
                    elements,
                } => msgs.extend(
                    sys::elems(table, decl, elements.iter().map(|(e, v)| (e, v)), false)
                        .into_iter()
                        .map(|m| (m, d)),
                ),
                Change::AddRule { table, chain, rule } => {
                    msgs.push((sys::rule(table, chain, rule), d))
                }
            }
        }
        if msgs.is_empty() {
            return Ok(());
        }
        self.send_batch(&msgs)
    }

    fn send_batch(&mut self, msgs: &[(Msg, Desc<'_>)]) -> Result<(), NftError> {
        let mut batch = Batch::with_page_size(BATCH_PAGE);
        // Only the last message asks for an ACK: failing messages are reported anyway, and
        // the kernel sends every reply after the whole batch is processed (committed or
        // aborted), so the last ACK tells the outcome is known.
        let last = msgs.len().saturating_sub(1);
        for (i, (m, _)) in msgs.iter().enumerate() {
            if i == last {
                batch.add(m, MsgType::Add);
            } else {
                batch.add(&sys::Quiet(m), MsgType::Add);
            }
        }
        let batch = batch.finalize();
        let seqs = batch.sequence_numbers();
        // With kernels >= 6.10 the batch begin/end messages are ACKed too.
        let n_seqs = seqs.end.wrapping_sub(seqs.start) as usize;
        let first_msg_seq = if n_seqs == msgs.len() + 2 {
            seqs.start + 1
        } else {
            seqs.start
        };
        let pages: Vec<&[u8]> = batch.iter().collect();
        let total: usize = pages.iter().map(|p| p.len()).sum();
        self.drain()?;
        self.sock
            .size_for_batch(total, n_seqs)
            .map_err(|(op, source)| NftError::Socket { op, source })?;
        let sent = self
            .sock
            .send_pages(&pages)
            .map_err(sock_err("sendmsg (batch)"))?;
        if sent != total {
            return Err(NftError::UnknownOutcome {
                reason: format!("sendmsg sent {sent} of {total} bytes"),
            });
        }

        let quiet = first_msg_seq..first_msg_seq.wrapping_add(last as u32);
        let mut pending: std::collections::BTreeSet<u32> =
            seqs.clone().filter(|s| !quiet.contains(s)).collect();
        let mut errors: Vec<(u32, i32)> = Vec::new();
        let mut buf = RecvBuf::new(1 << 16);
        let mut waited = false;
        while !pending.is_empty() {
            match self.recv(&mut buf, !waited) {
                Ok(Reply::Empty) => {
                    if waited {
                        break;
                    }
                    waited = true;
                    self.sock.wait_readable(2000).map_err(sock_err("poll"))?;
                }
                Ok(Reply::Msgs { acks, .. }) => {
                    waited = false;
                    for (seq, errno) in acks {
                        pending.remove(&seq);
                        if errno != 0 {
                            errors.push((seq, errno));
                        }
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.reopen();
                    return Err(NftError::UnknownOutcome {
                        reason: "ENOBUFS while reading the batch ACKs".into(),
                    });
                }
                Err(e) => {
                    self.reopen();
                    return Err(NftError::UnknownOutcome {
                        reason: format!("reading the batch ACKs: {e}"),
                    });
                }
            }
        }
        if !errors.is_empty() {
            let errno = errors[0].1;
            let lines = errors
                .iter()
                .map(|(seq, errno)| {
                    let what = seq
                        .checked_sub(first_msg_seq)
                        .and_then(|i| msgs.get(i as usize))
                        .map(|(_, d)| {
                            let mut s = d.to_string();
                            if s.len() > 200 {
                                let cut = (0..=200)
                                    .rev()
                                    .find(|i| s.is_char_boundary(*i))
                                    .unwrap_or(0);
                                s.truncate(cut);
                                s.push_str(" ...");
                            }
                            s
                        })
                        .unwrap_or_else(|| format!("batch message seq {seq}"));
                    format!("{what}: {}", io::Error::from_raw_os_error(*errno))
                })
                .collect();
            return Err(NftError::Rejected {
                errors: lines,
                errno,
            });
        }
        if !pending.is_empty() {
            self.reopen();
            return Err(NftError::UnknownOutcome {
                reason: format!("{} of {} ACKs missing", pending.len(), n_seqs),
            });
        }
        Ok(())
    }

    /// Read one datagram (non-blocking when `nonblock`) and sort its messages.
    fn recv(&self, buf: &mut RecvBuf, nonblock: bool) -> io::Result<Reply> {
        let Some(n) = self.sock.recv(buf, nonblock)? else {
            return Ok(Reply::Empty);
        };
        let mut acks = Vec::new();
        let mut data = Vec::new();
        let mut done = false;
        for m in socket::messages(&buf.received()[..n])? {
            match (m.errno, i32::from(m.ty)) {
                (Some(errno), _) => acks.push((m.seq, errno)),
                (None, libc::NLMSG_DONE) => done = true,
                (None, _) => data.extend(sys::parse(m.raw)),
            }
        }
        Ok(Reply::Msgs { acks, data, done })
    }

    /// Discard anything queued (replies to an earlier, abandoned exchange).
    fn drain(&mut self) -> Result<(), NftError> {
        let mut buf = RecvBuf::new(1 << 16);
        loop {
            match self.recv(&mut buf, true) {
                Ok(Reply::Empty) => return Ok(()),
                Ok(_) => {}
                Err(_) => {
                    self.reopen();
                    return Ok(());
                }
            }
        }
    }

    fn reopen(&mut self) {
        if let Ok(s) = open_socket() {
            self.sock = s;
        }
    }

    /// One request; collects data messages until its ACK (or DONE for dumps).
    fn request(
        &mut self,
        msg_type: i32,
        family: u16,
        dump: bool,
        table: Option<&str>,
        what: &str,
    ) -> Result<Result<Vec<Parsed>, i32>, NftError> {
        self.drain()?;
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut req = ReqBuf::new();
        let len = sys::get_request(req.bytes_mut(), msg_type, family, dump, table, seq);
        let bytes = &req.bytes_mut()[..len];
        self.sock.send(bytes).map_err(sock_err("send (request)"))?;
        let mut out = Vec::new();
        let mut buf = RecvBuf::new(1 << 16);
        let rb = |reason: String| NftError::ReadBack {
            what: what.to_string(),
            reason,
        };
        loop {
            match self.recv(&mut buf, false).map_err(|e| rb(e.to_string()))? {
                Reply::Empty => return Err(rb("no reply".into())),
                Reply::Msgs { acks, data, done } => {
                    out.extend(data);
                    for (s, errno) in acks {
                        if s == seq {
                            if errno != 0 {
                                return Ok(Err(errno));
                            }
                            if !dump {
                                return Ok(Ok(out));
                            }
                        }
                    }
                    if done && dump {
                        // The ACK of a dump follows DONE; read it if queued, then stop.
                        let _ = self.recv(&mut buf, true);
                        return Ok(Ok(out));
                    }
                }
            }
        }
    }

    /// The cookie of the network namespace this programmer works in (`None` on kernels
    /// without `SO_NETNS_COOKIE`).
    pub fn netns_cookie(&self) -> Option<u64> {
        self.sock.netns_cookie().ok()
    }

    /// The ruleset generation: it changes with every committed batch, from anyone.
    pub fn generation(&mut self) -> Result<u32, NftError> {
        let r = self.request(
            libc::NFT_MSG_GETGEN,
            libc::AF_UNSPEC as u16,
            false,
            None,
            "generation",
        )?;
        let items = r.map_err(|errno| NftError::ReadBack {
            what: "generation".into(),
            reason: io::Error::from_raw_os_error(errno).to_string(),
        })?;
        items
            .into_iter()
            .find_map(|p| match p {
                Parsed::Gen(g) => Some(g),
                Parsed::Obj { .. } => None,
            })
            .ok_or_else(|| NftError::ReadBack {
                what: "generation".into(),
                reason: "no NEWGEN message in the reply".into(),
            })
    }

    /// Whether a table exists.
    pub fn table_exists(&mut self, id: &TableId) -> Result<bool, NftError> {
        Ok(self.table_handle(id)?.is_some())
    }

    fn table_handle(&mut self, id: &TableId) -> Result<Option<u64>, NftError> {
        let what = format!("table {id}");
        match self.request(
            libc::NFT_MSG_GETTABLE,
            family_number(id.family),
            false,
            Some(&id.name),
            &what,
        )? {
            Err(errno) if errno == libc::ENOENT => Ok(None),
            Err(errno) => Err(NftError::ReadBack {
                what,
                reason: io::Error::from_raw_os_error(errno).to_string(),
            }),
            Ok(items) => Ok(items.into_iter().find_map(|p| match p {
                Parsed::Obj {
                    kind: "table",
                    handle,
                    ..
                } => Some(handle),
                _ => None,
            })),
        }
    }

    fn dump(
        &mut self,
        msg_type: i32,
        id: &TableId,
        kind: &str,
    ) -> Result<Vec<(String, u64)>, NftError> {
        let what = format!("{kind}s of table {id}");
        let fam = u32::from(family_number(id.family));
        match self.request(
            msg_type,
            family_number(id.family),
            true,
            Some(&id.name),
            &what,
        )? {
            Err(errno) if errno == libc::ENOENT => Ok(Vec::new()),
            Err(errno) => Err(NftError::ReadBack {
                what,
                reason: io::Error::from_raw_os_error(errno).to_string(),
            }),
            Ok(items) => Ok(items
                .into_iter()
                .filter_map(|p| match p {
                    Parsed::Obj {
                        kind: k,
                        family,
                        table,
                        name,
                        handle,
                    } if k == kind && family == fam && table == id.name => Some((name, handle)),
                    _ => None,
                })
                .collect()),
        }
    }

    /// Read our table's structure back from the kernel (`None` when the table is gone).
    pub fn snapshot(&mut self, id: &TableId) -> Result<Option<TableSnapshot>, NftError> {
        self.snapshot_of(id, None)
    }

    /// [`Programmer::snapshot`]; with `known`, the table we just committed, element counts
    /// come from its IR instead of dumping every element (the handles are still read). Sound
    /// because the snapshot is only trusted while the generation shows no other commit.
    fn snapshot_of(
        &mut self,
        id: &TableId,
        known: Option<&super::ir::Table>,
    ) -> Result<Option<TableSnapshot>, NftError> {
        let Some(handle) = self.table_handle(id)? else {
            return Ok(None);
        };
        let chains = self
            .dump(libc::NFT_MSG_GETCHAIN, id, "chain")?
            .into_iter()
            .collect();
        let sets: BTreeMap<String, u64> = self
            .dump(libc::NFT_MSG_GETSET, id, "set")?
            .into_iter()
            .collect();
        let rules = self.dump(libc::NFT_MSG_GETRULE, id, "rule")?;
        let mut elements = BTreeMap::new();
        for name in sets.keys() {
            let n = match known.and_then(|t| t.sets.get(name)) {
                Some(set) => sys::kernel_element_count(set),
                None => self.count_elements(id, name)?,
            };
            elements.insert(name.clone(), n);
        }
        Ok(Some(TableSnapshot {
            handle,
            chains,
            sets,
            rules,
            elements,
        }))
    }

    fn count_elements(&mut self, id: &TableId, set: &str) -> Result<usize, NftError> {
        self.drain()?;
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut req = ReqBuf::new();
        let len = sys::get_elems_request(req.bytes_mut(), id, set, seq);
        self.sock
            .send(&req.bytes_mut()[..len])
            .map_err(sock_err("send (element dump)"))?;
        let what = format!("elements of set {set} in table {id}");
        let mut buf = RecvBuf::new(1 << 17);
        let mut count = 0usize;
        loop {
            let n = self
                .sock
                .recv(&mut buf, false)
                .map_err(|e| NftError::ReadBack {
                    what: what.clone(),
                    reason: e.to_string(),
                })?
                .ok_or_else(|| NftError::ReadBack {
                    what: what.clone(),
                    reason: "no reply".into(),
                })?;
            let msgs = socket::messages(&buf.received()[..n]).map_err(|e| NftError::ReadBack {
                what: what.clone(),
                reason: e.to_string(),
            })?;
            for m in msgs {
                match (m.errno, i32::from(m.ty)) {
                    (Some(errno), _) if m.seq == seq && errno != 0 => {
                        return Err(NftError::ReadBack {
                            what,
                            reason: io::Error::from_raw_os_error(errno).to_string(),
                        });
                    }
                    (Some(_), _) => {}
                    (None, libc::NLMSG_DONE) => {
                        // The dump's ACK may follow; discard it if queued.
                        let _ = self.sock.recv(&mut RecvBuf::new(4096), true);
                        return Ok(count);
                    }
                    (None, _) => count += sys::count_elems(m.raw),
                }
            }
        }
    }
}

/// What a batch message does, for error reports (borrowed: describing costs nothing unless
/// the kernel rejects the message).
#[derive(Debug, Clone, Copy)]
enum Desc<'a> {
    /// A change of a change list.
    Change(&'a Change),
    /// `add table` of a full replacement.
    AddTable(&'a TableId),
    /// `delete table` of a full replacement.
    DeleteTable(&'a TableId),
    /// `add chain` of a full replacement.
    AddChain(&'a TableId, &'a Chain),
    /// `add set` of a full replacement.
    AddSet(&'a TableId, &'a SetDecl),
    /// Elements of a set, in a full replacement.
    AddElements(&'a TableId, &'a SetDecl, usize),
    /// `add rule` of a full replacement.
    AddRule(&'a TableId, &'a str, &'a Rule),
}

impl std::fmt::Display for Desc<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Desc::Change(c) => write!(f, "{c}"),
            Desc::AddTable(t) => write!(f, "{}", Change::AddTable(t.clone())),
            Desc::DeleteTable(t) => write!(f, "{}", Change::DeleteTable(t.clone())),
            Desc::AddChain(t, c) => write!(
                f,
                "{}",
                Change::AddChain {
                    table: t.clone(),
                    name: c.name.clone(),
                    kind: c.kind,
                }
            ),
            Desc::AddSet(t, d) => write!(
                f,
                "{}",
                Change::AddSet {
                    table: t.clone(),
                    decl: d.clone(),
                }
            ),
            Desc::AddElements(t, d, n) => {
                write!(f, "add {n} elements to set {} of table {t}", d.name)
            }
            Desc::AddRule(t, c, r) => write!(
                f,
                "{}",
                Change::AddRule {
                    table: t.clone(),
                    chain: c.to_string(),
                    rule: r.clone(),
                }
            ),
        }
    }
}

/// The snapshot of table `t` right after a full replacement created it with `handle`: the
/// kernel numbers a new table's chains, sets and rules from 1 in creation order, which is
/// `full_msgs`'s order (chains by name, sets in [`lookup_order`], then every chain's rules);
/// a rule dump lists chains in creation order.
fn predicted_snapshot(handle: u64, t: &Table) -> TableSnapshot {
    let mut next = 0u64;
    let mut alloc = || {
        next += 1;
        next
    };
    let chains = t.chains.keys().map(|n| (n.clone(), alloc())).collect();
    let order = lookup_order(t);
    let sets = order
        .iter()
        .map(|s| (s.decl.name.clone(), alloc()))
        .collect();
    let rules = t
        .chains
        .values()
        .flat_map(|c| c.rules.iter().map(|_| c.name.clone()))
        .map(|c| (c, alloc()))
        .collect();
    let elements = order
        .iter()
        .map(|s| (s.decl.name.clone(), sys::kernel_element_count(s)))
        .collect();
    TableSnapshot {
        handle,
        chains,
        sets,
        rules,
        elements,
    }
}

/// Rules plus elements from which a full replacement's side work (validation, rule
/// messages, the model copy, freeing messages) goes to helper threads; below it a thread
/// costs more than it saves (a small sync stays on the calling thread).
const PARALLEL_MIN: usize = 4096;

fn worth_a_thread(rs: &Ruleset) -> bool {
    rs.tables
        .values()
        .map(|t| t.rule_count() + t.element_count())
        .sum::<usize>()
        >= PARALLEL_MIN
}

/// The sets of `t` in the order to create them: most looked-up first. The kernel finds the
/// set of every `lookup` expression and of every element message by walking the table's
/// list of sets in creation order, comparing names; putting the sets that rules and element
/// messages name most often at the front halves that walk for large tables. The order has no
/// other effect (each set is created before any rule or element message names it).
fn lookup_order(t: &Table) -> Vec<&Set> {
    let mut uses: BTreeMap<&str, usize> = BTreeMap::new();
    for c in t.chains.values() {
        for r in &c.rules {
            for e in &r.exprs {
                match e {
                    Expr::Match {
                        op: MatchOp::InSet(s) | MatchOp::NotInSet(s),
                        ..
                    }
                    | Expr::Vmap { map: s, .. } => *uses.entry(s.as_str()).or_default() += 1,
                    _ => {}
                }
            }
        }
    }
    let mut order: Vec<(usize, &Set)> = t
        .sets
        .values()
        .map(|s| {
            // Element messages look the set up too (about one per 2,000 elements).
            let msgs = s.elements.len().div_ceil(2_000);
            (
                uses.get(s.decl.name.as_str()).copied().unwrap_or(0) + msgs,
                s,
            )
        })
        .collect();
    // Stable: equal counts keep name order.
    order.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    order.into_iter().map(|(_, s)| s).collect()
}

/// The batch of `ChangeList::delete_tables(stale)` followed by
/// `ChangeList::replace_all(desired)`, built from `desired` without copying it, and the
/// number of changes those lists would hold.
fn full_msgs<'a>(
    stale: &'a std::collections::BTreeSet<TableId>,
    desired: &'a Ruleset,
) -> (Vec<(Msg, Desc<'a>)>, usize) {
    // The rule messages (libnftnl objects) are built on a helper thread meanwhile.
    std::thread::scope(|s| {
        let helper = worth_a_thread(desired)
            .then(|| {
                std::thread::Builder::new()
                    .name("nft-rules".into())
                    .spawn_scoped(s, || rule_msgs(desired))
                    .ok()
            })
            .flatten();
        let (mut msgs, n) = structure_and_element_msgs(stale, desired);
        let rules = helper
            .and_then(|h| h.join().ok())
            .unwrap_or_else(|| rule_msgs(desired));
        let n_rules = rules.len();
        msgs.extend(rules);
        (msgs, n + n_rules)
    })
}

/// Tables, chains, sets and elements of [`full_msgs`], and their change count.
fn structure_and_element_msgs<'a>(
    stale: &'a std::collections::BTreeSet<TableId>,
    desired: &'a Ruleset,
) -> (Vec<(Msg, Desc<'a>)>, usize) {
    let mut msgs: Vec<(Msg, Desc<'a>)> = Vec::new();
    let mut n = 0;
    let ids: Vec<&TableId> = desired.tables.keys().collect();
    for id in stale.iter().chain(ids.iter().copied()) {
        msgs.push((sys::table(id, true), Desc::AddTable(id)));
        msgs.push((sys::table(id, false), Desc::DeleteTable(id)));
        n += 2;
    }
    for id in &ids {
        msgs.push((sys::table(id, true), Desc::AddTable(id)));
        n += 1;
    }
    for (id, t) in &desired.tables {
        for c in t.chains.values() {
            msgs.push((sys::add_chain(id, &c.name, c.kind), Desc::AddChain(id, c)));
            n += 1;
        }
    }
    let mut set_id = 1u32;
    let orders: Vec<Vec<&Set>> = desired.tables.values().map(lookup_order).collect();
    for ((id, _), order) in desired.tables.iter().zip(&orders) {
        for s in order {
            msgs.push((
                sys::set(id, &s.decl, true, set_id),
                Desc::AddSet(id, &s.decl),
            ));
            set_id += 1;
            n += 1;
        }
    }
    for ((id, _), order) in desired.tables.iter().zip(&orders) {
        for s in order.iter().filter(|s| !s.elements.is_empty()) {
            let d = Desc::AddElements(id, &s.decl, s.elements.len());
            msgs.extend(
                sys::elems(id, &s.decl, s.elements.iter(), true)
                    .into_iter()
                    .map(|m| (m, d)),
            );
            n += 1;
        }
    }
    (msgs, n)
}

/// The `add rule` messages of every chain of `desired`, in order.
fn rule_msgs(desired: &Ruleset) -> Vec<(Msg, Desc<'_>)> {
    let mut msgs = Vec::new();
    for (id, t) in &desired.tables {
        for c in t.chains.values() {
            for r in &c.rules {
                msgs.push((sys::rule(id, &c.name, r), Desc::AddRule(id, &c.name, r)));
            }
        }
    }
    msgs
}
