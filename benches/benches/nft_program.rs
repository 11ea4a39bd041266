//! Bench `nft_program`: programming nftables over netlink (cnet-policy's `Programmer`) versus
//! `nft -f` of the same ruleset rendered as text, in a private network namespace.
//!
//! - full program: 1 table, 5 chains, 10k interval elements, 2,000 rules, one batch
//!   (atomic replace: add table, delete table, add everything);
//! - one-element add and remove: an element-only batch vs `nft add/delete element`.
//!
//! `cargo bench -p cnet-benches --bench nft_program` measures; under `cargo test` it runs a tiny
//! smoke pass.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Instant;

use cnet_benches::{measuring, median};
use cnet_policy::nft::{
    Chain, ChainPolicy, ChangeList, CtState, Element, Expr, Family, Field, Hook, KeyType, Part,
    Programmer, Rule, Ruleset, Set, Table, TableId, Value, Verdict, diff, render_ruleset,
};
use cnet_testsupport::NetNs;

fn build(elements: usize, rules: usize) -> Ruleset {
    let mut cidrs = Set::new("cidrs", &[KeyType::Ipv4Addr]).interval();
    for i in 0..elements as u32 {
        // Disjoint /30 blocks: 10.0.0.0/30, 10.0.0.4/30, ...
        let base = Ipv4Addr::from(0x0a00_0000u32 + i * 4);
        cidrs = cidrs.with_element(Element(vec![Part::prefix(
            ipnetwork::IpNetwork::new(base.into(), 30).unwrap_or_else(|e| panic!("{e}")),
        )]));
    }
    let mut forward =
        Chain::base("forward", Hook::Forward, 0, ChainPolicy::Accept).with_rule(Rule::new(vec![
            Expr::ct_state(&[CtState::Established, CtState::Related]),
            Expr::verdict(Verdict::Accept),
        ]));
    let mut regular: Vec<Chain> = (0..4).map(|i| Chain::regular(&format!("pol{i}"))).collect();
    for (i, c) in regular.iter().enumerate() {
        forward = forward.with_rule(Rule::new(vec![
            Expr::l4proto(6),
            Expr::eq(Field::ThDport, Value::Port(100 + i as u16)),
            Expr::verdict(Verdict::Jump(c.name.clone())),
        ]));
    }
    let mut n = forward.rules.len();
    let mut k = 0usize;
    while n < rules {
        let c = &mut regular[k % 4];
        c.rules.push(Rule::new(vec![
            Expr::ipv4(),
            Expr::in_set(&[Field::IpSaddr], "cidrs"),
            Expr::l4proto(6),
            Expr::eq(Field::ThDport, Value::Port(1000 + (k % 60000) as u16)),
            Expr::Counter,
            Expr::verdict(Verdict::Accept),
        ]));
        k += 1;
        n += 1;
    }
    let mut t = Table::new(Family::Inet, "cnet")
        .with_set(cidrs)
        .with_chain(forward);
    for c in regular {
        t = t.with_chain(c);
    }
    Ruleset::new().with_table(t)
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Run `nft` with these arguments inside the namespace (forked from a thread that entered
/// it, so no `ip netns exec` overhead is timed).
fn nft_in(ns: &NetNs, args: &[&str]) -> f64 {
    ns.in_netns(|| {
        let t = Instant::now();
        let st = Command::new("nft").args(args).status();
        let d = ms(t);
        assert!(st.is_ok_and(|s| s.success()), "nft {args:?} failed");
        d
    })
}

fn main() {
    if !cnet_testsupport::privileged("nft_program bench") {
        return;
    }
    let full = measuring();
    let (elements, rules, runs, small_runs) = if full {
        (10_000, 2_000, 11, 101)
    } else {
        (100, 20, 1, 3)
    };
    let rs = build(elements, rules);
    let t = rs
        .tables
        .values()
        .next()
        .unwrap_or_else(|| panic!("no table"));
    println!(
        "nft_program: 1 table, {} chains, {} interval elements, {} rules (mode: {})",
        t.chains.len(),
        t.sets["cidrs"].elements.len(),
        t.rule_count(),
        if full { "measure" } else { "smoke" }
    );

    // --- full program: ours -----------------------------------------------------------
    let ns = NetNs::new("bnft");
    let replace = ChangeList::replace_all(&rs);
    let (ours_full, ours_sync) = ns.in_netns(|| {
        let mut p = Programmer::new().unwrap_or_else(|e| panic!("{e}"));
        let mut apply = Vec::new();
        let mut sync = Vec::new();
        for _ in 0..runs {
            let t0 = Instant::now();
            p.apply(&replace).unwrap_or_else(|e| panic!("{e}"));
            apply.push(ms(t0));
            p.forget();
            let t0 = Instant::now();
            p.sync(&rs).unwrap_or_else(|e| panic!("{e}"));
            sync.push(ms(t0));
        }
        (median(&mut apply), median(&mut sync))
    });
    let rules_in_kernel = ns
        .run(&["nft", "-a", "list", "table", "inet", "cnet"])
        .lines()
        .filter(|l| l.contains("# handle") && !l.contains("chain ") && !l.contains("set "))
        .count();

    // --- full program: nft -f of the rendered text ------------------------------------------
    let text = format!(
        "table inet cnet\ndelete table inet cnet\n{}",
        render_ruleset(&rs)
    );
    let file = std::env::temp_dir().join(format!("cnet-bench-nft-{}.nft", std::process::id()));
    std::fs::write(&file, &text).unwrap_or_else(|e| panic!("{e}"));
    let path = file.to_string_lossy().into_owned();
    let ns2 = NetNs::new("bnfx");
    let mut nft_full: Vec<f64> = (0..runs).map(|_| nft_in(&ns2, &["-f", &path])).collect();
    let nft_full = median(&mut nft_full);
    let _ = std::fs::remove_file(&file);

    // --- one element add / remove --------------------------------------------------------
    let id = TableId {
        family: Family::Inet,
        name: "cnet".into(),
    };
    let mut plus = rs.clone();
    let extra = Element::value(Value::V4(Ipv4Addr::new(192, 168, 77, 7)));
    if let Some(t) = plus.tables.get_mut(&id)
        && let Some(s) = t.sets.get_mut("cidrs")
    {
        s.elements.insert(extra, None);
    }
    let (ours_add, ours_del) = ns.in_netns(|| {
        let mut p = Programmer::new().unwrap_or_else(|e| panic!("{e}"));
        p.sync(&rs).unwrap_or_else(|e| panic!("{e}"));
        let mut add = Vec::new();
        let mut del = Vec::new();
        for _ in 0..small_runs {
            let t0 = Instant::now();
            p.sync(&plus).unwrap_or_else(|e| panic!("{e}"));
            add.push(ms(t0));
            let t0 = Instant::now();
            p.sync(&rs).unwrap_or_else(|e| panic!("{e}"));
            del.push(ms(t0));
        }
        (median(&mut add), median(&mut del))
    });
    // The same element batches, applied without validation/diff/bookkeeping.
    let add_cl = diff(&rs, &plus);
    let del_cl = diff(&plus, &rs);
    let (raw_add, raw_del) = ns.in_netns(|| {
        let mut p = Programmer::new().unwrap_or_else(|e| panic!("{e}"));
        let mut add = Vec::new();
        let mut del = Vec::new();
        for _ in 0..small_runs {
            let t0 = Instant::now();
            p.apply(&add_cl).unwrap_or_else(|e| panic!("{e}"));
            add.push(ms(t0));
            let t0 = Instant::now();
            p.apply(&del_cl).unwrap_or_else(|e| panic!("{e}"));
            del.push(ms(t0));
        }
        (median(&mut add), median(&mut del))
    });
    let mut diff_t = Vec::new();
    for _ in 0..small_runs.min(21) {
        let t0 = Instant::now();
        let d = diff(&rs, &plus);
        diff_t.push(ms(t0));
        assert_eq!(d.element_changes(), 1);
    }
    let diff_t = median(&mut diff_t);
    let mut nft_add = Vec::new();
    let mut nft_del = Vec::new();
    for _ in 0..small_runs.min(21) {
        nft_add.push(nft_in(
            &ns2,
            &[
                "add",
                "element",
                "inet",
                "cnet",
                "cidrs",
                "{ 192.168.77.7 }",
            ],
        ));
        nft_del.push(nft_in(
            &ns2,
            &[
                "delete",
                "element",
                "inet",
                "cnet",
                "cidrs",
                "{ 192.168.77.7 }",
            ],
        ));
    }
    let (nft_add, nft_del) = (median(&mut nft_add), median(&mut nft_del));

    let f = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.3} ms"));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => format!("{:.1}x", b / a),
        _ => "n/a".into(),
    };
    println!("rules in kernel (nft -a list): {rules_in_kernel}");
    println!(
        "full program, one batch  : netlink apply {} | netlink sync (incl. read-back snapshot) {} | nft -f {} | nft-f/apply {}",
        f(ours_full),
        f(ours_sync),
        f(nft_full),
        ratio(ours_full, nft_full)
    );
    println!(
        "one element add           : netlink {} | nft binary {} | ratio {}",
        f(ours_add),
        f(nft_add),
        ratio(ours_add, nft_add)
    );
    println!(
        "one element remove        : netlink {} | nft binary {} | ratio {}",
        f(ours_del),
        f(nft_del),
        ratio(ours_del, nft_del)
    );
    println!(
        "one element, batch only   : add {} | remove {} (sync = validate + diff {} + batch + generation check)",
        f(raw_add),
        f(raw_del),
        f(diff_t)
    );
}
