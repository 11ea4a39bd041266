//! The nftables IR: tables, chains, sets, verdict maps and rules as plain data.
//!
//! Every collection is ordered (`BTreeMap`/`BTreeSet`, or a `Vec` whose order is meaningful,
//! like the rules of a chain), so two equal IRs render to the same text and diff to nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

/// nftables address family of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// `inet`: IPv4 and IPv6 together.
    Inet,
    /// `ip`: IPv4 only.
    Ip,
    /// `ip6`: IPv6 only.
    Ip6,
    /// `bridge`: frames crossing a Linux bridge.
    Bridge,
}

impl Family {
    /// The keyword `nft` uses.
    pub fn keyword(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Bridge => "bridge",
        }
    }
}

/// A whole desired (or programmed) state: the tables we own, by `(family, name)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Our tables.
    pub tables: BTreeMap<TableId, Table>,
}

impl Ruleset {
    /// An empty ruleset.
    pub fn new() -> Ruleset {
        Ruleset::default()
    }

    /// Add (or replace) a table.
    pub fn with_table(mut self, table: Table) -> Ruleset {
        self.tables.insert(table.id(), table);
        self
    }
}

/// Identity of a table: family and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableId {
    /// Address family.
    pub family: Family,
    /// Table name.
    pub name: String,
}

impl fmt::Display for TableId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.family.keyword(), self.name)
    }
}

/// A table with its chains and sets (plain sets and verdict maps share one namespace, as in
/// the kernel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Address family.
    pub family: Family,
    /// Table name.
    pub name: String,
    /// Chains by name.
    pub chains: BTreeMap<String, Chain>,
    /// Sets and verdict maps by name.
    pub sets: BTreeMap<String, Set>,
}

impl Table {
    /// An empty table.
    pub fn new(family: Family, name: &str) -> Table {
        Table {
            family,
            name: name.to_string(),
            chains: BTreeMap::new(),
            sets: BTreeMap::new(),
        }
    }

    /// Its identity.
    pub fn id(&self) -> TableId {
        TableId {
            family: self.family,
            name: self.name.clone(),
        }
    }

    /// Add (or replace) a chain.
    pub fn with_chain(mut self, chain: Chain) -> Table {
        self.chains.insert(chain.name.clone(), chain);
        self
    }

    /// Add (or replace) a set or map.
    pub fn with_set(mut self, set: Set) -> Table {
        self.sets.insert(set.decl.name.clone(), set);
        self
    }

    /// Number of rules over all chains.
    pub fn rule_count(&self) -> usize {
        self.chains.values().map(|c| c.rules.len()).sum()
    }

    /// Number of set and map elements over all sets.
    pub fn element_count(&self) -> usize {
        self.sets.values().map(|s| s.elements.len()).sum()
    }
}

/// Netfilter hook of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    /// `prerouting`
    Prerouting,
    /// `input`
    Input,
    /// `forward`
    Forward,
    /// `output`
    Output,
    /// `postrouting`
    Postrouting,
}

impl Hook {
    /// The keyword `nft` uses.
    pub fn keyword(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }
}

/// Default verdict of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChainPolicy {
    /// `policy accept`
    Accept,
    /// `policy drop`
    Drop,
}

/// Whether a chain is attached to a hook (a base chain, type `filter`) or only reachable by
/// `jump`/`goto` (a regular chain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChainKind {
    /// `type filter hook <hook> priority <priority>; policy <policy>;`
    Base {
        /// The hook.
        hook: Hook,
        /// Priority (lower runs first; `filter` is 0).
        priority: i32,
        /// Default verdict.
        policy: ChainPolicy,
    },
    /// A chain reached by `jump` or `goto` (or a verdict map).
    Regular,
}

/// A chain and its ordered rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Chain name.
    pub name: String,
    /// Base or regular.
    pub kind: ChainKind,
    /// Rules in evaluation order.
    pub rules: Vec<Rule>,
}

impl Chain {
    /// A regular chain without rules.
    pub fn regular(name: &str) -> Chain {
        Chain {
            name: name.to_string(),
            kind: ChainKind::Regular,
            rules: Vec::new(),
        }
    }

    /// A `filter` base chain without rules.
    pub fn base(name: &str, hook: Hook, priority: i32, policy: ChainPolicy) -> Chain {
        Chain {
            name: name.to_string(),
            kind: ChainKind::Base {
                hook,
                priority,
                policy,
            },
            rules: Vec::new(),
        }
    }

