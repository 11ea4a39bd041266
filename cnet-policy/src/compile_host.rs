//! Compiling host endpoint policy ([`crate::calico::host`]) into its own `inet` table.
//!
//! # Shape of the table (default name `cnet_host`)
//! * `hep_input` (input, priority 0) and `hep_output` (output, priority 0): established and
//!   related packets pass; a packet through a host endpoint's interface goes to that
//!   endpoint's chain for the direction, which accepts the failsafe ports, then walks the
//!   tiers of the normal policies that select the endpoint (as the pod pipeline does: Allow
//!   accepts, Deny drops, Pass goes to the next tier, a tier that selected the endpoint and
//!   decided nothing drops). An endpoint no normal policy selects for the direction drops
//!   (Calico's default for host traffic through a host endpoint), failsafe excepted.
//! * `hep_fwd_in` (forward, priority 0) and `hep_fwd_out` (forward, priority 1): the same for
//!   forwarded packets arriving on / leaving by the interface, with the `applyOnForward`
//!   policies only; no such policy for the endpoint and direction: the packet goes on
//!   (allowed). Two base chains, so a packet forwarded between two host endpoints is judged
//!   by both.
//! * `hep_prerouting` (prerouting, priority -110: before destination NAT at -100): the
//!   `preDNAT` policies on packets arriving on the interface; Allow accepts (the packet goes
//!   on to the later hooks and their policy), Deny drops, no match goes on.
//!
//! * `hep_raw_pre` (prerouting, priority -300: raw, before connection tracking) and
//!   `hep_raw_out` (output, -300), only when `doNotTrack` policies exist: the untracked
//!   policies, ingress on packets arriving on the interface (to the host or forwarded),
//!   egress on packets the host sends out of it. Following Calico's untracked policy: Allow
//!   marks the packet untracked (`notrack`) and accepts it, and such packets then skip the
//!   normal host endpoint policy (every base chain above accepts `ct state untracked` first;
//!   return traffic needs its own untracked Allow, as nothing is tracked); Deny drops; Pass
//!   goes to the next tier; no matching rule, or no untracked policy for the endpoint, goes
//!   on to the tracked policies (untracked tiers have no default deny).
//!
//! Rules, selector sets and named sets are compiled exactly as for pods (shared helpers), so a
//! rule's peers (pods, network sets, nets) mean the same on host endpoints. Rules grow with
//! policies and host endpoints, never with pods. Host endpoints on every interface
//! (`interfaceName: "*"`) are refused ([`CompileError::Unsupported`]).

use super::{Attachments, CompileError, CompileOptions, Compiler, Mode, sanitize, short_hash};
use crate::calico::host::{HostEndpoint, HostPolicies};
use crate::endpoint::Inventory;
use crate::model::{Direction, Policy, PolicySet, Protocol, TierDefault};
use crate::nft::{
    Chain, ChainPolicy, CtState, Expr, Family, Field, Hook, Rule, Ruleset, Table, Value, Verdict,
};

/// Options of the host endpoint compiler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostOptions {
    /// Name of the `inet` table (distinct from the pod table).
    pub table: String,
    /// The node being programmed: only its host endpoints are compiled (`None`: all).
    pub node: Option<String>,
    /// Ports always open towards the host through a host endpoint (protocol, port).
    pub failsafe_inbound: Vec<(Protocol, u16)>,
    /// Ports always open from the host through a host endpoint (protocol, port).
    pub failsafe_outbound: Vec<(Protocol, u16)>,
}

impl HostOptions {
    /// Table `cnet_host` for `node`, with Calico's default failsafe ports (Felix
    /// `FailsafeInboundHostPorts`/`FailsafeOutboundHostPorts`: SSH, DHCP, BGP, etcd, Typha,
    /// the API server, DNS out).
    pub fn calico_defaults(node: Option<&str>) -> HostOptions {
        let tcp = |p| (Protocol::Tcp, p);
        let udp = |p| (Protocol::Udp, p);
        HostOptions {
            table: "cnet_host".to_string(),
            node: node.map(str::to_string),
            failsafe_inbound: vec![
                tcp(22),
                udp(68),
                tcp(179),
                tcp(2379),
                tcp(2380),
                tcp(5473),
                tcp(6443),
                tcp(6666),
                tcp(6667),
            ],
            failsafe_outbound: vec![
                udp(53),
                udp(67),
                tcp(179),
                tcp(2379),
                tcp(2380),
                tcp(5473),
                tcp(6443),
                tcp(6666),
                tcp(6667),
            ],
        }
    }

    /// No failsafe ports (every packet is judged by policy).
    pub fn without_failsafe(mut self) -> HostOptions {
        self.failsafe_inbound.clear();
        self.failsafe_outbound.clear();
        self
    }
}

