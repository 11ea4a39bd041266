//! Checks an IR before it is rendered or programmed, so that a bad IR fails with a typed error
//! naming the object instead of a kernel errno half-way through a batch.

use super::NftError;
use super::ir::{
    ChainKind, Element, Expr, Family, Field, KeyType, MatchOp, NFPROTO_IPV4, NFPROTO_IPV6,
    PROTO_ICMPV6, Part, Rule, Ruleset, Set, Table, Value, Verdict,
};

/// Longest name we accept for tables, chains and sets.
pub const MAX_NAME: usize = 64;
/// Longest comment or log prefix (libnftnl's user-data limit is 128 with the NUL).
pub const MAX_TEXT: usize = 127;
/// Register space available to a concatenated key (16 × 32-bit registers).
pub const MAX_KEY_BYTES: usize = 64;

/// Bytes a field occupies in the registers: its length rounded up to 4.
pub fn padded_len(t: KeyType) -> usize {
    t.byte_len().div_ceil(4) * 4
}

fn invalid(table: &Table, what: String) -> NftError {
    NftError::Invalid {
        table: table.id().to_string(),
        what,
    }
}

fn check_name(table: &Table, kind: &str, name: &str) -> Result<(), NftError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            table,
            format!(
                "{kind} name {name:?}: must be 1..={MAX_NAME} of [A-Za-z0-9_-], starting with a letter or _"
            ),
        ))
    }
}

fn value_problem(want: KeyType, v: &Value) -> Option<String> {
    if v.key_type() != want {
        return Some(format!("value {v:?} is not of type {}", want.keyword()));
    }
    if let Value::Ifname(n) = v
        && (n.is_empty() || n.len() > 15 || n.contains('\0') || n.contains('"'))
    {
        return Some(format!("bad interface name {n:?}"));
    }
    None
}

fn check_value(table: &Table, ctx: &str, want: KeyType, v: &Value) -> Result<(), NftError> {
    match value_problem(want, v) {
        Some(what) => Err(invalid(table, format!("{ctx}: {what}"))),
        None => Ok(()),
    }
}

/// Validate a whole ruleset.
pub fn validate(rs: &Ruleset) -> Result<(), NftError> {
    for t in rs.tables.values() {
        validate_table(t)?;
    }
    Ok(())
}

/// Validate one table: names, types, references, dependencies and interval overlaps.
pub fn validate_table(t: &Table) -> Result<(), NftError> {
    check_name(t, "table", &t.name)?;
    for (name, c) in &t.chains {
        check_name(t, "chain", name)?;
        if *name != c.name {
            return Err(invalid(
                t,
                format!("chain key {name:?} != name {:?}", c.name),
            ));
        }
    }
    for (name, s) in &t.sets {
        check_name(t, "set", name)?;
        if *name != s.decl.name {
            return Err(invalid(
                t,
                format!("set key {name:?} != name {:?}", s.decl.name),
            ));
        }
        validate_set(t, s)?;
    }
    for c in t.chains.values() {
        for (i, r) in c.rules.iter().enumerate() {
            validate_rule(t, &format!("chain {} rule {i}", c.name), r)?;
        }
    }
    Ok(())
}

fn check_target(t: &Table, ctx: &str, v: &Verdict) -> Result<(), NftError> {
    if let Some(target) = v.target() {
        match t.chains.get(target) {
            Some(c) if c.kind == ChainKind::Regular => {}
            Some(_) => {
                return Err(invalid(
                    t,
                    format!("{ctx}: cannot jump/goto base chain {target:?}"),
                ));
            }
            None => {
                return Err(invalid(t, format!("{ctx}: no chain {target:?}")));
            }
        }
    }
    Ok(())
}

