//! Deferred teardown: make an attachment unreachable at once, delete its veth pair later.
//!
//! Deleting a veth costs ~20 ms of the kernel's synchronous netdev unregister (RCU barriers),
//! most of a CNI DEL. Everything that makes the pod unreachable is cheap, though: setting the
//! host end down makes the kernel drop every route through it (IPv4 and IPv6), its neighbour
//! and proxy entries, and a bridge stops forwarding to a port that is down; the pod end loses
//! its carrier. [`retire`] does that and renames the host end to [`retired_ifname`] (`cnetx`
//! and the same 8 hex digits), so the attachment's name is free for a new ADD at once while the
//! old pair waits for [`reap`]. The owner alias stays, so a retired link is still provably
//! ours.
//!
//! Who deletes a retired link: normally a detached reaper process the caller starts (the
//! `cnet` plugin does); if that never runs (a crash), the next ADD of the same
//! `(container_id, ifname)` deletes it when the pod end's name is still taken, and
//! [`reap_retired`] (GC) deletes every retired link of the node.

use crate::error::{Error, Errors, Side};
use crate::mode::Node;
use crate::netns::route_socket;
use crate::nl::Nl;
use crate::spec::{EndpointSpec, fnv1a64, invalid, owner_alias, validate_ifname, validate_owner};
use rtnetlink::LinkUnspec;

/// Name prefix of retired host ends (a host end is `cnet` + hex digits, never `cnetx`).
pub const RETIRED_PREFIX: &str = "cnetx";

/// The name a retired host end of `(container_id, ifname)` carries: `cnetx` + the 8 hex
/// digits of its host name (13 characters).
pub fn retired_ifname(container_id: &str, ifname: &str) -> String {
    let h = fnv1a64(&[container_id.as_bytes(), ifname.as_bytes()]);
    format!("{RETIRED_PREFIX}{:08x}", (h ^ (h >> 32)) as u32)
}

fn run_node<R: Send>(
    node: &Node,
    f: impl AsyncFnOnce(&Nl) -> Result<R, Error> + Send,
) -> Result<R, Error> {
    node.run(|_| {
        let fd = route_socket().map_err(|source| Error::Setup {
            side: Side::Node,
            source,
        })?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|source| Error::Setup {
                side: Side::Node,
                source,
            })?;
        rt.block_on(async {
            let nl = Nl::connect(fd, Side::Node)?;
            f(&nl).await
        })
    })?
}

fn check_owner(spec: &EndpointSpec) -> Result<(), Errors> {
    let mut errors = Vec::new();
    if let Err(e) = validate_owner(&spec.container_id, &spec.ifname) {
        errors.push(e);
    }
    if let Err(r) = validate_ifname(&spec.ifname) {
        errors.push(invalid("ifname", r));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Errors(errors))
    }
}