/// Which policies a host endpoint chain walks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Host traffic (input/output): normal policies, default deny.
    Host,
    /// Forwarded traffic: `applyOnForward` policies, default allow.
    Forward,
    /// Before DNAT: `preDNAT` policies, ingress, no default.
    PreDnat,
    /// Before connection tracking: `doNotTrack` policies, Allow = notrack + accept.
    Untracked,
}

/// Compile the host endpoint policy of `hosts` for the endpoints of `inventory` (peers).
pub fn compile_host(
    hosts: &HostPolicies,
    inventory: &Inventory,
    opts: &HostOptions,
) -> Result<Ruleset, CompileError> {
    let untracked = !hosts.do_not_track.tiers.is_empty();
    let att = Attachments::default();
    let mut copts = CompileOptions::new(Mode::Bridge);
    copts.table = opts.table.clone();
    copts.node = opts.node.clone();
    let empty = PolicySet::default();
    let mut c = Compiler::new(&empty, inventory, &att, &copts)?;
    let mut input = Chain::base("hep_input", Hook::Input, 0, ChainPolicy::Accept);
    let mut output = Chain::base("hep_output", Hook::Output, 0, ChainPolicy::Accept);
    let mut fwd_in = Chain::base("hep_fwd_in", Hook::Forward, 0, ChainPolicy::Accept);
    let mut fwd_out = Chain::base("hep_fwd_out", Hook::Forward, 1, ChainPolicy::Accept);
    let mut pre = Chain::base(
        "hep_prerouting",
        Hook::Prerouting,
        -110,
        ChainPolicy::Accept,
    );
    let mut raw_pre = Chain::base("hep_raw_pre", Hook::Prerouting, -300, ChainPolicy::Accept);
    let mut raw_out = Chain::base("hep_raw_out", Hook::Output, -300, ChainPolicy::Accept);
    for ch in [&mut input, &mut output, &mut fwd_in, &mut fwd_out, &mut pre] {
        if untracked {
            // Allowed by untracked policy: no further host endpoint policy.
            ch.rules.push(Rule::new(vec![
                Expr::ct_state(&[CtState::Untracked]),
                Expr::verdict(Verdict::Accept),
            ]));
        }
        ch.rules.push(Rule::new(vec![
            Expr::ct_state(&[CtState::Established, CtState::Related]),
            Expr::verdict(Verdict::Accept),
        ]));
    }
    let mut eps: Vec<&HostEndpoint> = hosts
        .endpoints
        .iter()
        .filter(|h| opts.node.as_ref().is_none_or(|n| *n == h.node))
        .collect();
    eps.sort_by(|a, b| a.name.cmp(&b.name));
    for h in eps {
        let Some(ifname) = h.interface.as_deref() else {
            continue;
        };
        if ifname == "*" || !super::valid_ifname(ifname) {
            return Err(CompileError::Unsupported(format!(
                "host endpoint {}: interfaceName {ifname:?} (only one named interface)",
                h.name
            )));
        }
        let iif = Expr::eq(Field::MetaIifname, Value::Ifname(ifname.to_string()));
        let oif = Expr::eq(Field::MetaOifname, Value::Ifname(ifname.to_string()));
        let oif_raw = oif.clone();
        let base = format!(
            "hep_{}_{}",
            sanitize(&h.name, 20),
            &short_hash(&h.name)[..6]
        );
        let plan = [
            (
                &mut input,
                iif.clone(),
                Direction::Ingress,
                Stage::Host,
                "in",
            ),
            (
                &mut output,
                oif.clone(),
                Direction::Egress,
                Stage::Host,
                "out",
            ),
            (
                &mut fwd_in,
                iif.clone(),
                Direction::Ingress,
                Stage::Forward,
                "fin",
            ),
            (&mut fwd_out, oif, Direction::Egress, Stage::Forward, "fout"),
            (
                &mut pre,
                iif.clone(),
                Direction::Ingress,
                Stage::PreDnat,
                "pre",
            ),
            (
                &mut raw_pre,
                iif,
                Direction::Ingress,
                Stage::Untracked,
                "rin",
            ),
            (
                &mut raw_out,
                oif_raw,
                Direction::Egress,
                Stage::Untracked,
                "rout",
            ),
        ];
        for (chain, m, d, stage, tag) in plan {
            let name = format!("{base}_{tag}");
            if let Some(entry) = c.host_chains(h, hosts, d, stage, &name, opts)? {
                chain
                    .rules
                    .push(Rule::new(vec![m, Expr::verdict(Verdict::Goto(entry))]));
            }
        }
    }
    for ch in [input, output, fwd_in, fwd_out, pre] {
        c.add_chain(ch);
    }
    if untracked {
        c.add_chain(raw_pre);
        c.add_chain(raw_out);
    }
    let mut t = Table::new(Family::Inet, &opts.table);
    t.chains = std::mem::take(&mut c.chains);
    t.sets = std::mem::take(&mut c.sets);
    Ok(Ruleset::new().with_table(t))
}

