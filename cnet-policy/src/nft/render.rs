//! Renders the IR (and change lists) as `nft -f` text for people: review, debugging, and the
//! `nft -f` comparison in benches. The kernel is programmed over netlink, not from this text.

use std::fmt::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr};

use super::diff::{Change, ChangeList};
use super::ir::{
    ChainKind, ChainPolicy, CtState, Element, Expr, MatchOp, Part, Rule, Ruleset, Set, SetDecl,
    Table, Value, Verdict,
};

/// Render a whole ruleset as `nft -f` input (one `table` block per table).
pub fn render_ruleset(rs: &Ruleset) -> String {
    let mut out = String::new();
    for t in rs.tables.values() {
        out.push_str(&render_table(t));
    }
    out
}

/// Render one table block.
pub fn render_table(t: &Table) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "table {} {} {{", t.family.keyword(), t.name);
    for s in t.sets.values() {
        render_set(&mut o, s);
    }
    for c in t.chains.values() {
        let _ = writeln!(o, "\tchain {} {{", c.name);
        if let Some(h) = chain_header(c.kind) {
            let _ = writeln!(o, "\t\t{h}");
        }
        for r in &c.rules {
            let _ = writeln!(o, "\t\t{}", render_rule(r));
        }
        o.push_str("\t}\n");
    }
    o.push_str("}\n");
    o
}

fn chain_header(kind: ChainKind) -> Option<String> {
    match kind {
        ChainKind::Regular => None,
        ChainKind::Base {
            hook,
            priority,
            policy,
        } => Some(format!(
            "type filter hook {} priority {priority}; policy {};",
            hook.keyword(),
            match policy {
                ChainPolicy::Accept => "accept",
                ChainPolicy::Drop => "drop",
            }
        )),
    }
}

fn set_keyword(d: &SetDecl) -> &'static str {
    if d.verdict_map { "map" } else { "set" }
}

fn set_type(d: &SetDecl) -> String {
    let key: Vec<&str> = d.key.iter().map(|k| k.keyword()).collect();
    let mut s = format!("type {}", key.join(" . "));
    if d.verdict_map {
        s.push_str(" : verdict");
    }
    s
}

fn set_flags(d: &SetDecl) -> Option<String> {
    let mut f = Vec::new();
    if d.constant {
        f.push("constant");
    }
    if d.interval {
        f.push("interval");
    }
    (!f.is_empty()).then(|| format!("flags {}", f.join(",")))
}

fn render_set(o: &mut String, s: &Set) {
    let d = &s.decl;
    let _ = writeln!(o, "\t{} {} {{", set_keyword(d), d.name);
    let _ = writeln!(o, "\t\t{}", set_type(d));
    if let Some(f) = set_flags(d) {
        let _ = writeln!(o, "\t\t{f}");
    }
    if !s.elements.is_empty() {
        let items: Vec<String> = s
            .elements
            .iter()
            .map(|(e, v)| render_entry(e, v.as_ref()))
            .collect();
        let _ = writeln!(o, "\t\telements = {{ {} }}", items.join(",\n\t\t\t     "));
    }
    o.push_str("\t}\n");
}

/// Render one element (`10.0.0.0/24 . tcp . 80-90`), with `: verdict` for map entries.
pub fn render_entry(e: &Element, v: Option<&Verdict>) -> String {
    let parts: Vec<String> = e.0.iter().map(render_part).collect();
    match v {
        Some(v) => format!("{} : {}", parts.join(" . "), render_verdict(v)),
        None => parts.join(" . "),
    }
}

fn render_part(p: &Part) -> String {
    match p {
        Part::Single(v) => render_value(v),
        Part::Range(a, b) => match prefix_len(a, b) {
            Some(len) => format!("{}/{len}", render_value(a)),
            None => format!("{}-{}", render_value(a), render_value(b)),
        },
    }
}

/// The prefix length when `a..=b` is exactly one CIDR block.
fn prefix_len(a: &Value, b: &Value) -> Option<u32> {
    let (s, e, bits) = match (a, b) {
        (Value::V4(a), Value::V4(b)) => (u128::from(u32::from(*a)), u128::from(u32::from(*b)), 32),
        (Value::V6(a), Value::V6(b)) => (u128::from(*a), u128::from(*b), 128),
        _ => return None,
    };
    let span = e.checked_sub(s)?;
    // span must be 2^k - 1 and s aligned to it.
    if span.checked_add(1).is_some_and(|n| !n.is_power_of_two()) || s & span != 0 {
        return None;
    }
    let host_bits = 128 - span.leading_zeros();
    Some(bits - host_bits)
}

