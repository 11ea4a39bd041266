//! A deterministic policy workload shared by the policy and dataplane benches: pods in
//! namespaces (100 per namespace, labels `app`, `tier`), Kubernetes NetworkPolicies of
//! realistic shapes (app tiers, namespace isolation, ipBlocks with `except`, named ports), and
//! the same policies rendered for two iptables baselines with the same verdicts:
//!
//! - (a) **per-pair**: one rule per (selected pod, peer address, port), the O(n²) design the
//!   seed describes for Azure NPM's first policy manager;
//! - (b) **ipset + iptables**: one ipset per selector, one chain per policy, rules per rule
//!   (Calico's and kube-router's iptables designs).
//!
//! Policies are ingress-only (egress would double every count without changing the shape).
//!
//! ```
//! use cnet_benches::workload::Workload;
//! let w = Workload::new(200, 8);
//! assert_eq!(w.k8s_policies().len(), 8);
//! let (sets, rules) = w.ipset_restore();
//! assert!(sets.contains("create ") && rules.contains("-j DROP"));
//! assert!(w.per_pair_rule_count() > w.ipset_rule_count());
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use cnet_policy::Endpoint;
use cnet_policy::api::{
    API_VERSION, IntOrString, IpBlock, KIND, LabelSelector, NetworkPolicy,
    NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec, ObjectMeta,
};
use cnet_policy::endpoint::NamedPort;
use cnet_policy::model::Protocol;

/// Pods per namespace.
pub const PODS_PER_NS: usize = 100;
const APPS: usize = 10;
const TIERS: [&str; 3] = ["web", "api", "db"];
/// Port of the `http` named port every pod has.
pub const HTTP_PORT: u16 = 8080;

/// One pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Pod {
    /// Namespace index (`ns<i>`).
    pub ns: usize,
    /// Name.
    pub name: String,
    /// IPv4 address.
    pub addr: Ipv4Addr,
    /// `app=app<k>`.
    pub app: usize,
    /// `tier=TIERS[t]`.
    pub tier: usize,
    /// Extra `role` label (the dataplane bench's client and server).
    pub role: Option<String>,
}

/// Which pods a selector picks (the shapes the generator uses).
#[derive(Debug, Clone, PartialEq)]
pub enum Sel {
    /// `app=app<k>` in one namespace.
    NsApp(usize, usize),
    /// Every pod of a namespace.
    Ns(usize),
    /// `tier=<t>` in one namespace.
    NsTier(usize, usize),
    /// Every pod in namespaces labelled `team=t<k>` (namespace `i` has team `i % 4`).
    Team(usize),
    /// `tier=<t>` in any namespace.
    AnyTier(usize),
    /// `role=<r>` in one namespace.
    NsRole(usize, String),
}

impl Sel {
    /// Whether the selector picks this pod.
    pub fn picks(&self, p: &Pod) -> bool {
        match self {
            Sel::NsApp(ns, app) => p.ns == *ns && p.app == *app,
            Sel::Ns(ns) => p.ns == *ns,
            Sel::NsTier(ns, t) => p.ns == *ns && p.tier == *t,
            Sel::Team(t) => p.ns % 4 == *t,
            Sel::AnyTier(t) => p.tier == *t,
            Sel::NsRole(ns, r) => p.ns == *ns && p.role.as_deref() == Some(r),
        }
    }

    /// A stable key naming the selector (shared ipsets).
    pub fn key(&self) -> String {
        format!("{self:?}")
    }
}

/// Where allowed traffic may come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Pods picked by a selector.
    Pods(Sel),
    /// An ipBlock: a CIDR minus exceptions.
    Block {
        /// `10.0.0.0/8`.
        cidr: String,
        /// Exceptions.
        except: Vec<String>,
    },
}

/// One policy: subjects, and an ingress rule (sources, TCP ports).
#[derive(Debug, Clone, PartialEq)]
pub struct Pol {
    /// Namespace index.
    pub ns: usize,
    /// Name.
    pub name: String,
    /// Selected pods.
    pub subjects: Sel,
    /// Allowed sources.
    pub from: Source,
    /// Allowed TCP ports (named ports resolved).
    pub ports: Vec<u16>,
    /// The port as written in the Kubernetes object (named for the named-port shape).
    pub named: bool,
}

