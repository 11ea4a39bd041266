//! Calico's selector language: our own parser and evaluator.
//!
//! Grammar (as in Calico's policy reference, "Selectors"):
//!
//! ```text
//! expr    := or
//! or      := and ( "||" and )*
//! and     := unary ( "&&" unary )*
//! unary   := "!" unary | "(" expr ")" | term
//! term    := "all()" | "global()" | "has(" key ")"
//!          | key "==" str | key "!=" str
//!          | key "in" set | key "not" "in" set
//!          | key "starts" "with" str | key "ends" "with" str | key "contains" str
//! set     := "{" [ str ( "," str )* ] "}"
//! str     := '"' chars '"' | "'" chars "'"     (no escapes; the other quote may appear inside)
//! key     := [A-Za-z0-9_./-]+
//! ```
//!
//! An empty (or all-blank) selector is `all()`. Semantics: `k == v` needs the label present
//! with that value; `k != v` holds when the label is absent or differs; `k in {..}` needs it
//! present with one of the values; `k not in {..}` holds when it is absent or none of them;
//! `starts with`, `ends with`, `contains` need the label present. `global()` holds only for
//! non-namespaced objects (global network sets, host endpoints); the caller says which.
//! Parse errors carry the 1-based column (in characters) of the offending token.

use crate::model::Labels;
use std::collections::BTreeSet;
use std::fmt;

/// A parsed Calico selector expression.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Expr {
    /// `all()`: everything.
    All,
    /// `global()`: only non-namespaced objects.
    Global,
    /// `has(k)`.
    Has(String),
    /// `k == v`.
    Eq(String, String),
    /// `k != v`.
    Ne(String, String),
    /// `k in {..}`.
    In(String, BTreeSet<String>),
    /// `k not in {..}`.
    NotIn(String, BTreeSet<String>),
    /// `k starts with v`.
    StartsWith(String, String),
    /// `k ends with v`.
    EndsWith(String, String),
    /// `k contains v`.
    Contains(String, String),
    /// `!e`.
    Not(Box<Expr>),
    /// `a && b && ..`.
    And(Vec<Expr>),
    /// `a || b || ..`.
    Or(Vec<Expr>),
}

/// A selector parse error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectorError {
    /// 1-based column (characters) of the bad token; one past the end for "unexpected end".
    pub column: usize,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for SelectorError {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Str(String),
    AllFn,
    GlobalFn,
    HasOpen,
    Not,
    EqEq,
    NotEq,
    And,
    Or,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-')
}