    /// Append a rule.
    pub fn with_rule(mut self, rule: Rule) -> Chain {
        self.rules.push(rule);
        self
    }
}

/// Data type of one field of a set key (and of a match).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyType {
    /// `ipv4_addr`
    Ipv4Addr,
    /// `ipv6_addr`
    Ipv6Addr,
    /// `inet_service` (a port, big-endian on the wire)
    InetService,
    /// `inet_proto` (IP protocol number)
    InetProto,
    /// `ifname` (interface name, at most 15 bytes)
    Ifname,
    /// `nf_proto` (`meta nfproto`: ipv4/ipv6); not usable as a set key
    Nfproto,
    /// `ether_type` (`meta protocol`); not usable as a set key
    EtherType,
    /// `icmpv6_type`; not usable as a set key
    Icmpv6Type,
}

impl KeyType {
    /// The type name `nft` uses.
    pub fn keyword(self) -> &'static str {
        match self {
            KeyType::Ipv4Addr => "ipv4_addr",
            KeyType::Ipv6Addr => "ipv6_addr",
            KeyType::InetService => "inet_service",
            KeyType::InetProto => "inet_proto",
            KeyType::Ifname => "ifname",
            KeyType::Nfproto => "nf_proto",
            KeyType::EtherType => "ether_type",
            KeyType::Icmpv6Type => "icmpv6_type",
        }
    }

    /// Length of a value in bytes (before register padding).
    pub fn byte_len(self) -> usize {
        match self {
            KeyType::Ipv4Addr => 4,
            KeyType::Ipv6Addr => 16,
            KeyType::InetService | KeyType::EtherType => 2,
            KeyType::InetProto | KeyType::Nfproto | KeyType::Icmpv6Type => 1,
            KeyType::Ifname => 16,
        }
    }

    /// Whether this type may be a field of a set key.
    pub fn is_set_key(self) -> bool {
        matches!(
            self,
            KeyType::Ipv4Addr
                | KeyType::Ipv6Addr
                | KeyType::InetService
                | KeyType::InetProto
                | KeyType::Ifname
        )
    }

    /// The nftables userspace datatype number (`nft`'s `enum datatypes`), used for the set's
    /// key type so `nft list` prints elements in their natural form.
    pub fn datatype(self) -> u32 {
        match self {
            KeyType::Nfproto => 2,
            KeyType::Ipv4Addr => 7,
            KeyType::Ipv6Addr => 8,
            KeyType::EtherType => 10,
            KeyType::InetProto => 12,
            KeyType::InetService => 13,
            KeyType::Icmpv6Type => 29,
            KeyType::Ifname => 41,
        }
    }
}

/// One value of a field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 address.
    V6(Ipv6Addr),
    /// A port (host order here; big-endian on the wire).
    Port(u16),
    /// An IP protocol number (6 tcp, 17 udp, 132 sctp, 1 icmp, 58 ipv6-icmp).
    Proto(u8),
    /// An interface name.
    Ifname(String),
    /// `meta nfproto` value: 2 (ipv4) or 10 (ipv6).
    Nfproto(u8),
    /// An ether type (0x0800 ip, 0x86dd ip6).
    EtherType(u16),
    /// An ICMPv6 type (133..=137 neighbour discovery).
    Icmpv6Type(u8),
}

/// `meta nfproto ipv4`.
pub const NFPROTO_IPV4: u8 = 2;
/// `meta nfproto ipv6`.
pub const NFPROTO_IPV6: u8 = 10;
/// `tcp`
pub const PROTO_TCP: u8 = 6;
/// `udp`
pub const PROTO_UDP: u8 = 17;
/// `sctp`
pub const PROTO_SCTP: u8 = 132;
/// `icmp`
pub const PROTO_ICMP: u8 = 1;
/// `ipv6-icmp`
pub const PROTO_ICMPV6: u8 = 58;

impl Value {
    /// The type of this value.
    pub fn key_type(&self) -> KeyType {
        match self {
            Value::V4(_) => KeyType::Ipv4Addr,
            Value::V6(_) => KeyType::Ipv6Addr,
            Value::Port(_) => KeyType::InetService,
            Value::Proto(_) => KeyType::InetProto,
            Value::Ifname(_) => KeyType::Ifname,
            Value::Nfproto(_) => KeyType::Nfproto,
            Value::EtherType(_) => KeyType::EtherType,
            Value::Icmpv6Type(_) => KeyType::Icmpv6Type,
        }
    }