/// Pods and policies.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Every pod.
    pub pods: Vec<Pod>,
    /// Every policy.
    pub policies: Vec<Pol>,
    /// Number of namespaces.
    pub namespaces: usize,
}

fn pod(n: usize) -> Pod {
    // 10.128.0.0/9 and up: inside the ipBlock 10.0.0.0/8, outside its exceptions
    // (10.<ns % 100>.0.0/16).
    let addr = Ipv4Addr::from(0x0a80_0000u32 + n as u32 + 1);
    let in_ns = n % PODS_PER_NS;
    Pod {
        ns: n / PODS_PER_NS,
        name: format!("pod{n}"),
        addr,
        app: in_ns % APPS,
        tier: in_ns % 3,
        role: None,
    }
}

impl Workload {
    /// `pods` pods (100 per namespace) and `policies` policies spread over the namespaces,
    /// shapes cycling through app tier, namespace isolation, ipBlock and named port.
    pub fn new(pods: usize, policies: usize) -> Workload {
        let namespaces = pods.div_ceil(PODS_PER_NS).max(1);
        let pods: Vec<Pod> = (0..pods).map(pod).collect();
        let mut out = Vec::new();
        for i in 0..policies {
            let ns = i % namespaces;
            let k = i / namespaces;
            let app = k % APPS;
            // The shape cycles with the policy's index, so every scale mixes all four (with
            // `k % 4` alone, 100 policies over 100 namespaces were all app-tier policies).
            let (subjects, from, ports, named) = match (i + k) % 4 {
                0 => (
                    Sel::NsApp(ns, app),
                    Source::Pods(Sel::NsApp(ns, (app + 1) % APPS)),
                    vec![HTTP_PORT],
                    false,
                ),
                1 => (
                    Sel::Ns(ns),
                    Source::Pods(Sel::Team(ns % 4)),
                    vec![80, 443],
                    false,
                ),
                2 => (
                    Sel::NsTier(ns, 2),
                    Source::Block {
                        cidr: "10.0.0.0/8".into(),
                        except: vec![format!("10.{}.0.0/16", ns % 100)],
                    },
                    vec![5432],
                    false,
                ),
                _ => (
                    Sel::NsApp(ns, app),
                    Source::Pods(Sel::AnyTier(0)),
                    vec![HTTP_PORT],
                    true,
                ),
            };
            out.push(Pol {
                ns,
                name: format!("p{i}"),
                subjects,
                from,
                ports,
                named,
            });
        }
        Workload {
            pods,
            policies: out,
            namespaces,
        }
    }

    /// Make pods 0 and 1 a client and a server (`role` labels) and add a policy that allows
    /// the client to reach the server on `ports` (the dataplane bench's traffic), placed in
    /// the middle of the policy list.
    pub fn with_pair_allow(mut self, ports: &[u16]) -> Workload {
        if self.pods.len() < 2 {
            self.pods = (0..2).map(pod).collect();
        }
        self.pods[0].role = Some("client".into());
        self.pods[1].role = Some("server".into());
        // In the middle: a new connection walks about half of a linear rule list (per-pair).
        let mid = self.policies.len() / 2;
        self.policies.insert(
            mid,
            Pol {
                ns: 0,
                name: "bench-pair".into(),
                subjects: Sel::NsRole(0, "server".into()),
                from: Source::Pods(Sel::NsRole(0, "client".into())),
                ports: ports.to_vec(),
                named: false,
            },
        );
        self
    }

