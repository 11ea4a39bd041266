//! The cnet demo: a virtual node on this machine (network namespaces only), pods in two
//! namespaces attached through the real `cnet` plugin binary exactly as a container runtime
//! calls it (CNI environment + config on stdin, run inside the node's namespace), the
//! reachability matrix before and after applying `examples/policies/` with `cnetctl`,
//! `cnetctl explain` for a denied flow, and cleanup — also after a failure or Ctrl-C (a
//! watchdog process removes whatever the demo created once the demo is gone).
//!
//! Run as root: `./scripts/demo` (builds the binaries, then runs this example).

use cnet_testsupport::{NetNs, Underlay, VirtualNode};
use serde_json::{Value, json};
use std::io::{IsTerminal, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Service port every pod listens on.
const PORT: u16 = 8080;
const NETWORK: &str = "demo";
const POD_CIDR: &str = "10.88.0.0/24";

type DemoResult<T> = Result<T, String>;

/// Terminal styling, only when stdout is a terminal.
struct Style {
    tty: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.tty {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn ok(&self, s: &str) -> String {
        self.paint("32", s)
    }
    fn bad(&self, s: &str) -> String {
        self.paint("31", s)
    }
    fn head(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
}

/// Removes what the demo created once the demo process is gone, however it ends: a shell
/// that ignores SIGINT, waits for our pid to disappear, then deletes the namespaces and the
/// directory listed in a file.
struct Watchdog {
    list: PathBuf,
}

impl Watchdog {
    fn start(dir: &Path) -> DemoResult<Watchdog> {
        let list = dir.join("created-namespaces");
        std::fs::write(&list, "").map_err(|e| format!("{}: {e}", list.display()))?;
        let script = format!(
            "trap '' INT TERM HUP; while kill -0 {pid} 2>/dev/null; do sleep 0.3; done; \
             for ns in $(cat '{list}' 2>/dev/null); do \
               for p in $(ip netns pids $ns 2>/dev/null); do kill -9 $p; done; \
               ip netns delete $ns 2>/dev/null; done; rm -rf '{dir}'",
            pid = std::process::id(),
            list = list.display(),
            dir = dir.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start the cleanup watchdog: {e}"))?;
        Ok(Watchdog { list })
    }

    fn track(&self, ns: &NetNs) {
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&self.list) {
            let _ = writeln!(f, "{}", ns.name());
        }
    }
}

/// A TCP echo server on `[::]:PORT` inside a namespace; stops on drop.
struct Server {
    stop: Arc<AtomicBool>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(ns: &NetNs) -> DemoResult<Server> {
    let listener = ns
        .in_netns(|| TcpListener::bind(("::", PORT)))
        .map_err(|e| format!("listen on port {PORT} in {}: {e}", ns.name()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("listener: {e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                    let mut buf = [0u8; 16];
                    if let Ok(n) = s.read(&mut buf) {
                        let _ = s.write_all(&buf[..n]);
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    Ok(Server { stop })
}

/// A TCP round trip from inside `ns` to `ip:PORT` (a denied connection times out: dropped).
fn probe(ns: &NetNs, ip: IpAddr) -> bool {
    ns.in_netns(|| {
        let Ok(mut s) =
            TcpStream::connect_timeout(&SocketAddr::new(ip, PORT), Duration::from_millis(700))
        else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(700)));
        let mut buf = [0u8; 4];
        s.write_all(b"cnet").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"cnet"
    })
}

struct Pod {
    ns: String,
    name: String,
    app: String,
    netns: NetNs,
    ip: IpAddr,
    _server: Option<Server>,
}

impl Pod {
    fn id(&self) -> String {
        format!("{}/{}", self.ns, self.name)
    }
    fn container_id(&self) -> String {
        format!("{}-{}", self.ns, self.name)
    }
}

struct Demo {
    style: Style,
    cnet: PathBuf,
    ctl: PathBuf,
    _underlay: Underlay,
    node: VirtualNode,
    dir: PathBuf,
    conf: Value,
    pods: Vec<Pod>,
}

impl Demo {
    /// Call the plugin exactly as a runtime does: CNI_* environment, config on stdin, the
    /// process in the node's network namespace.
    fn cni(&self, command: &str, pod: &Pod, labels: &[(&str, &str)]) -> DemoResult<Value> {
        let mut conf = self.conf.clone();
        if !labels.is_empty() {
            let l: Vec<Value> = labels
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            conf["args"] = json!({"cni": {"labels": l}});
        }
        let bin = self.cnet.display().to_string();
        let mut child = self
            .node
            .ns
            .command(&[&bin])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", pod.container_id())
            .env("CNI_NETNS", pod.netns.path())
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", self.cnet.parent().unwrap_or(Path::new("/")))
            .env(
                "CNI_ARGS",
                format!(
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={}",
                    pod.ns, pod.name
                ),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("run {bin}: {e}"))?;
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(conf.to_string().as_bytes())
                .map_err(|e| format!("stdin of cnet: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("wait for cnet: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!("cnet {command} {}: {text}", pod.id()));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| format!("cnet {command} output: {e}: {text}"))
    }

    fn cnetctl(&self, args: &[&str]) -> DemoResult<(i32, String)> {
        let bin = self.ctl.display().to_string();
        let sd = self.dir.join("state").join(NETWORK).display().to_string();
        let mut argv = vec![bin.as_str(), "--state-dir", sd.as_str()];
        argv.extend_from_slice(args);
        let out = self
            .node
            .ns
            .command(&argv)
            .output()
            .map_err(|e| format!("run cnetctl: {e}"))?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok((out.status.code().unwrap_or(-1), text))
    }

    fn matrix(&self, title: &str) {
        println!("\n{}", self.style.head(title));
        let w = self
            .pods
            .iter()
            .map(|p| p.id().len())
            .max()
            .unwrap_or(8)
            .max(9);
        let mut header = format!("  {:<w$}", "from \\ to");
        for p in &self.pods {
            header.push_str(&format!(" {:^w$}", p.id()));
        }
        println!("{}", self.style.dim(&header));
        // Probe every pair in parallel (a denied probe waits for its timeout).
        let results: Vec<Vec<Option<bool>>> = std::thread::scope(|s| {
            let handles: Vec<Vec<_>> = self
                .pods
                .iter()
                .map(|src| {
                    self.pods
                        .iter()
                        .map(|dst| {
                            (src.id() != dst.id())
                                .then(|| s.spawn(move || probe(&src.netns, dst.ip)))
                        })
                        .collect()
                })
                .collect();
            handles
                .into_iter()
                .map(|row| {
                    row.into_iter()
                        .map(|h| h.map(|h| h.join().unwrap_or(false)))
                        .collect()
                })
                .collect()
        });
        for (src, row) in self.pods.iter().zip(results) {
            let mut line = format!("  {:<w$}", src.id());
            for r in row {
                let cell = match r {
                    None => self.style.dim(&format!("{:^w$}", "-")),
                    Some(true) => self.style.ok(&format!("{:^w$}", "ok")),
                    Some(false) => self.style.bad(&format!("{:^w$}", "DENIED")),
                };
                line.push(' ');
                line.push_str(&cell);
            }
            println!("{line}");
        }
    }
}

fn run(style: Style) -> DemoResult<()> {
    let bins = cnet_examples::lab_plugin::Binaries::locate()?;
    let (cnet, ctl) = (bins.cnet, bins.cnetctl);
    let dir = std::env::temp_dir().join(format!("cnet-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let watchdog = Watchdog::start(&dir)?;
    println!(
        "{}",
        style.head("cnet demo: one virtual node, five pods, two namespaces")
    );
    let (underlay, node) = VirtualNode::single(&[POD_CIDR]);
    watchdog.track(&underlay.ns);
    watchdog.track(&node.ns);
    println!(
        "node netns {} (uplink {}), pods in {POD_CIDR}, mode transparent",
        node.ns.name(),
        node.addr4
    );
    let conf = json!({
        "cniVersion": "1.1.0",
        "name": NETWORK,
        "type": "cnet",
        "mode": "transparent",
        "ipam": {"type": "cnet-ipam", "ranges": [[{"subnet": POD_CIDR}]],
                 "dataDir": dir.join("ipam").display().to_string()},
        "policy": {"stateDir": dir.join("state").display().to_string()},
    });
    let mut demo = Demo {
        style,
        cnet,
        ctl,
        _underlay: underlay,
        node,
        dir: dir.clone(),
        conf,
        pods: Vec::new(),
    };
    println!(
        "\n{}",
        demo.style
            .head("ADD through the cnet binary (as a runtime calls it)")
    );
    for (ns, name, app) in [
        ("shop", "frontend", "frontend"),
        ("shop", "backend", "backend"),
        ("shop", "db", "db"),
        ("lab", "scanner", "scanner"),
        ("lab", "notebook", "notebook"),
    ] {
        let netns = demo.node.pod();
        watchdog.track(&netns);
        let mut pod = Pod {
            ns: ns.into(),
            name: name.into(),
            app: app.into(),
            netns,
            ip: IpAddr::from([0, 0, 0, 0]),
            _server: None,
        };
        let t = std::time::Instant::now();
        let result = demo.cni("ADD", &pod, &[("app", app)])?;
        let elapsed = t.elapsed();
        let addr = result["ips"][0]["address"]
            .as_str()
            .ok_or("ADD result without an address")?;
        pod.ip = addr
            .split('/')
            .next()
            .unwrap_or_default()
            .parse()
            .map_err(|e| format!("address {addr}: {e}"))?;
        pod._server = Some(serve(&pod.netns)?);
        println!(
            "  {:<14} app={:<9} {:<14} host if {} ({:.1} ms)",
            pod.id(),
            pod.app,
            addr,
            result["interfaces"][0]["name"].as_str().unwrap_or("?"),
            elapsed.as_secs_f64() * 1e3
        );
        demo.pods.push(pod);
    }
    demo.matrix(&format!("Reachability on TCP {PORT} before any policy"));

    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let pdir = policies.display().to_string();
    println!("\n{}", demo.style.head(&format!("cnetctl apply -f {pdir}")));
    let (code, out) = demo.cnetctl(&["apply", "-f", &pdir])?;
    print!("{out}");
    if code != 0 {
        return Err(format!("cnetctl apply failed with exit code {code}"));
    }
    demo.matrix(&format!("Reachability on TCP {PORT} with the policies"));

    println!(
        "\n{}",
        demo.style
            .head(&format!("cnetctl explain lab/scanner shop/db {PORT}/tcp"))
    );
    let (code, out) =
        demo.cnetctl(&["explain", "lab/scanner", "shop/db", &format!("{PORT}/tcp")])?;
    print!("{out}");
    println!(
        "{}",
        demo.style.dim(&format!("(exit code {code}: 1 = denied)"))
    );

    println!(
        "\n{}",
        demo.style
            .head("DEL through the cnet binary, then clean up")
    );
    for pod in &demo.pods {
        demo.cni("DEL", pod, &[])?;
    }
    let (_, eps) = demo.cnetctl(&["get", "endpoints"])?;
    let left = eps.lines().count().saturating_sub(1);
    println!("  endpoints left on the node: {left}");
    drop(demo);
    let _ = std::fs::remove_dir_all(&dir);
    println!("done: namespaces and state removed");
    Ok(())
}

fn main() {
    if !cnet_testsupport::privileged("demo") {
        eprintln!(
            "the demo needs root (it creates network namespaces); run ./scripts/demo as root"
        );
        std::process::exit(1);
    }
    let style = Style {
        tty: std::io::stdout().is_terminal(),
    };
    if let Err(e) = run(style) {
        eprintln!("demo failed: {e}");
        std::process::exit(1);
    }
}