    /// An address value of the right family.
    pub fn addr(a: IpAddr) -> Value {
        match a {
            IpAddr::V4(a) => Value::V4(a),
            IpAddr::V6(a) => Value::V6(a),
        }
    }

    /// The bytes the kernel compares: network order for addresses, ports and ether types;
    /// interface names zero-padded to 16 bytes.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Value::V4(a) => a.octets().to_vec(),
            Value::V6(a) => a.octets().to_vec(),
            Value::Port(p) | Value::EtherType(p) => p.to_be_bytes().to_vec(),
            Value::Proto(p) | Value::Nfproto(p) | Value::Icmpv6Type(p) => vec![*p],
            Value::Ifname(n) => {
                let mut b = n.as_bytes().to_vec();
                b.resize(16, 0);
                b
            }
        }
    }
}

/// One field of a set element: a single value or an inclusive range (only in interval sets).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// One value.
    Single(Value),
    /// `start-end`, inclusive; a prefix like `10.0.0.0/24` is a range.
    Range(Value, Value),
}

impl Part {
    /// A prefix as a part: a single address for /32 and /128, a range otherwise.
    pub fn prefix(net: IpNetwork) -> Part {
        let full = match net {
            IpNetwork::V4(_) => 32,
            IpNetwork::V6(_) => 128,
        };
        if net.prefix() == full {
            return Part::Single(Value::addr(net.ip()));
        }
        match net {
            IpNetwork::V4(n) => Part::Range(Value::V4(n.network()), Value::V4(n.broadcast())),
            IpNetwork::V6(n) => {
                let start = u128::from(n.network());
                let host_bits = 128 - u32::from(n.prefix());
                let end = start | (u128::MAX >> (128 - host_bits));
                Part::Range(
                    Value::V6(Ipv6Addr::from(start)),
                    Value::V6(Ipv6Addr::from(end)),
                )
            }
        }
    }

    /// First value.
    pub fn start(&self) -> &Value {
        match self {
            Part::Single(v) | Part::Range(v, _) => v,
        }
    }

    /// Last value.
    pub fn end(&self) -> &Value {
        match self {
            Part::Single(v) | Part::Range(_, v) => v,
        }
    }
}

/// A set element: one part per key field (`10.0.0.0/24 . tcp . 80-90`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Element(pub Vec<Part>);

impl Element {
    /// A one-field element holding one value.
    pub fn value(v: Value) -> Element {
        Element(vec![Part::Single(v)])
    }

    /// A one-field element holding a prefix.
    pub fn prefix(net: IpNetwork) -> Element {
        Element(vec![Part::prefix(net)])
    }

    /// A concatenated element.
    pub fn concat(parts: Vec<Part>) -> Element {
        Element(parts)
    }
}

/// Declaration of a set or verdict map: everything but its elements. Changing a declaration
/// replaces the set (and the chains that reference it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SetDecl {
    /// Set name.
    pub name: String,
    /// Key fields; more than one is a concatenation.
    pub key: Vec<KeyType>,
    /// `flags interval`: elements may be ranges and prefixes.
    pub interval: bool,
    /// `flags constant`: elements never change (an element change replaces the set).
    pub constant: bool,
    /// A verdict map (`type K : verdict`) rather than a plain set.
    pub verdict_map: bool,
}

/// A named set (elements map to `None`) or verdict map (elements map to `Some(verdict)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// The declaration.
    pub decl: SetDecl,
    /// Elements, with their verdict when this is a verdict map.
    pub elements: BTreeMap<Element, Option<Verdict>>,
}

impl Set {
    /// An empty plain set.
    pub fn new(name: &str, key: &[KeyType]) -> Set {
        Set {
            decl: SetDecl {
                name: name.to_string(),
                key: key.to_vec(),
                interval: false,
                constant: false,
                verdict_map: false,
            },
            elements: BTreeMap::new(),
        }
    }

    /// An empty verdict map.
    pub fn verdict_map(name: &str, key: &[KeyType]) -> Set {
        let mut s = Set::new(name, key);
        s.decl.verdict_map = true;
        s
    }

    /// Set `flags interval`.
    pub fn interval(mut self) -> Set {
        self.decl.interval = true;
        self
    }

    /// Set `flags constant`.
    pub fn constant(mut self) -> Set {
        self.decl.constant = true;
        self
    }

