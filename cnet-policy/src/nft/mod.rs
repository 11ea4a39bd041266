//! nftables: an IR of tables, chains, sets, verdict maps and rules; its rendering as `nft`
//! text; the diff of two IRs; and the programmer that writes a diff (or a full replacement) to
//! the kernel over netlink in one atomic batch.
//!
//! The IR, the renderer and the diff are pure (no IO). [`Programmer`] is the IO shell: it owns
//! the tables named in the rulesets it is given and nothing else (it never flushes the whole
//! ruleset, so other tables and iptables-nft coexist). All kernel calls happen on the calling
//! thread, in that thread's network namespace.
//!
//! # Layout
//! - [`ir`](self) types: [`Ruleset`] → [`Table`] (family `inet`/`ip`/`ip6`/`bridge`) →
//!   [`Chain`] (base: `type filter hook … priority … policy …`, or regular) with ordered
//!   [`Rule`]s of [`Expr`]s (matches on [`Field`]s with `==`, `!=`, ranges, `@set`/`!= @set`
//!   lookups including concatenations, `ct state`, `counter`, `log prefix`, `vmap`, verdicts,
//!   comments), and [`Set`]s (plain or verdict maps; keys `ipv4_addr`, `ipv6_addr`,
//!   `inet_service`, `inet_proto`, `ifname` and their concatenations; flags `interval`,
//!   `constant`). Dependencies are explicit: in `inet` tables an IPv4/IPv6 payload match needs
//!   an earlier `meta nfproto` match, in `bridge` tables a `meta protocol` match
//!   ([`validate`] enforces it), so the netlink program and the `nft` text mean the same.
//! - [`render_ruleset`] / [`render_changes`]: `nft -f` text; tested against the real `nft`.
//! - [`diff`] → [`ChangeList`] (see its module docs for the granularity: element-only when
//!   only elements changed; a changed chain is flushed and re-filled; a changed set
//!   declaration replaces the set and its users; a chain-kind change replaces the table).
//! - [`Programmer`]: `sync(&desired)` (reconcile + diff or atomic full replacement),
//!   `apply(&changes)` (one batch, no bookkeeping), `generation()`, `snapshot(table)`.
//!
//! Kernel facts the code relies on (measured, see KERNEL-NOTES.md): ports and addresses are
//! big-endian on the wire; element adds have create semantics (EEXIST fails the whole batch),
//! deletes of missing elements fail with ENOENT, so the diff only adds what is absent and
//! deletes what is present; a rejected batch leaves nothing; the `bridge` family has no
//! conntrack (`ct state` → EPROTO) unless nf_conntrack_bridge is loaded.
//!
//! ```
//! use cnet_policy::nft::{
//!     diff, render_ruleset, Chain, ChainPolicy, Element, Expr, Family, Field, Hook, KeyType,
//!     Rule, Ruleset, Set, Table, Value, Verdict,
//! };
//! use std::net::Ipv4Addr;
//!
//! let blocked = Set::new("blocked", &[KeyType::Ipv4Addr])
//!     .interval()
//!     .with_element(Element::prefix("10.1.0.0/16".parse().unwrap()));
//! let forward = Chain::base("forward", Hook::Forward, 0, ChainPolicy::Accept).with_rule(
//!     Rule::new(vec![
//!         Expr::ipv4(),
//!         Expr::in_set(&[Field::IpDaddr], "blocked"),
//!         Expr::Counter,
//!         Expr::verdict(Verdict::Drop),
//!     ])
//!     .with_comment("blocked destinations"),
//! );
//! let old = Ruleset::new()
//!     .with_table(Table::new(Family::Inet, "cnet").with_set(blocked).with_chain(forward));
//! let text = render_ruleset(&old);
//! assert!(text.contains("meta nfproto ipv4 ip daddr @blocked counter drop"));
//!
//! // A pod coming: one element add, no rule touched.
//! let mut new = old.clone();
//! let t = new.tables.values_mut().next().unwrap();
//! t.sets.get_mut("blocked").unwrap().elements
//!     .insert(Element::value(Value::V4(Ipv4Addr::new(192, 168, 0, 7))), None);
//! let changes = diff(&old, &new);
//! assert!(changes.is_elements_only());
//! assert_eq!(changes.element_changes(), 1);
//!
//! // Programming needs root and a network namespace of your own (see `tests/nft_*.rs`):
//! // let mut p = cnet_policy::nft::Programmer::new()?;   // in the target netns's thread
//! // p.sync(&new)?;                                       // full replace first, then diffs
//! ```

mod diff;
mod ir;
mod program;
mod render;
mod sys;
mod validate;

use std::io;

pub use diff::{Change, ChangeList, diff};
pub use ir::*;
pub use program::{Programmer, SyncKind, SyncReport, TableSnapshot};
pub use render::{
    render_changes, render_entry, render_rule, render_ruleset, render_table, render_value,
};
pub use validate::{validate, validate_table};

/// Errors of the nftables layer.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The IR is not valid (bad name, type mismatch, dangling reference, overlap ...).
    #[error("nftables table {table}: {what}")]
    Invalid {
        /// The table, `family name`.
        table: String,
        /// What is wrong, naming the object.
        what: String,
    },
    /// A netlink socket operation failed before the batch reached the kernel.
    #[error("nftables netlink {op}: {source}")]
    Socket {
        /// The operation (`open`, `sendmsg`, `setsockopt SO_RCVBUFFORCE` ...).
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The kernel rejected the batch; nothing of it was applied.
    #[error("nftables batch rejected (nothing applied): {}", .errors.join("; "))]
    Rejected {
        /// One line per failing message: the change and the errno.
        errors: Vec<String>,
        /// The first errno (EEXIST, ENOENT, EINVAL, ...).
        errno: i32,
    },
    /// The batch may or may not have been applied (ENOBUFS on receive, missing ACKs). The
    /// caller must re-read the kernel state; [`Programmer::sync`] does so and replaces our
    /// tables on the next call.
    #[error("nftables batch outcome unknown: {reason}; the next sync re-reads and replaces")]
    UnknownOutcome {
        /// Why the outcome is unknown.
        reason: String,
    },
    /// Reading kernel state back failed.
    #[error("nftables read-back of {what}: {reason}")]
    ReadBack {
        /// What was read (`generation`, `table inet cnet`, ...).
        what: String,
        /// Why it failed.
        reason: String,
    },
}