fn validate_set(t: &Table, s: &Set) -> Result<(), NftError> {
    let d = &s.decl;
    let ctx = format!("set {}", d.name);
    if d.key.is_empty() {
        return Err(invalid(t, format!("{ctx}: empty key")));
    }
    if let Some(k) = d.key.iter().find(|k| !k.is_set_key()) {
        return Err(invalid(
            t,
            format!("{ctx}: {} cannot be a set key", k.keyword()),
        ));
    }
    let bytes: usize = d.key.iter().map(|k| padded_len(*k)).sum();
    if bytes > MAX_KEY_BYTES {
        return Err(invalid(
            t,
            format!("{ctx}: key of {bytes} bytes exceeds {MAX_KEY_BYTES}"),
        ));
    }
    for (e, v) in &s.elements {
        // Context strings are only built for the element that fails (sets hold 10k+).
        let fail = |what: String| invalid(t, format!("{ctx} element {e:?}: {what}"));
        if e.0.len() != d.key.len() {
            return Err(fail(format!(
                "{} fields for a key of {}",
                e.0.len(),
                d.key.len()
            )));
        }
        for (p, k) in e.0.iter().zip(&d.key) {
            if let Some(what) = value_problem(*k, p.start()) {
                return Err(fail(what));
            }
            if let Part::Range(a, b) = p {
                if let Some(what) = value_problem(*k, b) {
                    return Err(fail(what));
                }
                if !d.interval {
                    return Err(fail("range in a set without interval flag".into()));
                }
                if a > b {
                    return Err(fail("range start after end".into()));
                }
            }
        }
        match (d.verdict_map, v) {
            (true, Some(v)) => {
                if v.target().is_some() {
                    check_target(t, &format!("{ctx} element {e:?}"), v)?;
                }
            }
            (false, None) => {}
            (true, None) => return Err(fail("map entry without verdict".into())),
            (false, Some(_)) => return Err(fail("verdict in a plain set".into())),
        }
    }
    if d.interval && d.key.len() == 1 {
        check_overlaps(t, &ctx, s.elements.keys())?;
    }
    Ok(())
}

/// Intervals of a one-field interval set must not overlap: the kernel refuses an overlapping
/// element with EEXIST and fails the whole batch.
fn check_overlaps<'a>(
    t: &Table,
    ctx: &str,
    elems: impl Iterator<Item = &'a Element>,
) -> Result<(), NftError> {
    let mut spans: Vec<(&Value, &Value)> = elems
        .filter_map(|e| e.0.first())
        .map(|p| (p.start(), p.end()))
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        if w[1].0 <= w[0].1 {
            return Err(invalid(
                t,
                format!(
                    "{ctx}: elements {:?}-{:?} and {:?}-{:?} overlap",
                    w[0].0, w[0].1, w[1].0, w[1].1
                ),
            ));
        }
    }
    Ok(())
}

/// What earlier expressions of a rule have established about the packet.
#[derive(Default)]
struct Deps {
    nfproto: Option<u8>,
    ether: Option<u16>,
    l4proto: Option<u8>,
}

fn check_field_dep(t: &Table, ctx: &str, f: Field, deps: &Deps) -> Result<(), NftError> {
    let need_v4 = matches!(f, Field::IpSaddr | Field::IpDaddr);
    let need_v6 = matches!(f, Field::Ip6Saddr | Field::Ip6Daddr | Field::Icmpv6Type);
    let ok = match (t.family, need_v4, need_v6) {
        (_, false, false) => true,
        (Family::Ip, v4, _) => v4,
        (Family::Ip6, _, v6) => v6,
        (Family::Inet, true, _) => deps.nfproto == Some(NFPROTO_IPV4),
        (Family::Inet, _, true) => deps.nfproto == Some(NFPROTO_IPV6),
        (Family::Bridge, true, _) => deps.ether == Some(0x0800),
        (Family::Bridge, _, true) => deps.ether == Some(0x86dd),
    };
    if !ok {
        let need = match t.family {
            Family::Bridge => "an earlier `meta protocol ip|ip6` match",
            Family::Inet => "an earlier `meta nfproto ipv4|ipv6` match",
            _ => "a table of the matching family",
        };
        return Err(invalid(t, format!("{ctx}: {} needs {need}", f.keyword())));
    }
    if f == Field::Icmpv6Type && deps.l4proto != Some(PROTO_ICMPV6) {
        return Err(invalid(
            t,
            format!("{ctx}: icmpv6 type needs an earlier `meta l4proto ipv6-icmp` match"),
        ));
    }
    Ok(())
}