    /// Add an element of a plain set.
    pub fn with_element(mut self, e: Element) -> Set {
        self.elements.insert(e, None);
        self
    }

    /// Add an entry of a verdict map.
    pub fn with_entry(mut self, e: Element, v: Verdict) -> Set {
        self.elements.insert(e, Some(v));
        self
    }
}

/// A verdict.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// `accept`
    Accept,
    /// `drop`
    Drop,
    /// `return`
    Return,
    /// `continue`
    Continue,
    /// `jump <chain>`
    Jump(String),
    /// `goto <chain>`
    Goto(String),
}

impl Verdict {
    /// The chain this verdict transfers to, if any.
    pub fn target(&self) -> Option<&str> {
        match self {
            Verdict::Jump(c) | Verdict::Goto(c) => Some(c),
            _ => None,
        }
    }
}

/// A packet field a rule can load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// `meta nfproto` (inet tables: ipv4/ipv6)
    MetaNfproto,
    /// `meta protocol` (ether type; bridge tables)
    MetaProtocol,
    /// `meta l4proto`
    MetaL4proto,
    /// `meta iifname`
    MetaIifname,
    /// `meta oifname`
    MetaOifname,
    /// `ip saddr`
    IpSaddr,
    /// `ip daddr`
    IpDaddr,
    /// `ip6 saddr`
    Ip6Saddr,
    /// `ip6 daddr`
    Ip6Daddr,
    /// `th sport` (transport header source port)
    ThSport,
    /// `th dport` (transport header destination port)
    ThDport,
    /// `icmpv6 type`
    Icmpv6Type,
}

impl Field {
    /// The type of the loaded value.
    pub fn key_type(self) -> KeyType {
        match self {
            Field::MetaNfproto => KeyType::Nfproto,
            Field::MetaProtocol => KeyType::EtherType,
            Field::MetaL4proto => KeyType::InetProto,
            Field::MetaIifname | Field::MetaOifname => KeyType::Ifname,
            Field::IpSaddr | Field::IpDaddr => KeyType::Ipv4Addr,
            Field::Ip6Saddr | Field::Ip6Daddr => KeyType::Ipv6Addr,
            Field::ThSport | Field::ThDport => KeyType::InetService,
            Field::Icmpv6Type => KeyType::Icmpv6Type,
        }
    }

    /// The expression `nft` prints.
    pub fn keyword(self) -> &'static str {
        match self {
            Field::MetaNfproto => "meta nfproto",
            Field::MetaProtocol => "meta protocol",
            Field::MetaL4proto => "meta l4proto",
            Field::MetaIifname => "meta iifname",
            Field::MetaOifname => "meta oifname",
            Field::IpSaddr => "ip saddr",
            Field::IpDaddr => "ip daddr",
            Field::Ip6Saddr => "ip6 saddr",
            Field::Ip6Daddr => "ip6 daddr",
            Field::ThSport => "th sport",
            Field::ThDport => "th dport",
            Field::Icmpv6Type => "icmpv6 type",
        }
    }
}

/// How a match compares the loaded field(s).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchOp {
    /// `== value` (one field only)
    Eq(Value),
    /// `!= value` (one field only)
    Ne(Value),
    /// `start-end`, inclusive (one field only)
    Range(Value, Value),
    /// `!= start-end` (one field only)
    NotRange(Value, Value),
    /// `@set` (the fields, concatenated, are the key)
    InSet(String),
    /// `!= @set`
    NotInSet(String),
}

/// Connection tracking state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CtState {
    /// `invalid`
    Invalid,
    /// `established`
    Established,
    /// `related`
    Related,
    /// `new`
    New,
    /// `untracked`
    Untracked,
}

impl CtState {
    /// The keyword `nft` uses.
    pub fn keyword(self) -> &'static str {
        match self {
            CtState::Invalid => "invalid",
            CtState::Established => "established",
            CtState::Related => "related",
            CtState::New => "new",
            CtState::Untracked => "untracked",
        }
    }

    /// The kernel's state bit (`NF_CT_STATE_*`), host order.
    pub fn bit(self) -> u32 {
        match self {
            CtState::Invalid => 1,
            CtState::Established => 1 << 1,
            CtState::Related => 1 << 2,
            CtState::New => 1 << 3,
            CtState::Untracked => 1 << 6,
        }
    }
}