/// Render one value as `nft` writes it.
pub fn render_value(v: &Value) -> String {
    match v {
        Value::V4(a) => Ipv4Addr::to_string(a),
        Value::V6(a) => Ipv6Addr::to_string(a),
        Value::Port(p) => p.to_string(),
        Value::Proto(p) => match *p {
            1 => "icmp".into(),
            6 => "tcp".into(),
            17 => "udp".into(),
            58 => "ipv6-icmp".into(),
            132 => "sctp".into(),
            n => n.to_string(),
        },
        Value::Ifname(n) => format!("\"{n}\""),
        Value::Nfproto(p) => match *p {
            2 => "ipv4".into(),
            10 => "ipv6".into(),
            n => n.to_string(),
        },
        Value::EtherType(t) => match *t {
            0x0800 => "ip".into(),
            0x86dd => "ip6".into(),
            0x0806 => "arp".into(),
            n => format!("0x{n:04x}"),
        },
        Value::Icmpv6Type(t) => match *t {
            1 => "destination-unreachable".into(),
            2 => "packet-too-big".into(),
            3 => "time-exceeded".into(),
            4 => "parameter-problem".into(),
            128 => "echo-request".into(),
            129 => "echo-reply".into(),
            133 => "nd-router-solicit".into(),
            134 => "nd-router-advert".into(),
            135 => "nd-neighbor-solicit".into(),
            136 => "nd-neighbor-advert".into(),
            137 => "nd-redirect".into(),
            n => n.to_string(),
        },
    }
}

/// Render a verdict.
pub fn render_verdict(v: &Verdict) -> String {
    match v {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Return => "return".into(),
        Verdict::Continue => "continue".into(),
        Verdict::Jump(c) => format!("jump {c}"),
        Verdict::Goto(c) => format!("goto {c}"),
    }
}

fn fields_text(fields: &[super::ir::Field]) -> String {
    let f: Vec<&str> = fields.iter().map(|f| f.keyword()).collect();
    f.join(" . ")
}

fn render_range(a: &Value, b: &Value) -> String {
    // Names like `nd-router-solicit` contain '-', so ranges of ICMPv6 types are numeric.
    let one = |v: &Value| match v {
        Value::Icmpv6Type(t) => t.to_string(),
        v => render_value(v),
    };
    format!("{}-{}", one(a), one(b))
}

/// Render one rule (without `add rule ...`).
pub fn render_rule(r: &Rule) -> String {
    let mut parts: Vec<String> = r.exprs.iter().map(render_expr).collect();
    if let Some(c) = &r.comment {
        parts.push(format!("comment \"{c}\""));
    }
    parts.join(" ")
}

fn render_expr(e: &Expr) -> String {
    match e {
        Expr::Match { fields, op } => {
            let f = fields_text(fields);
            match op {
                MatchOp::Eq(v) => format!("{f} {}", render_value(v)),
                MatchOp::Ne(v) => format!("{f} != {}", render_value(v)),
                MatchOp::Range(a, b) => format!("{f} {}", render_range(a, b)),
                MatchOp::NotRange(a, b) => format!("{f} != {}", render_range(a, b)),
                MatchOp::InSet(s) => format!("{f} @{s}"),
                MatchOp::NotInSet(s) => format!("{f} != @{s}"),
            }
        }
        Expr::CtState { states, negate } => {
            let s: Vec<&str> = states.iter().map(|s| CtState::keyword(*s)).collect();
            let neg = if *negate { "!= " } else { "" };
            format!("ct state {neg}{}", s.join(","))
        }
        Expr::Counter => "counter".into(),
        Expr::Notrack => "notrack".into(),
        Expr::Log { prefix } => format!("log prefix \"{prefix}\""),
        Expr::Vmap { fields, map } => format!("{} vmap @{map}", fields_text(fields)),
        Expr::Verdict(v) => render_verdict(v),
    }
}

fn entries_text(elements: &[(Element, Option<Verdict>)], with_verdict: bool) -> String {
    let items: Vec<String> = elements
        .iter()
        .map(|(e, v)| render_entry(e, if with_verdict { v.as_ref() } else { None }))
        .collect();
    items.join(", ")
}

/// Render a change list as `nft -f` commands (one per line).
pub fn render_changes(cl: &ChangeList) -> String {
    let mut o = String::new();
    for c in &cl.changes {
        let _ = writeln!(o, "{c}");
    }
    o
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::AddTable(t) => write!(f, "add table {t}"),
            Change::DeleteTable(t) => write!(f, "delete table {t}"),
            Change::AddChain { table, name, kind } => match chain_header(*kind) {
                Some(h) => write!(f, "add chain {table} {name} {{ {h} }}"),
                None => write!(f, "add chain {table} {name}"),
            },
            Change::FlushChain { table, chain } => write!(f, "flush chain {table} {chain}"),
            Change::DeleteChain { table, chain } => write!(f, "delete chain {table} {chain}"),
            Change::AddSet { table, decl } => {
                let flags = set_flags(decl)
                    .map(|s| format!(" {s};"))
                    .unwrap_or_default();
                write!(
                    f,
                    "add {} {table} {} {{ {};{flags} }}",
                    set_keyword(decl),
                    decl.name,
                    set_type(decl)
                )
            }
            Change::DeleteSet { table, decl } => {
                write!(f, "delete {} {table} {}", set_keyword(decl), decl.name)
            }
            Change::AddElements {
                table,
                decl,
                elements,
            } => write!(
                f,
                "add element {table} {} {{ {} }}",
                decl.name,
                entries_text(elements, true)
            ),
            Change::DeleteElements {
                table,
                decl,
                elements,
            } => write!(
                f,
                "delete element {table} {} {{ {} }}",
                decl.name,
                entries_text(elements, false)
            ),
            Change::AddRule { table, chain, rule } => {
                write!(f, "add rule {table} {chain} {}", render_rule(rule))
            }
        }
    }
}
