//! Configuration reload (R-OPS-2, R-MODE-4): on a change of the configuration file (watched
//! through its directory, so editors and `mediagate dialplan/peer` that replace the file by
//! rename are seen) and on SIGHUP.
//!
//! A reload loads and validates the whole file first. An invalid file is refused (`GW1302`
//! with file, key and problem) and the running configuration stays. A valid one installs a
//! new policy (dial plans, modes, peers, routes, static hosts) for new calls; calls in
//! progress keep the policy they started with. Settings that need a restart are named in
//! `GW1303`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mediagate_config::Config;
use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::{Running, Source};

/// Quiet time after the last file event before reloading (an editor writes, renames, chmods).
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Keeps the watch alive; dropping it stops watching.
pub(crate) struct ReloadHandle {
    _watcher: Option<notify::RecommendedWatcher>,
}

/// Starts the SIGHUP handler and, for a configuration file, the file watch.
pub(crate) fn start(running: Arc<Running>) -> Result<ReloadHandle, String> {
    let (tx, mut rx) = mpsc::channel::<&'static str>(16);
    let mut watcher = None;
    if let Source::File(path) = &running.source {
        let file = absolute(path);
        let dir = file
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        let name = file.file_name().map(|n| n.to_owned());
        let fs_tx = tx.clone();
        let mut w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            let Ok(ev) = ev else { return };
            if ev.kind.is_access() {
                return;
            }
            if ev.paths.iter().any(|p| p.file_name() == name.as_deref()) {
                let _ = fs_tx.try_send("file changed");
            }
        })
        .map_err(|e| e.to_string())?;
        w.watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        watcher = Some(w);
    }
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            let tx = tx.clone();
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    if tx.send("SIGHUP").await.is_err() {
                        return;
                    }
                }
            });
        }
        Err(e) => tracing::warn!(%e, "SIGHUP reload unavailable"),
    }
    tokio::spawn(async move {
        while let Some(why) = rx.recv().await {
            // Debounce: collect the burst of events one save makes.
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            reload(&running, why).await;
        }
    });
    Ok(ReloadHandle { _watcher: watcher })
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_owned())
    }
}

/// One reload attempt.
pub(crate) async fn reload(r: &Running, why: &str) {
    let Source::File(path) = &r.source else {
        tracing::info!(
            code = "GW1301",
            "GW1301 reload requested ({why}) but the embedded configuration cannot change"
        );
        return;
    };
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            r.reload_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                code = "GW1302",
                trigger = why,
                file = %e.file.display(),
                key = %e.key,
                problem = %e.problem,
                "GW1302 configuration refused, the running configuration stays: {e}"
            );
            return;
        }
    };
    let old = r.config.load_full();
    for key in needs_restart(&old, &new) {
        tracing::warn!(
            code = "GW1303",
            key,
            "GW1303 {key} changed: applied at the next restart"
        );
    }
    r.server.reload(new.policy()).await;
    r.config.store(Arc::new(new));
    r.reloads.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        code = "GW1301",
        trigger = why,
        file = %path.display(),
        "GW1301 configuration reloaded: new calls use it, calls in progress keep theirs"
    );
}

/// The keys whose change a reload cannot apply (`tls.tls_peer_ports` only validates the
/// policy, so it applies).
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut v = Vec::new();
    if old.listen != new.listen {
        v.push("listen");
    }
    if old.media != new.media {
        v.push("media");
    }
    if old.limits != new.limits {
        v.push("limits");
    }
    if old.admin != new.admin {
        v.push("admin");
    }
    if old.gateway != new.gateway {
        v.push("gateway");
    }
    if old.tls.identity_from_cn != new.tls.identity_from_cn {
        v.push("tls.identity_from_cn");
    }
    if old.hosts != new.hosts {
        // Peers' FQDNs are re-resolved with the static entries the server started with.
        v.push("hosts");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_keys_are_named_and_policy_changes_are_not() {
        let old = Config::embedded_default();
        assert!(needs_restart(&old, &old.clone()).is_empty());
        let mut new = old.clone();
        new.limits.max_calls += 1;
        new.hosts
            .insert("pbx.example.com".into(), "192.0.2.7".parse().unwrap());
        new.tls.identity_from_cn = !new.tls.identity_from_cn;
        assert_eq!(
            needs_restart(&old, &new),
            vec!["limits", "tls.identity_from_cn", "hosts"]
        );
        // A dial plan's mode and the TLS peer ports are policy: applied by the reload.
        let mut policy_only = old.clone();
        policy_only.dial_plans[0].voip_security = mediagate_sip::VoipSecurity::Secured;
        policy_only.tls.tls_peer_ports.push(5071);
        assert!(needs_restart(&old, &policy_only).is_empty());
    }
}