fn validate_rule(t: &Table, ctx: &str, r: &Rule) -> Result<(), NftError> {
    if r.comment
        .as_ref()
        .is_some_and(|c| c.len() > MAX_TEXT || c.contains('"'))
    {
        return Err(invalid(
            t,
            format!("{ctx}: comment too long or contains '\"'"),
        ));
    }
    let mut deps = Deps::default();
    for (i, e) in r.exprs.iter().enumerate() {
        let terminal = matches!(e, Expr::Verdict(_) | Expr::Vmap { .. });
        if terminal && i + 1 != r.exprs.len() {
            return Err(invalid(t, format!("{ctx}: verdict or vmap must be last")));
        }
        match e {
            Expr::Match { fields, op } => {
                if fields.is_empty() {
                    return Err(invalid(t, format!("{ctx}: match without fields")));
                }
                for f in fields {
                    check_field_dep(t, ctx, *f, &deps)?;
                }
                match op {
                    MatchOp::Eq(v) | MatchOp::Ne(v) => {
                        one_field(t, ctx, fields)?;
                        check_value(t, ctx, fields[0].key_type(), v)?;
                        if let MatchOp::Eq(v) = op {
                            match v {
                                Value::Nfproto(p) => deps.nfproto = Some(*p),
                                Value::EtherType(p) => deps.ether = Some(*p),
                                Value::Proto(p) => deps.l4proto = Some(*p),
                                _ => {}
                            }
                        }
                    }
                    MatchOp::Range(a, b) | MatchOp::NotRange(a, b) => {
                        one_field(t, ctx, fields)?;
                        check_value(t, ctx, fields[0].key_type(), a)?;
                        check_value(t, ctx, fields[0].key_type(), b)?;
                        if a > b {
                            return Err(invalid(t, format!("{ctx}: range start after end")));
                        }
                    }
                    MatchOp::InSet(s) | MatchOp::NotInSet(s) => {
                        check_lookup(t, ctx, fields, s, false)?;
                    }
                }
            }
            Expr::Vmap { fields, map } => {
                for f in fields {
                    check_field_dep(t, ctx, *f, &deps)?;
                }
                check_lookup(t, ctx, fields, map, true)?;
            }
            Expr::CtState { states, .. } => {
                if states.is_empty() {
                    return Err(invalid(t, format!("{ctx}: ct state without states")));
                }
            }
            Expr::Log { prefix } => {
                if prefix.len() > MAX_TEXT || prefix.contains('"') {
                    return Err(invalid(t, format!("{ctx}: bad log prefix {prefix:?}")));
                }
            }
            Expr::Counter | Expr::Notrack => {}
            Expr::Verdict(v) => check_target(t, ctx, v)?,
        }
    }
    Ok(())
}

fn one_field(t: &Table, ctx: &str, fields: &[Field]) -> Result<(), NftError> {
    if fields.len() == 1 {
        Ok(())
    } else {
        Err(invalid(
            t,
            format!("{ctx}: comparisons take one field; use a set for concatenations"),
        ))
    }
}

fn check_lookup(
    t: &Table,
    ctx: &str,
    fields: &[Field],
    name: &str,
    want_map: bool,
) -> Result<(), NftError> {
    let Some(s) = t.sets.get(name) else {
        return Err(invalid(t, format!("{ctx}: no set {name:?}")));
    };
    if s.decl.verdict_map != want_map {
        let what = if want_map {
            "vmap needs a verdict map"
        } else {
            "@set needs a plain set"
        };
        return Err(invalid(t, format!("{ctx}: {what}: {name:?}")));
    }
    let types: Vec<KeyType> = fields.iter().map(|f| f.key_type()).collect();
    if types != s.decl.key {
        return Err(invalid(
            t,
            format!(
                "{ctx}: fields {types:?} do not match the key {:?} of {name:?}",
                s.decl.key
            ),
        ));
    }
    Ok(())
}