    /// A cnet [`Engine`](cnet_policy::engine::Engine) in transparent mode loaded with the
    /// namespaces, pods (host interface of pod `i`: `ifname(i)`) and policies.
    pub fn engine(
        &self,
        ifname: &dyn Fn(usize) -> String,
    ) -> Result<cnet_policy::engine::Engine, String> {
        use cnet_policy::compile::Mode;
        let mut e = cnet_policy::engine::Engine::new(Mode::Transparent);
        for ns in 0..self.namespaces {
            e.upsert_namespace(&format!("ns{ns}"), Workload::namespace_labels(ns));
        }
        for (i, p) in self.pods.iter().enumerate() {
            e.upsert_endpoint(Workload::endpoint(p), Some(ifname(i)));
        }
        for np in self.k8s_policies() {
            e.apply_policy(&np)
                .map_err(|err| format!("policy {}: {err}", np.metadata.name))?;
        }
        Ok(e)
    }

    /// A pod that is not in the workload yet (for one-pod updates): the next address, in
    /// namespace 0 (where policies are), `app0`, `web`.
    pub fn extra_pod(&self) -> Pod {
        let mut p = pod(self.pods.len());
        p.ns = 0;
        p.app = 0;
        p.tier = 0;
        p.name = format!("extra{}", self.pods.len());
        p
    }

    /// Labels of a pod as Kubernetes sees them.
    pub fn labels(p: &Pod) -> BTreeMap<String, String> {
        let mut l = BTreeMap::from([
            ("app".to_string(), format!("app{}", p.app)),
            ("tier".to_string(), TIERS[p.tier].to_string()),
        ]);
        if let Some(r) = &p.role {
            l.insert("role".into(), r.clone());
        }
        l
    }

    /// The pod as a cnet-policy endpoint (with the `http` named port).
    pub fn endpoint(p: &Pod) -> Endpoint {
        let mut ep = Endpoint::new(
            &format!("ns{}", p.ns),
            &p.name,
            Workload::labels(p),
            vec![IpAddr::V4(p.addr)],
        );
        ep.named_ports.insert(
            "http".into(),
            NamedPort {
                port: HTTP_PORT,
                protocol: Protocol::Tcp,
            },
        );
        ep
    }