fn tokenize(s: &str) -> Result<Vec<(usize, Tok)>, SelectorError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |i: usize, m: String| SelectorError {
        column: i + 1,
        message: m,
    };
    let starts = |i: usize, pat: &str| {
        let p: Vec<char> = pat.chars().collect();
        chars.len() >= i + p.len() && chars[i..i + p.len()] == p[..]
    };
    while i < chars.len() {
        let c = chars[i];
        let col = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let (tok, len) = if starts(i, "&&") {
            (Tok::And, 2)
        } else if starts(i, "||") {
            (Tok::Or, 2)
        } else if starts(i, "==") {
            (Tok::EqEq, 2)
        } else if starts(i, "!=") {
            (Tok::NotEq, 2)
        } else if c == '!' {
            (Tok::Not, 1)
        } else if c == '(' {
            (Tok::LParen, 1)
        } else if c == ')' {
            (Tok::RParen, 1)
        } else if c == '{' {
            (Tok::LBrace, 1)
        } else if c == '}' {
            (Tok::RBrace, 1)
        } else if c == ',' {
            (Tok::Comma, 1)
        } else if c == '"' || c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|&x| x == c)
                .ok_or_else(|| err(col, "unterminated string".into()))?;
            let v: String = chars[i + 1..i + 1 + end].iter().collect();
            (Tok::Str(v), end + 2)
        } else if is_key_char(c) {
            let mut j = i;
            while j < chars.len() && is_key_char(chars[j]) {
                j += 1;
            }
            let word: String = chars[i..j].iter().collect();
            // Function calls: the word followed (after blanks) by "(".
            let mut k = j;
            while k < chars.len() && chars[k].is_whitespace() {
                k += 1;
            }
            let call = k < chars.len() && chars[k] == '(';
            let close_after = |k: usize| {
                let mut m = k + 1;
                while m < chars.len() && chars[m].is_whitespace() {
                    m += 1;
                }
                (m < chars.len() && chars[m] == ')').then_some(m + 1)
            };
            match (word.as_str(), call) {
                ("has", true) => (Tok::HasOpen, k + 1 - i),
                ("all", true) | ("global", true) => {
                    let end = close_after(k)
                        .ok_or_else(|| err(k + 1, format!("{word}() takes no arguments")))?;
                    let t = if word == "all" {
                        Tok::AllFn
                    } else {
                        Tok::GlobalFn
                    };
                    (t, end - i)
                }
                _ => (Tok::Ident(word), j - i),
            }
        } else {
            return Err(err(col, format!("unexpected character {c:?}")));
        };
        out.push((col, tok));
        i += len;
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end_col: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }
    fn col(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end_col, |t| t.0 + 1)
    }
    fn fail<T>(&self, what: &str) -> Result<T, SelectorError> {
        let found = match self.peek() {
            None => "end of selector".to_string(),
            Some(t) => format!("{t:?}"),
        };
        Err(SelectorError {
            column: self.col(),
            message: format!("expected {what}, found {found}"),
        })
    }
    fn bump(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.1.clone());
        self.pos += 1;
        t
    }
    fn or(&mut self) -> Result<Expr, SelectorError> {
        let mut v = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Expr::Or(v)
        })
    }
    fn and(&mut self) -> Result<Expr, SelectorError> {
        let mut v = vec![self.unary()?];
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            v.push(self.unary()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Expr::And(v)
        })
    }
    fn unary(&mut self) -> Result<Expr, SelectorError> {
        match self.peek() {
            Some(Tok::Not) => {
                self.pos += 1;
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Some(Tok::LParen) => {
                self.pos += 1;
                let e = self.or()?;
                if self.peek() != Some(&Tok::RParen) {
                    return self.fail("')'");
                }
                self.pos += 1;
                Ok(e)
            }
            Some(Tok::AllFn) => {
                self.pos += 1;
                Ok(Expr::All)
            }
            Some(Tok::GlobalFn) => {
                self.pos += 1;
                Ok(Expr::Global)
            }
            Some(Tok::HasOpen) => {
                self.pos += 1;
                let Some(Tok::Ident(k)) = self.peek().cloned() else {
                    return self.fail("a label key inside has()");
                };
                self.pos += 1;
                if self.peek() != Some(&Tok::RParen) {
                    return self.fail("')' closing has(");
                }
                self.pos += 1;
                Ok(Expr::Has(k))
            }
            Some(Tok::Ident(_)) => self.term(),
            _ => self.fail("a label key, has(), all(), global(), '!' or '('"),
        }
    }
    fn string(&mut self) -> Result<String, SelectorError> {
        match self.peek() {
            Some(Tok::Str(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => self.fail("a quoted string"),
        }
    }
    fn word(&mut self, w: &str) -> Result<(), SelectorError> {
        match self.peek() {
            Some(Tok::Ident(x)) if x == w => {
                self.pos += 1;
                Ok(())
            }
            _ => self.fail(&format!("'{w}'")),
        }
    }
    fn set(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        if self.peek() != Some(&Tok::LBrace) {
            return self.fail("'{'");
        }
        self.pos += 1;
        let mut out = BTreeSet::new();
        if self.peek() == Some(&Tok::RBrace) {
            self.pos += 1;
            return Ok(out);
        }
        loop {
            out.insert(self.string()?);
            match self.bump() {
                Some(Tok::Comma) => continue,
                Some(Tok::RBrace) => return Ok(out),
                _ => {
                    self.pos -= 1;
                    return self.fail("',' or '}'");
                }
            }
        }
    }
    fn term(&mut self) -> Result<Expr, SelectorError> {
        let Some(Tok::Ident(key)) = self.bump() else {
            self.pos -= 1;
            return self.fail("a label key");
        };
        match self.peek().cloned() {
            Some(Tok::EqEq) => {
                self.pos += 1;
                Ok(Expr::Eq(key, self.string()?))
            }
            Some(Tok::NotEq) => {
                self.pos += 1;
                Ok(Expr::Ne(key, self.string()?))
            }
            Some(Tok::Ident(w)) => {
                self.pos += 1;
                match w.as_str() {
                    "in" => Ok(Expr::In(key, self.set()?)),
                    "not" => {
                        self.word("in")?;
                        Ok(Expr::NotIn(key, self.set()?))
                    }
                    "starts" => {
                        self.word("with")?;
                        Ok(Expr::StartsWith(key, self.string()?))
                    }
                    "ends" => {
                        self.word("with")?;
                        Ok(Expr::EndsWith(key, self.string()?))
                    }
                    "contains" => Ok(Expr::Contains(key, self.string()?)),
                    _ => {
                        self.pos -= 1;
                        self.fail(
                            "an operator (==, !=, in, not in, starts with, ends with, contains)",
                        )
                    }
                }
            }
            _ => self.fail("an operator (==, !=, in, not in, starts with, ends with, contains)"),
        }
    }
}

/// Parse a Calico selector; blank means `all()`.
pub fn parse(s: &str) -> Result<Expr, SelectorError> {
    let toks = tokenize(s)?;
    if toks.is_empty() {
        return Ok(Expr::All);
    }
    let mut p = Parser {
        toks,
        pos: 0,
        end_col: s.chars().count() + 1,
    };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        return p.fail("'&&', '||' or end of selector");
    }
    Ok(e)
}

impl Expr {
    /// Evaluate against labels; `global` says whether the object is non-namespaced.
    pub fn eval(&self, labels: &Labels, global: bool) -> bool {
        let get = |k: &str| labels.get(k);
        match self {
            Expr::All => true,
            Expr::Global => global,
            Expr::Has(k) => get(k).is_some(),
            Expr::Eq(k, v) => get(k) == Some(v),
            Expr::Ne(k, v) => get(k) != Some(v),
            Expr::In(k, vs) => get(k).is_some_and(|x| vs.contains(x)),
            Expr::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(x)),
            Expr::StartsWith(k, v) => get(k).is_some_and(|x| x.starts_with(v.as_str())),
            Expr::EndsWith(k, v) => get(k).is_some_and(|x| x.ends_with(v.as_str())),
            Expr::Contains(k, v) => get(k).is_some_and(|x| x.contains(v.as_str())),
            Expr::Not(e) => !e.eval(labels, global),
            Expr::And(v) => v.iter().all(|e| e.eval(labels, global)),
            Expr::Or(v) => v.iter().any(|e| e.eval(labels, global)),
        }
    }

    /// The same expression with `prefix` put before every label key (Calico turns a
    /// service-account selector `k == 'v'` into the endpoint selector `pcsa.k == 'v'`).
    pub fn with_key_prefix(&self, prefix: &str) -> Expr {
        let p = |k: &String| format!("{prefix}{k}");
        match self {
            Expr::All => Expr::All,
            Expr::Global => Expr::Global,
            Expr::Has(k) => Expr::Has(p(k)),
            Expr::Eq(k, v) => Expr::Eq(p(k), v.clone()),
            Expr::Ne(k, v) => Expr::Ne(p(k), v.clone()),
            Expr::In(k, vs) => Expr::In(p(k), vs.clone()),
            Expr::NotIn(k, vs) => Expr::NotIn(p(k), vs.clone()),
            Expr::StartsWith(k, v) => Expr::StartsWith(p(k), v.clone()),
            Expr::EndsWith(k, v) => Expr::EndsWith(p(k), v.clone()),
            Expr::Contains(k, v) => Expr::Contains(p(k), v.clone()),
            Expr::Not(e) => Expr::Not(Box::new(e.with_key_prefix(prefix))),
            Expr::And(v) => Expr::And(v.iter().map(|e| e.with_key_prefix(prefix)).collect()),
            Expr::Or(v) => Expr::Or(v.iter().map(|e| e.with_key_prefix(prefix)).collect()),
        }
    }

    /// `a && b`, without `all()` terms.
    pub fn and(a: Expr, b: Expr) -> Expr {
        match (a, b) {
            (Expr::All, e) | (e, Expr::All) => e,
            (a, b) => Expr::And(vec![a, b]),
        }
    }

    /// Evaluate against a namespaced object's labels (`global()` is false).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.eval(labels, false)
    }
}