/// One expression of a rule: a match, a statement, or the final verdict.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Expr {
    /// Load `fields` (concatenated when more than one) and compare.
    Match {
        /// Fields, in key order.
        fields: Vec<Field>,
        /// The comparison.
        op: MatchOp,
    },
    /// `ct state s1,s2` (any of them), or `ct state != s1,s2` when `negate`.
    CtState {
        /// States, any of which matches.
        states: Vec<CtState>,
        /// Invert the match.
        negate: bool,
    },
    /// `counter`
    Counter,
    /// `notrack`: the packet bypasses connection tracking (valid only in chains reached from
    /// the prerouting and output hooks before conntrack, priority < -200, e.g. raw at -300).
    Notrack,
    /// `log prefix "..."`
    Log {
        /// The prefix (at most 127 bytes).
        prefix: String,
    },
    /// `fields vmap @map`
    Vmap {
        /// Fields, in key order.
        fields: Vec<Field>,
        /// The verdict map.
        map: String,
    },
    /// A verdict statement.
    Verdict(Verdict),
}

impl Expr {
    /// `field == value`
    pub fn eq(field: Field, v: Value) -> Expr {
        Expr::Match {
            fields: vec![field],
            op: MatchOp::Eq(v),
        }
    }

    /// `field != value`
    pub fn ne(field: Field, v: Value) -> Expr {
        Expr::Match {
            fields: vec![field],
            op: MatchOp::Ne(v),
        }
    }

    /// `field start-end`
    pub fn range(field: Field, start: Value, end: Value) -> Expr {
        Expr::Match {
            fields: vec![field],
            op: MatchOp::Range(start, end),
        }
    }

    /// `f1 . f2 @set`
    pub fn in_set(fields: &[Field], set: &str) -> Expr {
        Expr::Match {
            fields: fields.to_vec(),
            op: MatchOp::InSet(set.to_string()),
        }
    }

    /// `f1 . f2 != @set`
    pub fn not_in_set(fields: &[Field], set: &str) -> Expr {
        Expr::Match {
            fields: fields.to_vec(),
            op: MatchOp::NotInSet(set.to_string()),
        }
    }

    /// `f1 . f2 vmap @map`
    pub fn vmap(fields: &[Field], map: &str) -> Expr {
        Expr::Vmap {
            fields: fields.to_vec(),
            map: map.to_string(),
        }
    }

    /// `ct state s1,s2`
    pub fn ct_state(states: &[CtState]) -> Expr {
        Expr::CtState {
            states: states.to_vec(),
            negate: false,
        }
    }

    /// `meta nfproto ipv4`
    pub fn ipv4() -> Expr {
        Expr::eq(Field::MetaNfproto, Value::Nfproto(NFPROTO_IPV4))
    }

    /// `meta nfproto ipv6`
    pub fn ipv6() -> Expr {
        Expr::eq(Field::MetaNfproto, Value::Nfproto(NFPROTO_IPV6))
    }

    /// `meta l4proto <p>`
    pub fn l4proto(p: u8) -> Expr {
        Expr::eq(Field::MetaL4proto, Value::Proto(p))
    }

    /// A verdict.
    pub fn verdict(v: Verdict) -> Expr {
        Expr::Verdict(v)
    }
}

/// A rule: expressions evaluated in order, and an optional comment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rule {
    /// Expressions in order.
    pub exprs: Vec<Expr>,
    /// `comment "..."` (at most 127 bytes).
    pub comment: Option<String>,
}

impl Rule {
    /// A rule of these expressions.
    pub fn new(exprs: Vec<Expr>) -> Rule {
        Rule {
            exprs,
            comment: None,
        }
    }

    /// Attach a comment.
    pub fn with_comment(mut self, c: &str) -> Rule {
        self.comment = Some(c.to_string());
        self
    }

    /// Sets and maps this rule looks up.
    pub fn set_refs(&self) -> impl Iterator<Item = &str> {
        self.exprs.iter().filter_map(|e| match e {
            Expr::Match {
                op: MatchOp::InSet(s) | MatchOp::NotInSet(s),
                ..
            } => Some(s.as_str()),
            Expr::Vmap { map, .. } => Some(map.as_str()),
            _ => None,
        })
    }

    /// Chains this rule jumps or goes to.
    pub fn chain_refs(&self) -> impl Iterator<Item = &str> {
        self.exprs.iter().filter_map(|e| match e {
            Expr::Verdict(v) => v.target(),
            _ => None,
        })
    }
}