/// Retire the attachment `(container_id, ifname)` of `spec`: its host end goes down (which
/// removes every route, neighbour and proxy entry through it) and is renamed to
/// [`retired_ifname`]. Returns the retired name when a link is left for [`reap`]: the one
/// retired now, or one an earlier retire left; `None` when nothing of the attachment exists.
/// Idempotent; refuses (NotOwned) a host link of that name that is not ours.
pub fn retire(node: &Node, spec: &EndpointSpec) -> Result<Option<String>, Errors> {
    check_owner(spec)?;
    let (cid, ifname) = (spec.container_id.as_str(), spec.ifname.as_str());
    run_node(node, async |nl: &Nl| {
        let host = crate::spec::host_ifname(cid, ifname);
        let retired = retired_ifname(cid, ifname);
        // What an earlier retire left (our retired link), when the host end is gone.
        let earlier = async || -> Result<Option<String>, Error> {
            Ok(nl
                .link(&retired)
                .await?
                .filter(|l| crate::shell::owned_by(l, cid, ifname))
                .map(|_| retired.clone()))
        };
        // The host end vanished between lookup and request: the kernel destroys a veth pair
        // whose pod end's namespace went away (DEL after the runtime deleted the netns).
        let vanished = |e: &rtnetlink::Error| crate::error::nl_errno(e) == Some(libc::ENODEV);
        match nl.link(&host).await? {
            Some(l) if crate::shell::owned_by(&l, cid, ifname) => {
                let rename = || {
                    nl.h.link()
                        .set(LinkUnspec::new_with_index(l.index).name(&retired).build())
                        .execute()
                };
                // Both requests queued at once; the kernel handles them in order (a link
                // must be down to be renamed).
                let (down, renamed) = futures::join!(
                    nl.h.link()
                        .set(LinkUnspec::new_with_index(l.index).down().build())
                        .execute(),
                    rename()
                );
                match down {
                    Err(e) if vanished(&e) => return earlier().await,
                    other => other.map_err(|e| iface(&host, "set down", e))?,
                }
                match renamed {
                    Ok(()) => {}
                    Err(e) if vanished(&e) => return earlier().await,
                    // An older retired pair of the same attachment (its reaper has not run
                    // yet) holds the name: delete it (rare, synchronous) and rename again.
                    Err(e) if crate::error::nl_errno(&e) == Some(libc::EEXIST) => {
                        remove_retired(nl, cid, ifname).await?;
                        match rename().await {
                            Err(e) if vanished(&e) => return earlier().await,
                            other => other.map_err(|e| iface(&host, "rename to retired", e))?,
                        }
                    }
                    Err(e) => return Err(iface(&host, "rename to retired", e)),
                }
                Ok(Some(retired))
            }
            Some(l) => Err(Error::NotOwned {
                name: host,
                expected: owner_alias(cid, ifname),
                found: l.alias,
            }),
            None => earlier().await,
        }
    })
    .map_err(|e| Errors(vec![e]))
}

fn iface(name: &str, op: &'static str, e: rtnetlink::Error) -> Error {
    Error::Interface {
        name: name.to_string(),
        side: Side::Node,
        op,
        source: Box::new(e),
    }
}

/// Delete the retired link of `(container_id, ifname)` if there is one (owner checked).
pub(crate) async fn remove_retired(nl: &Nl, cid: &str, ifname: &str) -> Result<bool, Error> {
    let retired = retired_ifname(cid, ifname);
    match nl.link(&retired).await? {
        Some(l) if crate::shell::owned_by(&l, cid, ifname) => nl.delete_link(&retired).await,
        Some(l) => Err(Error::NotOwned {
            name: retired,
            expected: owner_alias(cid, ifname),
            found: l.alias,
        }),
        None => Ok(false),
    }
}

/// Delete the retired veth pair of `(container_id, ifname)`: `Ok(false)` when there is none
/// (already reaped). This is the slow part of a teardown (the kernel's unregister).
pub fn reap(node: &Node, container_id: &str, ifname: &str) -> Result<bool, Errors> {
    check_owner(&EndpointSpec::new(container_id, ifname, "", Vec::new()))?;
    run_node(node, async |nl: &Nl| {
        remove_retired(nl, container_id, ifname).await
    })
    .map_err(|e| Errors(vec![e]))
}

/// Delete every retired link of the node (GC): those named `cnetx…` whose alias is a cnet
/// owner matching the name. Returns the names deleted; keeps going on errors.
pub fn reap_retired(node: &Node) -> Result<Vec<String>, Errors> {
    let r = run_node(node, async |nl: &Nl| {
        let mut gone = Vec::new();
        let mut errors = Vec::new();
        for l in nl.links().await? {
            let Some((cid, ifname)) = l.alias.as_deref().and_then(crate::parse_owner_alias) else {
                continue;
            };
            if l.name != retired_ifname(&cid, &ifname) {
                continue;
            }
            match nl.delete_link(&l.name).await {
                Ok(_) => gone.push(l.name),
                Err(e) => errors.push(e),
            }
        }
        Ok((gone, errors))
    });
    match r {
        Ok((gone, errors)) if errors.is_empty() => Ok(gone),
        Ok((_, errors)) => Err(Errors(errors)),
        Err(e) => Err(Errors(vec![e])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retired_name_mirrors_the_host_name() {
        let host = crate::spec::host_ifname("c0ffee", "eth0");
        let retired = retired_ifname("c0ffee", "eth0");
        assert_eq!(retired.len(), 13);
        assert_eq!(&retired[5..], &host[4..]);
        assert!(retired.starts_with(RETIRED_PREFIX));
        assert!(!host.starts_with(RETIRED_PREFIX));
        assert!(validate_ifname(&retired).is_ok());
    }
}