    /// Namespace labels (`team`, and the well-known name label).
    pub fn namespace_labels(ns: usize) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("team".to_string(), format!("t{}", ns % 4)),
            ("kubernetes.io/metadata.name".to_string(), format!("ns{ns}")),
        ])
    }

    /// The policies as Kubernetes NetworkPolicy objects.
    pub fn k8s_policies(&self) -> Vec<NetworkPolicy> {
        self.policies.iter().map(k8s).collect()
    }

    fn pick<'a>(&'a self, s: &'a Sel) -> impl Iterator<Item = &'a Pod> + 'a {
        self.pods.iter().filter(move |p| s.picks(p))
    }

    /// Rules baseline (a) needs: the sum over policies of subjects × sources × ports, plus one
    /// drop per selected pod and the conntrack rule.
    pub fn per_pair_rule_count(&self) -> usize {
        let mut n = 1;
        for p in &self.policies {
            let subj = self.pick(&p.subjects).count();
            n += match &p.from {
                Source::Pods(s) => subj * self.pick(s).count() * p.ports.len(),
                Source::Block { except, .. } => subj * (1 + except.len() + p.ports.len()),
            };
        }
        n + self.selected().len()
    }

    /// Addresses of pods selected by some policy (isolated for ingress).
    pub fn selected(&self) -> Vec<Ipv4Addr> {
        self.pods
            .iter()
            .filter(|pod| self.policies.iter().any(|p| p.subjects.picks(pod)))
            .map(|p| p.addr)
            .collect()
    }

    /// Baseline (a) as `iptables-restore` input (table `filter`, chain `CNET-ING` jumped to
    /// from `FORWARD`). The rules are ordered: conntrack, accepts per pair, per-pod drops.
    pub fn per_pair_restore(&self) -> String {
        let mut o = String::from("*filter\n:CNET-ING - [0:0]\n-A FORWARD -j CNET-ING\n");
        o.push_str("-A CNET-ING -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n");
        let mut chains = String::new();
        for (i, p) in self.policies.iter().enumerate() {
            for d in self.pick(&p.subjects) {
                o.push_str(&self.pair_rules(i, p, d.addr, None));
            }
            if let Source::Block { cidr, except } = &p.from {
                let _ = writeln!(chains, ":CNET-B{i} - [0:0]");
                for e in except {
                    let _ = writeln!(o, "-A CNET-B{i} -s {e} -j RETURN");
                }
                for port in &p.ports {
                    let _ = writeln!(o, "-A CNET-B{i} -s {cidr} -p tcp --dport {port} -j ACCEPT");
                }
            }
        }
        for a in self.selected() {
            let _ = writeln!(o, "-A CNET-ING -d {a} -j DROP");
        }
        o.push_str("COMMIT\n");
        o.replace(
            ":CNET-ING - [0:0]\n",
            &format!(":CNET-ING - [0:0]\n{chains}"),
        )
    }

    /// The accept rules of policy `i` for subject `d` (and, when `only_src` is given, only
    /// those whose source is that address).
    fn pair_rules(&self, i: usize, p: &Pol, d: Ipv4Addr, only_src: Option<Ipv4Addr>) -> String {
        let mut o = String::new();
        match &p.from {
            Source::Pods(s) => {
                for src in self.pick(s) {
                    if only_src.is_some_and(|a| a != src.addr) {
                        continue;
                    }
                    for port in &p.ports {
                        let _ = writeln!(
                            o,
                            "-A CNET-ING -s {} -d {d} -p tcp --dport {port} -j ACCEPT",
                            src.addr
                        );
                    }
                }
            }
            Source::Block { .. } if only_src.is_none() => {
                let _ = writeln!(o, "-A CNET-ING -d {d} -j CNET-B{i}");
            }
            Source::Block { .. } => {}
        }
        o
    }

    /// Baseline (a) for one new pod (from [`Workload::extra_pod`], already pushed to
    /// `self.pods`): the rules inserted (`-I CNET-ING 2`, before the drops) and its drop, as
    /// `iptables-restore --noflush` input; and the same rules as deletions.
    pub fn per_pair_pod_update(&self, new: &Pod) -> (String, String) {
        let mut rules = String::new();
        for (i, p) in self.policies.iter().enumerate() {
            if p.subjects.picks(new) {
                rules.push_str(&self.pair_rules(i, p, new.addr, None));
            }
            if let Source::Pods(s) = &p.from
                && s.picks(new)
            {
                for d in self.pick(&p.subjects).filter(|d| d.addr != new.addr) {
                    rules.push_str(&self.pair_rules(i, p, d.addr, Some(new.addr)));
                }
            }
        }
        let ins = rules.replace("-A CNET-ING ", "-I CNET-ING 2 ");
        let del = rules.replace("-A CNET-ING ", "-D CNET-ING ");
        let selected = self.policies.iter().any(|p| p.subjects.picks(new));
        let drop = if selected {
            format!("-A CNET-ING -d {} -j DROP\n", new.addr)
        } else {
            String::new()
        };
        (
            format!("*filter\n{ins}{drop}COMMIT\n"),
            format!("*filter\n{del}{}COMMIT\n", drop.replace("-A ", "-D ")),
        )
    }

    fn set_names(&self) -> BTreeMap<String, String> {
        let mut names = BTreeMap::new();
        for p in &self.policies {
            let mut keys = vec![p.subjects.key()];
            match &p.from {
                Source::Pods(s) => keys.push(s.key()),
                Source::Block { cidr, except } => keys.push(format!("{cidr}-{except:?}")),
            }
            for k in keys {
                let n = names.len();
                names.entry(k).or_insert_with(|| format!("cnet-{n}"));
            }
        }
        names
    }

    /// Baseline (b): (`ipset restore` input, `iptables-restore` input).
    pub fn ipset_restore(&self) -> (String, String) {
        let names = self.set_names();
        let mut sets = String::new();
        let mut done = std::collections::BTreeSet::new();
        let _ = writeln!(
            sets,
            "create cnet-selected hash:ip family inet hashsize 4096 maxelem 1000000"
        );
        for a in self.selected() {
            let _ = writeln!(sets, "add cnet-selected {a}");
        }
        for p in &self.policies {
            let mut sels = vec![&p.subjects];
            match &p.from {
                Source::Pods(s) => sels.push(s),
                Source::Block { cidr, except } => {
                    let k = format!("{cidr}-{except:?}");
                    let n = &names[&k];
                    if done.insert(n.clone()) {
                        let _ = writeln!(sets, "create {n} hash:net family inet");
                        let _ = writeln!(sets, "add {n} {cidr}");
                        for e in except {
                            let _ = writeln!(sets, "add {n} {e} nomatch");
                        }
                    }
                }
            }
            for s in sels {
                let n = &names[&s.key()];
                if done.insert(n.clone()) {
                    let _ = writeln!(
                        sets,
                        "create {n} hash:ip family inet hashsize 1024 maxelem 1000000"
                    );
                    for pod in self.pick(s) {
                        let _ = writeln!(sets, "add {n} {}", pod.addr);
                    }
                }
            }
        }
        let mut chains = String::from(":CNET-ING - [0:0]\n");
        let mut rules = String::from(
            "-A FORWARD -j CNET-ING\n-A CNET-ING -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n",
        );
        let mut body = String::new();
        for (i, p) in self.policies.iter().enumerate() {
            let _ = writeln!(chains, ":CNET-P{i} - [0:0]");
            let _ = writeln!(
                rules,
                "-A CNET-ING -m set --match-set {} dst -j CNET-P{i}",
                names[&p.subjects.key()]
            );
            let src = match &p.from {
                Source::Pods(s) => names[&s.key()].clone(),
                Source::Block { cidr, except } => names[&format!("{cidr}-{except:?}")].clone(),
            };
            let ports: Vec<String> = p.ports.iter().map(u16::to_string).collect();
            let _ = writeln!(
                body,
                "-A CNET-P{i} -m set --match-set {src} src -p tcp -m multiport --dports {} -j ACCEPT",
                ports.join(",")
            );
        }
        rules.push_str("-A CNET-ING -m set --match-set cnet-selected dst -j DROP\n");
        (sets, format!("*filter\n{chains}{rules}{body}COMMIT\n"))
    }

    /// Rules of baseline (b).
    pub fn ipset_rule_count(&self) -> usize {
        3 + 2 * self.policies.len()
    }

    /// Baseline (b) for one new pod: `ipset restore -exist` input adding it to every set it
    /// belongs to, and the same as deletions.
    pub fn ipset_pod_update(&self, new: &Pod) -> (String, String) {
        let names = self.set_names();
        let mut adds = String::new();
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.policies {
            let mut sels = vec![&p.subjects];
            if let Source::Pods(s) = &p.from {
                sels.push(s);
            }
            for s in sels {
                if s.picks(new) && seen.insert(names[&s.key()].clone()) {
                    let _ = writeln!(adds, "add {} {}", names[&s.key()], new.addr);
                }
            }
        }
        if self.policies.iter().any(|p| p.subjects.picks(new)) {
            let _ = writeln!(adds, "add cnet-selected {}", new.addr);
        }
        let dels = adds.replace("add ", "del ");
        (adds, dels)
    }
}

