//! The `cnet` plugin's IPAM: `cnet-ipam` in-process, any other type executed from `CNI_PATH`.

use crate::cnet::conf::IpamChoice;
use crate::config::GcAttachment;
use crate::delegate;
use crate::env::{CniArgs, Command};
use crate::error::CniError;
use crate::ipam::IpamPlugin;
use crate::plugin::{Plugin, Request};
use crate::result::CniResult;

/// The IPAM of one request.
#[derive(Debug)]
pub struct Ipam<'a> {
    choice: &'a IpamChoice,
}

/// A copy of the request whose `CNI_ARGS` ask the IPAM to ignore keys meant for `cnet`
/// (`K8S_POD_*`): `cnet` has already checked them.
fn for_ipam(req: &Request) -> Request {
    let mut r = req.clone();
    let mut pairs: Vec<String> = r
        .env
        .args
        .pairs()
        .iter()
        .filter(|(k, _)| k != "IgnoreUnknown")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    pairs.push("IgnoreUnknown=1".into());
    if let Ok(a) = CniArgs::parse(&pairs.join(";")) {
        r.env.args = a;
    }
    r
}

impl<'a> Ipam<'a> {
    /// The IPAM chosen by the config.
    pub fn new(choice: &'a IpamChoice) -> Ipam<'a> {
        Ipam { choice }
    }

    /// Allocate (the abbreviated IPAM result).
    pub fn add(&self, req: &Request) -> Result<CniResult, CniError> {
        let r = for_ipam(req);
        match self.choice {
            IpamChoice::InProcess(_) => IpamPlugin::on_disk().add(&r),
            IpamChoice::Delegate(t) => delegate::delegate_add(t, &r.env, &r.stdin, r.version),
        }
    }

    /// Allocate, with the in-process IPAM's flush of the lease left to the caller (`None`
    /// for a delegated IPAM, whose plugin returned only once its lease was stored). See
    /// [`crate::ipam::add_on_disk_deferred`]: success must not be reported before the
    /// returned sync's `wait()` returned `Ok`.
    pub fn add_deferred(
        &self,
        req: &Request,
    ) -> Result<(CniResult, Option<cnet_ipam::PendingSync>), CniError> {
        let r = for_ipam(req);
        match self.choice {
            IpamChoice::InProcess(_) => {
                crate::ipam::add_on_disk_deferred(&r).map(|(res, sync)| (res, Some(sync)))
            }
            IpamChoice::Delegate(t) => {
                delegate::delegate_add(t, &r.env, &r.stdin, r.version).map(|res| (res, None))
            }
        }
    }

    /// Release (idempotent).
    pub fn del(&self, req: &Request) -> Result<(), CniError> {
        self.forward(req, Command::Del)
    }

    /// Release, with the in-process IPAM's flush left to the caller (`None` for a delegated
    /// IPAM, whose plugin returned only once the release was stored). See
    /// [`crate::ipam::del_on_disk_deferred`].
    pub fn del_deferred(&self, req: &Request) -> Result<Option<cnet_ipam::PendingSync>, CniError> {
        match self.choice {
            IpamChoice::InProcess(_) => crate::ipam::del_on_disk_deferred(&for_ipam(req)).map(Some),
            IpamChoice::Delegate(_) => self.del(req).map(|()| None),
        }
    }

    /// Verify the lease against `prevResult`.
    pub fn check(&self, req: &Request) -> Result<(), CniError> {
        self.forward(req, Command::Check)
    }

    /// Report whether ADD can be serviced.
    pub fn status(&self, req: &Request) -> Result<(), CniError> {
        self.forward(req, Command::Status)
    }

    /// Release every lease not held by `keep` (the request's valid attachments plus any the
    /// plugin could not tear down). The IPAM sees `keep` as `cni.dev/valid-attachments`.
    pub fn gc(&self, req: &Request, keep: &[GcAttachment]) -> Result<(), CniError> {
        let mut r = for_ipam(req);
        let mut v: serde_json::Value = serde_json::from_slice(&r.stdin)
            .map_err(|e| CniError::decode(format!("error decoding network config: {e}")))?;
        v["cni.dev/valid-attachments"] = serde_json::to_value(keep)
            .map_err(|e| CniError::io(format!("encoding valid attachments: {e}")))?;
        r.stdin = v.to_string().into_bytes();
        r.config.valid_attachments = Some(keep.to_vec());
        match self.choice {
            IpamChoice::InProcess(_) => IpamPlugin::on_disk().gc(&r, keep),
            IpamChoice::Delegate(t) => delegate::delegate(t, Command::Gc, &r.env, &r.stdin),
        }
    }

    fn forward(&self, req: &Request, cmd: Command) -> Result<(), CniError> {
        let r = for_ipam(req);
        match self.choice {
            IpamChoice::InProcess(_) => {
                let mut p = IpamPlugin::on_disk();
                match cmd {
                    Command::Del => p.del(&r),
                    Command::Check => p.check(&r),
                    _ => p.status(&r),
                }
            }
            IpamChoice::Delegate(t) => delegate::delegate(t, cmd, &r.env, &r.stdin),
        }
    }
}