fn quote(v: &str) -> String {
    if v.contains('"') {
        format!("'{v}'")
    } else {
        format!("\"{v}\"")
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set =
            |vs: &BTreeSet<String>| vs.iter().map(|v| quote(v)).collect::<Vec<_>>().join(", ");
        match self {
            Expr::All => write!(f, "all()"),
            Expr::Global => write!(f, "global()"),
            Expr::Has(k) => write!(f, "has({k})"),
            Expr::Eq(k, v) => write!(f, "{k} == {}", quote(v)),
            Expr::Ne(k, v) => write!(f, "{k} != {}", quote(v)),
            Expr::In(k, vs) => write!(f, "{k} in {{{}}}", set(vs)),
            Expr::NotIn(k, vs) => write!(f, "{k} not in {{{}}}", set(vs)),
            Expr::StartsWith(k, v) => write!(f, "{k} starts with {}", quote(v)),
            Expr::EndsWith(k, v) => write!(f, "{k} ends with {}", quote(v)),
            Expr::Contains(k, v) => write!(f, "{k} contains {}", quote(v)),
            Expr::Not(e) => write!(f, "!({e})"),
            Expr::And(v) | Expr::Or(v) => {
                let op = if matches!(self, Expr::And(_)) {
                    " && "
                } else {
                    " || "
                };
                let parts: Vec<String> = v.iter().map(|e| format!("({e})")).collect();
                f.write_str(&parts.join(op))
            }
        }
    }
}
