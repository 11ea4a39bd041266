//! Calico selector language: every operator, quoting, precedence, and parse errors that
//! point at the column of the bad token (semantics per Calico's policy reference, "Selectors").

use cnet_policy::calico::selector::{Expr, parse};
use std::collections::BTreeMap;

fn l(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn m(sel: &str, labels: &[(&str, &str)]) -> bool {
    parse(sel)
        .unwrap_or_else(|e| panic!("{sel}: {e}"))
        .matches(&l(labels))
}

#[test]
fn equality_and_inequality() {
    assert!(m("app == 'web'", &[("app", "web")]));
    assert!(!m("app == 'web'", &[("app", "db")]));
    assert!(!m("app == 'web'", &[]), "== needs the label");
    assert!(m("app != 'web'", &[("app", "db")]));
    assert!(m("app != 'web'", &[]), "!= holds when the label is absent");
    assert!(!m("app != \"web\"", &[("app", "web")]));
}

#[test]
fn set_membership() {
    assert!(m("env in {'prod', \"stage\"}", &[("env", "stage")]));
    assert!(!m("env in {'prod'}", &[("env", "dev")]));
    assert!(!m("env in {'prod'}", &[]), "in needs the label");
    assert!(
        !m("env in {}", &[("env", "x")]),
        "empty set matches nothing"
    );
    assert!(m("env not in {'prod'}", &[("env", "dev")]));
    assert!(m("env not in {'prod'}", &[]), "not in holds when absent");
    assert!(!m("env not in {'prod', 'dev'}", &[("env", "dev")]));
    assert!(m("env not in {}", &[("env", "x")]));
}

#[test]
fn has_all_global() {
    assert!(m("has(app)", &[("app", "")]));
    assert!(!m("has(app)", &[]));
    assert!(m("!has(app)", &[]));
    assert!(!m("!has(app)", &[("app", "x")]));
    assert!(m("all()", &[]));
    assert!(m("", &[]), "empty selector is all()");
    assert!(m("   ", &[("a", "b")]));
    let g = parse("global()").expect("parses");
    assert!(
        !g.matches(&l(&[])),
        "global() is false for namespaced objects"
    );
    assert!(g.eval(&l(&[]), true));
    assert!(m("has( app )", &[("app", "x")]));
    assert!(m("all( )", &[]));
}

#[test]
fn string_operators() {
    assert!(m("name starts with 'web-'", &[("name", "web-1")]));
    assert!(!m("name starts with 'web-'", &[("name", "db-1")]));
    assert!(!m("name starts with ''", &[]), "needs the label");
    assert!(m("name ends with '-1'", &[("name", "web-1")]));
    assert!(!m("name ends with '-1'", &[("name", "web-2")]));
    assert!(m("name contains 'eb'", &[("name", "web-1")]));
    assert!(!m("name contains 'x'", &[("name", "web-1")]));
    assert!(!m("name contains 'x'", &[]));
}

#[test]
fn boolean_operators_precedence_and_parentheses() {
    let labels = [("a", "1"), ("b", "2")];
    assert!(m("a == '1' && b == '2'", &labels));
    assert!(!m("a == '1' && b == '3'", &labels));
    assert!(m("a == '9' || b == '2'", &labels));
    // && binds tighter than ||.
    assert!(m("a == '1' || a == '9' && b == '9'", &labels));
    assert!(!m("(a == '1' || a == '9') && b == '9'", &labels));
    assert!(m("!(a == '9')", &labels));
    assert!(!m("!a == '1'", &labels), "! applies to the term");
    assert!(m("!!has(a)", &labels));
    assert!(m("((has(a)))", &labels));
}

#[test]
fn keys_and_quoting() {
    assert!(m(
        "projectcalico.org/namespace == 'x' && k8s-app_v1.2 == \"it's\"",
        &[
            ("projectcalico.org/namespace", "x"),
            ("k8s-app_v1.2", "it's")
        ]
    ));
    assert!(m("q == '\"quoted\"'", &[("q", "\"quoted\"")]));
    // Words that are operators elsewhere can be keys.
    assert!(m("in == 'x'", &[("in", "x")]));
    assert!(m("has == 'y'", &[("has", "y")]));
}

#[test]
fn round_trips_through_display() {
    for s in [
        "a == 'x' && (b != 'y' || !has(c))",
        "k in {'1', '2'} || k not in {'3'}",
        "n starts with 'p' && n ends with 's' && n contains 'q'",
        "all() && !global()",
    ] {
        let e = parse(s).expect("parses");
        assert_eq!(parse(&e.to_string()).expect("reparses"), e, "{s} -> {e}");
    }
    assert_eq!(parse("all()").expect("p"), Expr::All);
}

fn col(sel: &str) -> usize {
    match parse(sel) {
        Ok(e) => panic!("{sel:?} parsed as {e:?}"),
        Err(e) => {
            assert!(e.to_string().starts_with(&format!("column {}", e.column)));
            e.column
        }
    }
}

#[test]
fn parse_errors_point_at_the_column() {
    assert_eq!(col("app = 'x'"), 5, "single = is not an operator");
    assert_eq!(col("app == x"), 8, "values must be quoted");
    assert_eq!(col("app == 'x' &&"), 14, "end of input: one past the end");
    assert_eq!(col("app == 'x' & b == 'y'"), 12);
    assert_eq!(col("(a == 'x'"), 10, "missing )");
    assert_eq!(col("a == 'x')"), 9, "stray )");
    assert_eq!(col("a in {'x' 'y'}"), 11, "missing comma");
    assert_eq!(col("a in ('x')"), 6, "sets use braces");
    assert_eq!(col("a == 'unterminated"), 6);
    assert_eq!(col("a not 'x'"), 7, "not must be followed by in");
    assert_eq!(col("a starts 'x'"), 10, "starts needs with");
    assert_eq!(col("has()"), 5, "has needs a key");
    assert_eq!(col("all(x)"), 5, "all() takes no argument");
    assert_eq!(
        col("a == 'x' b == 'y'"),
        10,
        "missing operator between terms"
    );
    assert_eq!(col("a == 'x' && $b == 'y'"), 13, "bad character");
    assert_eq!(col("a"), 2, "key without operator");
    assert_eq!(col("é == 'x'"), 1, "columns count characters");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", "app", "x.io/k-1"]).prop_map(String::from)
    }
    fn val() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["", "1", "web", "it's", "say \"hi\""]).prop_map(String::from)
    }
    fn expr() -> impl Strategy<Value = Expr> {
        let leaf = prop_oneof![
            Just(Expr::All),
            Just(Expr::Global),
            key().prop_map(Expr::Has),
            (key(), val()).prop_map(|(k, v)| Expr::Eq(k, v)),
            (key(), val()).prop_map(|(k, v)| Expr::Ne(k, v)),
            (key(), prop::collection::btree_set(val(), 0..3)).prop_map(|(k, v)| Expr::In(k, v)),
            (key(), prop::collection::btree_set(val(), 0..3)).prop_map(|(k, v)| Expr::NotIn(k, v)),
            (key(), val()).prop_map(|(k, v)| Expr::StartsWith(k, v)),
            (key(), val()).prop_map(|(k, v)| Expr::EndsWith(k, v)),
            (key(), val()).prop_map(|(k, v)| Expr::Contains(k, v)),
        ];
        leaf.prop_recursive(3, 16, 3, |inner| {
            prop_oneof![
                inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
                prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
                prop::collection::vec(inner, 2..4).prop_map(Expr::Or),
            ]
        })
    }
    fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
        prop::collection::btree_map(key(), val(), 0..4)
    }

    /// A direct reading of Calico's documented semantics, independent of `Expr::eval`.
    fn naive(e: &Expr, l: &BTreeMap<String, String>, global: bool) -> bool {
        match e {
            Expr::All => true,
            Expr::Global => global,
            Expr::Has(k) => l.contains_key(k),
            Expr::Eq(k, v) => l.get(k).map(String::as_str) == Some(v.as_str()),
            Expr::Ne(k, v) => !naive(&Expr::Eq(k.clone(), v.clone()), l, global),
            Expr::In(k, vs) => vs
                .iter()
                .any(|v| naive(&Expr::Eq(k.clone(), v.clone()), l, global)),
            Expr::NotIn(k, vs) => !naive(&Expr::In(k.clone(), vs.clone()), l, global),
            Expr::StartsWith(k, v) => l.get(k).is_some_and(|x| x.starts_with(v.as_str())),
            Expr::EndsWith(k, v) => l.get(k).is_some_and(|x| x.ends_with(v.as_str())),
            Expr::Contains(k, v) => l.get(k).is_some_and(|x| x.contains(v.as_str())),
            Expr::Not(e) => !naive(e, l, global),
            Expr::And(v) => v.iter().all(|e| naive(e, l, global)),
            Expr::Or(v) => v.iter().any(|e| naive(e, l, global)),
        }
    }

    proptest! {
        #[test]
        fn display_parse_round_trip_and_semantics(e in expr(), l in labels(), global in any::<bool>()) {
            let text = e.to_string();
            let back = parse(&text).map_err(|err| TestCaseError::fail(format!("{text}: {err}")))?;
            prop_assert_eq!(back.eval(&l, global), e.eval(&l, global), "{}", text);
            prop_assert_eq!(e.eval(&l, global), naive(&e, &l, global));
        }

        #[test]
        fn arbitrary_text_never_panics(s in "[a-z!&|(){}'\" ,=.]{0,30}") {
            if let Err(err) = parse(&s) {
                prop_assert!(err.column >= 1 && err.column <= s.chars().count() + 1, "{s:?}: {err}");
            }
        }
    }
}