fn labels_sel(kv: &[(&str, String)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(kv.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()),
        match_expressions: None,
    }
}

fn selector(s: &Sel) -> LabelSelector {
    match s {
        Sel::NsApp(_, app) => labels_sel(&[("app", format!("app{app}"))]),
        Sel::Ns(_) | Sel::Team(_) => LabelSelector::default(),
        Sel::NsTier(_, t) | Sel::AnyTier(t) => labels_sel(&[("tier", TIERS[*t].to_string())]),
        Sel::NsRole(_, r) => labels_sel(&[("role", r.clone())]),
    }
}

fn k8s(p: &Pol) -> NetworkPolicy {
    let peer = match &p.from {
        Source::Pods(s @ (Sel::NsApp(..) | Sel::NsTier(..) | Sel::Ns(_) | Sel::NsRole(..))) => {
            NetworkPolicyPeer {
                pod_selector: Some(selector(s)),
                ..Default::default()
            }
        }
        Source::Pods(Sel::Team(t)) => NetworkPolicyPeer {
            namespace_selector: Some(labels_sel(&[("team", format!("t{t}"))])),
            ..Default::default()
        },
        Source::Pods(s @ Sel::AnyTier(_)) => NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector::default()),
            pod_selector: Some(selector(s)),
            ..Default::default()
        },
        Source::Block { cidr, except } => NetworkPolicyPeer {
            ip_block: Some(IpBlock {
                cidr: cidr.clone(),
                except: Some(except.clone()),
            }),
            ..Default::default()
        },
    };
    let ports = p
        .ports
        .iter()
        .map(|port| NetworkPolicyPort {
            protocol: Some("TCP".into()),
            port: Some(if p.named {
                IntOrString::String("http".into())
            } else {
                IntOrString::Int(i32::from(*port))
            }),
            end_port: None,
        })
        .collect();
    NetworkPolicy {
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        metadata: ObjectMeta {
            name: p.name.clone(),
            namespace: Some(format!("ns{}", p.ns)),
            ..Default::default()
        },
        spec: NetworkPolicySpec {
            pod_selector: selector(&p.subjects),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![peer]),
                ports: Some(ports),
            }]),
            policy_types: Some(vec!["Ingress".into()]),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cnet_policy::{Evaluator, Flow, Inventory, PolicySet, Verdict};

    /// The baselines' rule logic and the cnet evaluator agree on every pod pair and port
    /// of a small workload.
    #[test]
    fn baselines_match_the_evaluator() {
        let w = Workload::new(300, 12).with_pair_allow(&[5201]);
        let set = PolicySet::from_network_policies(&w.k8s_policies()).unwrap();
        let mut inv = Inventory::default();
        for ns in 0..w.namespaces {
            inv.upsert_namespace(&format!("ns{ns}"), Workload::namespace_labels(ns));
        }
        for p in &w.pods {
            inv.upsert_endpoint(Workload::endpoint(p));
        }
        let eval = Evaluator::new(set, inv);
        for port in [80u16, 443, 5201, 5432, HTTP_PORT, 9999] {
            for (si, s) in w.pods.iter().enumerate().step_by(7) {
                for d in w.pods.iter().skip(si % 5).step_by(11) {
                    let flow = Flow {
                        src: IpAddr::V4(s.addr),
                        dst: IpAddr::V4(d.addr),
                        protocol: Protocol::Tcp,
                        dst_port: port,
                    };
                    let selected = w.policies.iter().any(|p| p.subjects.picks(d));
                    let allowed = !selected
                        || w.policies.iter().any(|p| {
                            p.subjects.picks(d)
                                && p.ports.contains(&port)
                                && match &p.from {
                                    Source::Pods(sel) => sel.picks(s),
                                    Source::Block { .. } => true, // pods are never excepted
                                }
                        });
                    let want = if allowed {
                        Verdict::Allow
                    } else {
                        Verdict::Deny
                    };
                    assert_eq!(eval.verdict(&flow), want, "{s:?} -> {d:?} port {port}");
                }
            }
        }
    }

    #[test]
    fn restore_texts_are_consistent() {
        let mut w = Workload::new(200, 8);
        let pp = w.per_pair_restore();
        let rules = pp.lines().filter(|l| l.starts_with("-A CNET-ING")).count();
        // per_pair_rule_count counts block-chain rules too; CNET-ING rules are at most it.
        assert!(rules <= w.per_pair_rule_count() && rules > 100);
        let (sets, ipt) = w.ipset_restore();
        assert_eq!(
            ipt.lines().filter(|l| l.starts_with("-A ")).count(),
            w.ipset_rule_count()
        );
        assert!(sets.contains("nomatch"));
        let new = w.extra_pod();
        w.pods.push(new.clone());
        let (ins, del) = w.per_pair_pod_update(&new);
        assert_eq!(ins.lines().count(), del.lines().count());
        assert!(ins.contains(&new.addr.to_string()));
        let (a, d) = w.ipset_pod_update(&new);
        assert!(a.contains("add cnet-selected") && d.contains("del cnet-selected"));
    }
}
