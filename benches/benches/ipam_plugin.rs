//! Bench `ipam_plugin`: ADD+DEL through the `cnet-ipam` binary vs the reference
//! `/usr/lib/cni/host-local`, same configs, same run, interleaved so both see the same noise.
//! Prints the median per operation and the ratio ours / host-local.
//!
//! `cargo bench -p cnet-benches --bench ipam_plugin` measures (400 ADD+DEL pairs per plugin);
//! under `cargo test` it runs a smoke pass of a few pairs. The `cnet-ipam` binary is taken from
//! the same target directory and profile, (re)built there with cargo first.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const HOST_LOCAL: &str = "/usr/lib/cni/host-local";

struct Plugin {
    label: &'static str,
    bin: PathBuf,
    plugin_type: &'static str,
    data: tempfile::TempDir,
}

impl Plugin {
    fn conf(&self) -> String {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "benchnet",
            "type": "bridge",
            "ipam": {
                "type": self.plugin_type,
                "dataDir": self.data.path(),
                "ranges": [[{"subnet": "10.60.0.0/16"}], [{"subnet": "fd00:60::/64"}]],
                "routes": [{"dst": "0.0.0.0/0"}]
            }
        })
        .to_string()
    }

    /// One invocation; the elapsed seconds, or an error with the plugin's output.
    fn call(&self, cmd: &str, id: &str, stdin: &str) -> Result<f64, String> {
        let start = Instant::now();
        let mut child = Command::new(&self.bin)
            .env_clear()
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", "/var/run/netns/bench-none")
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: spawn: {e}", self.label))?;
        if let Some(mut i) = child.stdin.take() {
            i.write_all(stdin.as_bytes())
                .map_err(|e| format!("{}: stdin: {e}", self.label))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("{}: wait: {e}", self.label))?;
        let t = start.elapsed().as_secs_f64();
        if !out.status.success() {
            return Err(format!(
                "{} {cmd} {id} failed: {}",
                self.label,
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        Ok(t)
    }
}

fn main() {
    let measuring = cnet_benches::measuring();
    let pairs = cnet_benches::profile().pick(5, 100, 400);
    let ours = match cnet_benches::cni_binary("cnet-ipam") {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ipam_plugin: {e}");
            std::process::exit(1);
        }
    };
    let mut plugins = vec![Plugin {
        label: "cnet-ipam",
        bin: ours,
        plugin_type: "cnet-ipam",
        data: tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")),
    }];
    if Path::new(HOST_LOCAL).exists() {
        plugins.push(Plugin {
            label: "host-local",
            bin: PathBuf::from(HOST_LOCAL),
            plugin_type: "host-local",
            data: tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")),
        });
    } else {
        println!("ipam_plugin: {HOST_LOCAL} not installed; measuring cnet-ipam alone");
    }
    let confs: Vec<String> = plugins.iter().map(Plugin::conf).collect();
    let mut add: Vec<Vec<f64>> = vec![Vec::new(); plugins.len()];
    let mut del: Vec<Vec<f64>> = vec![Vec::new(); plugins.len()];
    // Hold a few leases so the stores are not trivially empty.
    for (p, c) in plugins.iter().zip(&confs) {
        for i in 0..20 {
            if let Err(e) = p.call("ADD", &format!("resident{i}"), c) {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
    }
    for i in 0..pairs {
        let id = format!("bench{i}");
        for (k, (p, c)) in plugins.iter().zip(&confs).enumerate() {
            let r = p
                .call("ADD", &id, c)
                .and_then(|a| p.call("DEL", &id, c).map(|d| (a, d)));
            match r {
                Ok((a, d)) => {
                    add[k].push(a);
                    del[k].push(d);
                }
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            }
        }
    }
    let med = |v: &mut Vec<f64>| cnet_benches::median(v).unwrap_or(f64::NAN) * 1e3;
    let mut rows = Vec::new();
    let mut rec = cnet_benches::record::Recorder::new("ipam_plugin");
    for (k, p) in plugins.iter().enumerate() {
        let ms: Vec<f64> = add[k].iter().map(|s| s * 1e3).collect();
        rec.samples("ADD+DEL, dual-stack", p.label, "add", "ms", &ms)
            .reference_if(p.label == "host-local");
        let ms: Vec<f64> = del[k].iter().map(|s| s * 1e3).collect();
        rec.samples("ADD+DEL, dual-stack", p.label, "del", "ms", &ms)
            .reference_if(p.label == "host-local");
        let (a, d) = (med(&mut add[k]), med(&mut del[k]));
        rows.push((p.label, a, d));
    }
    println!(
        "ipam_plugin: {} ADD+DEL pairs per plugin (dual-stack, /16 + /64, 20 resident leases){}",
        pairs,
        if measuring { "" } else { " [smoke pass]" }
    );
    println!("{:<12} {:>12} {:>12}", "plugin", "ADD ms", "DEL ms");
    for (label, a, d) in &rows {
        println!("{label:<12} {a:>12.3} {d:>12.3}");
    }
    if rows.len() == 2 {
        println!(
            "ratio cnet-ipam / host-local: ADD {:.2}x, DEL {:.2}x",
            rows[0].1 / rows[1].1,
            rows[0].2 / rows[1].2
        );
    }
}