impl Compiler<'_> {
    /// The chains of one host endpoint, direction and stage; returns the entry chain, or
    /// `None` when nothing applies and packets go on unjudged.
    fn host_chains(
        &mut self,
        h: &HostEndpoint,
        hosts: &HostPolicies,
        d: Direction,
        stage: Stage,
        name: &str,
        opts: &HostOptions,
    ) -> Result<Option<String>, CompileError> {
        let set = match stage {
            Stage::PreDnat if d == Direction::Egress => return Ok(None),
            Stage::PreDnat => &hosts.pre_dnat,
            Stage::Untracked => &hosts.do_not_track,
            Stage::Host | Stage::Forward => &hosts.normal,
        };
        // Per tier, the policies that select the endpoint for this direction and stage.
        let tiers: Vec<(TierDefault, Vec<&Policy>)> = set
            .tiers
            .iter()
            .map(|t| {
                let ps = t
                    .policies
                    .iter()
                    .filter(|p| p.rules(d).is_some() && h.selected_by(&p.subject))
                    .filter(|p| stage != Stage::Forward || hosts.apply_on_forward.contains(&p.id))
                    .collect::<Vec<_>>();
                (t.default, ps)
            })
            .filter(|(_, ps)| !ps.is_empty())
            .collect();
        let failsafe = match (stage, d) {
            (Stage::Host, Direction::Ingress) => &opts.failsafe_inbound,
            (Stage::Host, Direction::Egress) => &opts.failsafe_outbound,
            _ => &Vec::new(),
        };
        if tiers.is_empty() && stage != Stage::Host {
            return Ok(None);
        }
        let mut entry = Chain::regular(name);
        for (proto, port) in failsafe {
            entry.rules.push(
                Rule::new(vec![
                    Expr::l4proto(proto.number()),
                    Expr::eq(Field::ThDport, Value::Port(*port)),
                    Expr::verdict(Verdict::Accept),
                ])
                .with_comment("failsafe"),
            );
        }
        // After the last tier: selected and passed through → accept (as for pods); nothing
        // selected → the stage's default. Untracked: a chain of its own that accepts
        // (tracked), so that every accept in a policy chain is an Allow (→ notrack).
        let end = match (stage, tiers.is_empty()) {
            (Stage::Host, true) => Verdict::Drop,
            (Stage::Untracked, _) => {
                let mut ch = Chain::regular(&format!("{name}_end"));
                ch.rules
                    .push(Rule::new(vec![Expr::verdict(Verdict::Accept)]));
                self.add_chain(ch);
                Verdict::Goto(format!("{name}_end"))
            }
            _ => Verdict::Accept,
        };
        let n = tiers.len();
        let tier_name = |k: usize| format!("{name}_t{k}");
        for (k, (default, ps)) in tiers.iter().enumerate() {
            let next = if k + 1 < n {
                Verdict::Goto(tier_name(k + 1))
            } else {
                end.clone()
            };
            let mut ch = Chain::regular(&tier_name(k));
            for p in ps {
                let mut pc = self.policy_chain(p, d, &next)?;
                pc.name = format!("{name}_{}", &short_hash(&p.id.to_string())[..8]);
                if stage == Stage::Untracked {
                    // Allow: bypass connection tracking, then accept.
                    for r in &mut pc.rules {
                        if let Some(i) = r
                            .exprs
                            .iter()
                            .position(|e| *e == Expr::Verdict(Verdict::Accept))
                        {
                            r.exprs.insert(i, Expr::Notrack);
                        }
                    }
                }
                if !pc.rules.is_empty() {
                    ch.rules.push(Rule::new(vec![Expr::verdict(Verdict::Jump(
                        pc.name.clone(),
                    ))]));
                }
                self.add_chain(pc);
            }
            let fallthrough = match (stage, default) {
                (Stage::PreDnat | Stage::Untracked, _) | (_, TierDefault::Pass) => next.clone(),
                (_, TierDefault::Deny) => Verdict::Drop,
            };
            ch.rules.push(Rule::new(vec![Expr::verdict(fallthrough)]));
            self.add_chain(ch);
        }
        let first = if n > 0 {
            Verdict::Goto(tier_name(0))
        } else {
            end
        };
        entry.rules.push(Rule::new(vec![Expr::verdict(first)]));
        self.add_chain(entry);
        Ok(Some(name.to_string()))
    }
}
