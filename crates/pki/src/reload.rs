//! Keeping the TLS material current: the initial selection, reloads, the expiry watch and the
//! directory watcher (R-CERT-3, R-CERT-4, R-CERT-5, R-CERT-6).
//!
//! [`Reloader`] is the policy, driven by explicit calls with `now`:
//! [`Reloader::start`] selects (or generates) the certificate, [`Reloader::reload_certs`] and
//! [`Reloader::reload_trust`] rescan a directory and swap only when the new material is usable,
//! [`Reloader::check_expiry`] applies the expiry rules. [`watch`] is the I/O part: a thread fed
//! by `notify` events on the two *directories* (tools such as certbot or `mv` replace files by
//! rename, which a watch on the file itself would miss), debounced, that calls the reloader and
//! runs the expiry check every [`WatchConfig::expiry_interval`].

use std::path::{Path, PathBuf};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher as _};

use crate::clock::Clock;
use crate::events;
use crate::expiry::{self, ExpiryEvent};
use crate::facts::{CertFacts, format_time};
use crate::generate::{GenerateError, Identity, generate_self_signed};
use crate::store::{StoreError, StoreScan, scan};
use crate::tls::{CertResolver, TrustAnchors, VerifierError};
use crate::trust::{TrustError, TrustStore};

/// Starting failed: the gateway cannot serve TLS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The certificate store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Nothing usable and generation failed.
    #[error(transparent)]
    Generate(#[from] GenerateError),
    /// A freshly generated certificate did not pass the store's own checks (a bug).
    #[error("generated certificate {0} is not usable")]
    GeneratedUnusable(PathBuf),
    /// The trust store could not be loaded.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The trust store could not be turned into verifiers.
    #[error(transparent)]
    Verifier(#[from] VerifierError),
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReloadOutcome {
    /// Same material as before.
    Unchanged,
    /// New material is in force for new handshakes.
    Changed,
    /// The new material is unusable; the old stays. The text says why.
    Refused(String),
}

#[derive(Debug)]
struct State {
    selected: CertFacts,
    selected_path: PathBuf,
    last_expiry_report: Option<SystemTime>,
    trust_fingerprint: String,
}

/// The certificate and trust policy of a running gateway.
#[derive(Debug)]
pub struct Reloader {
    cert_dir: PathBuf,
    trust_dir: PathBuf,
    certs: Arc<CertResolver>,
    trust: Arc<TrustAnchors>,
    state: Mutex<State>,
}

fn log_facts(code: &str, what: &str, path: &Path, f: &CertFacts) {
    tracing::info!(
        code,
        path = %path.display(),
        subject = %f.subject,
        issuer = %f.issuer,
        serial = %f.serial,
        thumbprint = %f.sha1_thumbprint,
        sha256 = %f.sha256_fingerprint,
        not_after = %format_time(f.not_after),
        self_signed = f.self_signed,
        "{code} {what}: {} issued by {} serial {} thumbprint {} sha256 {} expires {}",
        f.subject,
        f.issuer,
        f.serial,
        f.sha1_thumbprint,
        f.sha256_fingerprint,
        format_time(f.not_after)
    );
}

fn log_unusable(scan: &StoreScan) {
    for c in scan.ranked.iter().filter(|c| c.key_too_open) {
        if let Some(k) = &c.key_path {
            tracing::warn!(
                code = events::KEY_FILE_TOO_OPEN,
                path = %k.display(),
                "{} private key {} is readable by group or others; chmod 600 it",
                events::KEY_FILE_TOO_OPEN,
                k.display()
            );
        }
    }
    for c in &scan.unusable {
        if let Some(reason) = c.unusable() {
            tracing::info!(
                code = events::CERT_CANDIDATE_UNUSABLE,
                path = %c.cert_path.display(),
                %reason,
                "{} certificate candidate {} not usable: {reason}",
                events::CERT_CANDIDATE_UNUSABLE,
                c.cert_path.display()
            );
        }
    }
}

fn refusal_text(scan: &StoreScan) -> String {
    if scan.unusable.is_empty() {
        return "the store holds no certificate".into();
    }
    scan.unusable
        .iter()
        .map(|c| {
            format!(
                "{}: {}",
                c.cert_path.display(),
                c.unusable().map(|r| r.to_string()).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Reloader {
    /// Loads the trust store and selects the best certificate in `cert_dir` as of `now`. When no
    /// candidate is usable and `generate_for` is given, generates a self-signed certificate for
    /// it into `cert_dir` (R-CERT-3) and uses that. Logs `GW2001`/`GW2002` and `GW2008`.
    pub fn start(
        cert_dir: &Path,
        trust_dir: &Path,
        generate_for: Option<&Identity>,
        now: SystemTime,
    ) -> Result<Self, StartError> {
        let store = TrustStore::load(trust_dir)?;
        log_trust(&store);
        let trust_fingerprint = store.fingerprint();
        let trust = Arc::new(TrustAnchors::new(store)?);

        let mut scanned = scan(cert_dir, now)?;
        log_unusable(&scanned);
        if scanned.selected().is_none()
            && let Some(identity) = generate_for
        {
            {
                let g = generate_self_signed(cert_dir, identity, now)?;
                scanned = scan(cert_dir, now)?;
                if let Some(c) = scanned.ranked.iter().find(|c| c.cert_path == g.cert_path) {
                    if let Some(f) = &c.facts {
                        log_facts(
                            events::CERT_GENERATED,
                            "no usable certificate, generated self-signed certificate",
                            &c.cert_path,
                            f,
                        );
                    }
                } else {
                    return Err(StartError::GeneratedUnusable(g.cert_path));
                }
            }
        }
        let Some(sel) = scanned.selected() else {
            return Err(StartError::GeneratedUnusable(cert_dir.to_owned()));
        };
        let (Some(facts), Some(ck)) = (sel.facts.clone(), sel.certified_key()) else {
            return Err(StartError::GeneratedUnusable(sel.cert_path.clone()));
        };
        log_facts(
            events::CERT_SELECTED,
            "certificate selected",
            &sel.cert_path,
            &facts,
        );
        Ok(Self {
            cert_dir: cert_dir.to_owned(),
            trust_dir: trust_dir.to_owned(),
            certs: Arc::new(CertResolver::new(ck)),
            trust,
            state: Mutex::new(State {
                selected: facts,
                selected_path: sel.cert_path.clone(),
                last_expiry_report: None,
                trust_fingerprint,
            }),
        })
    }

    /// The certificate resolver to build TLS configs with.
    pub fn certs(&self) -> Arc<CertResolver> {
        self.certs.clone()
    }

    /// The trust anchors to build TLS configs with.
    pub fn trust(&self) -> Arc<TrustAnchors> {
        self.trust.clone()
    }

    /// The certificate directory.
    pub fn cert_dir(&self) -> &Path {
        &self.cert_dir
    }

    /// The trust directory.
    pub fn trust_dir(&self) -> &Path {
        &self.trust_dir
    }

    /// Facts and file of the certificate in use.
    pub fn selected(&self) -> (CertFacts, PathBuf) {
        let s = self.lock();
        (s.selected.clone(), s.selected_path.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Rescans the certificate store as of `now`. Swaps to the best candidate if it differs
    /// from the one in use (`GW2003`); keeps the current one and logs `GW2006` when nothing is
    /// usable. Also refuses to move to nothing when the current certificate has since expired:
    /// it stays, and the expiry watch reports it.
    pub fn reload_certs(&self, now: SystemTime) -> ReloadOutcome {
        let scanned = match scan(&self.cert_dir, now) {
            Ok(s) => s,
            Err(e) => return self.refuse(e.to_string()),
        };
        log_unusable(&scanned);
        let Some(sel) = scanned.selected() else {
            return self.refuse(refusal_text(&scanned));
        };
        let (Some(facts), Some(ck)) = (sel.facts.clone(), sel.certified_key()) else {
            return self.refuse(format!("{}: not usable", sel.cert_path.display()));
        };
        let mut s = self.lock();
        if s.selected.sha256_fingerprint == facts.sha256_fingerprint {
            s.selected_path = sel.cert_path.clone();
            return ReloadOutcome::Unchanged;
        }
        self.certs.swap(ck);
        log_facts(
            events::CERT_CHANGED,
            "certificate changed",
            &sel.cert_path,
            &facts,
        );
        s.selected = facts;
        s.selected_path = sel.cert_path.clone();
        s.last_expiry_report = None;
        ReloadOutcome::Changed
    }

    fn refuse(&self, why: String) -> ReloadOutcome {
        let s = self.lock();
        tracing::warn!(
            code = events::CERT_RELOAD_REFUSED,
            dir = %self.cert_dir.display(),
            keeping = %s.selected_path.display(),
            reason = %why,
            "{} certificate reload refused, keeping {}: {why}",
            events::CERT_RELOAD_REFUSED,
            s.selected_path.display()
        );
        ReloadOutcome::Refused(why)
    }

    /// Reloads the trust store. On any error (a file that does not parse, a missing directory)
    /// the anchors in force stay and `GW2009` is logged.
    pub fn reload_trust(&self) -> ReloadOutcome {
        let refuse = |why: String| {
            tracing::warn!(
                code = events::TRUST_RELOAD_REFUSED,
                dir = %self.trust_dir.display(),
                reason = %why,
                "{} trust store reload refused, keeping the previous anchors: {why}",
                events::TRUST_RELOAD_REFUSED
            );
            ReloadOutcome::Refused(why)
        };
        let store = match TrustStore::load(&self.trust_dir) {
            Ok(s) => s,
            Err(e) => return refuse(e.to_string()),
        };
        let fp = store.fingerprint();
        let mut s = self.lock();
        if fp == s.trust_fingerprint {
            return ReloadOutcome::Unchanged;
        }
        log_trust(&store);
        if let Err(e) = self.trust.swap(store) {
            drop(s);
            return refuse(e.to_string());
        }
        s.trust_fingerprint = fp;
        ReloadOutcome::Changed
    }

    /// Applies the expiry rules (R-CERT-5) to the certificate in use and logs `GW2004` (warning)
    /// or `GW2005` (error) when one is due. Call it periodically (the watcher does, hourly).
    pub fn check_expiry(&self, now: SystemTime) -> ExpiryEvent {
        let mut s = self.lock();
        let ev = expiry::due(s.selected.not_after, now, s.last_expiry_report);
        let f = &s.selected;
        match ev {
            ExpiryEvent::None => {}
            ExpiryEvent::Warning { days_left } => tracing::warn!(
                code = events::CERT_EXPIRING,
                days_left,
                subject = %f.subject,
                thumbprint = %f.sha1_thumbprint,
                not_after = %format_time(f.not_after),
                "{} certificate {} (thumbprint {}) expires in {days_left} days, on {}",
                events::CERT_EXPIRING, f.subject, f.sha1_thumbprint, format_time(f.not_after)
            ),
            ExpiryEvent::Expired { days_ago } => tracing::error!(
                code = events::CERT_EXPIRED,
                days_ago,
                subject = %f.subject,
                thumbprint = %f.sha1_thumbprint,
                not_after = %format_time(f.not_after),
                "{} certificate {} (thumbprint {}) EXPIRED {days_ago} days ago, on {}; peers will refuse it",
                events::CERT_EXPIRED, f.subject, f.sha1_thumbprint, format_time(f.not_after)
            ),
        }
        if ev != ExpiryEvent::None {
            s.last_expiry_report = Some(now);
        }
        ev
    }

    /// When the last expiry warning or error was reported for the certificate in use.
    pub fn last_expiry_report(&self) -> Option<SystemTime> {
        self.lock().last_expiry_report
    }

    /// Days of validity left of the certificate in use (the R-CERT-5 metric).
    pub fn days_left(&self, now: SystemTime) -> i64 {
        expiry::days_left(self.lock().selected.not_after, now)
    }
}

fn log_trust(store: &TrustStore) {
    if store.is_empty() {
        tracing::warn!(
            code = events::TRUST_LOADED,
            dir = %store.dir.display(),
            "{} trust store {} is empty: every TLS peer will be refused",
            events::TRUST_LOADED,
            store.dir.display()
        );
    } else {
        tracing::info!(
            code = events::TRUST_LOADED,
            dir = %store.dir.display(),
            anchors = store.certs.len(),
            "{} trust store {} loaded with {} anchors",
            events::TRUST_LOADED,
            store.dir.display(),
            store.certs.len()
        );
    }
}

/// Watcher settings.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct WatchConfig {
    /// Quiet time after the last file event before reloading, so that a tool writing a key
    /// and then a certificate triggers one reload, not two. Default 500 ms.
    pub debounce: Duration,
    /// How often the expiry watch runs. Default 1 hour (the rules themselves limit reports to
    /// one a day).
    pub expiry_interval: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(500),
            expiry_interval: Duration::from_secs(3600),
        }
    }
}

impl WatchConfig {
    /// Sets the debounce time.
    pub fn debounce(mut self, d: Duration) -> Self {
        self.debounce = d;
        self
    }

    /// Sets the expiry check interval.
    pub fn expiry_interval(mut self, d: Duration) -> Self {
        self.expiry_interval = d;
        self
    }
}

/// A running directory watcher; dropping it stops the watch and joins its thread.
#[derive(Debug)]
pub struct WatchHandle {
    watcher: Option<notify::RecommendedWatcher>,
    stop: Sender<Msg>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        drop(self.watcher.take());
        let _ = self.stop.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Debug)]
enum Msg {
    Fs(notify::Result<notify::Event>),
    Stop,
}

/// Watches the certificate and trust directories and reloads on change (debounced); runs the
/// expiry check every `config.expiry_interval`. `clock` supplies `now` for each reload.
pub fn watch(
    reloader: Arc<Reloader>,
    clock: Arc<dyn Clock>,
    config: WatchConfig,
) -> Result<WatchHandle, notify::Error> {
    let (tx, rx) = channel::<Msg>();
    let fs_tx = tx.clone();
    let mut watcher = notify::recommended_watcher(move |ev| {
        let _ = fs_tx.send(Msg::Fs(ev));
    })?;
    watcher.watch(&reloader.cert_dir, RecursiveMode::NonRecursive)?;
    watcher.watch(&reloader.trust_dir, RecursiveMode::NonRecursive)?;
    let thread = std::thread::Builder::new()
        .name("mediagate-pki-watch".into())
        .spawn(move || {
            // Next expiry check, on the injected clock, so a steady stream of file events
            // cannot postpone it.
            let mut next_expiry = clock.now() + config.expiry_interval;
            loop {
                let now = clock.now();
                if now >= next_expiry {
                    reloader.check_expiry(now);
                    next_expiry = now + config.expiry_interval;
                }
                let wait = next_expiry
                    .duration_since(now)
                    .unwrap_or(Duration::ZERO)
                    .min(config.expiry_interval);
                // Any change in either directory rescans both: a scan is a handful of small
                // files, unchanged material is detected by fingerprint, and this avoids
                // comparing event paths (absolute, maybe canonical) with configured ones.
                let mut changed = false;
                let mut note = |ev: notify::Result<notify::Event>| match ev {
                    Ok(ev) if !ev.kind.is_access() => changed = true,
                    Ok(_) => {}
                    Err(e) => tracing::warn!("certificate directory watch error: {e}"),
                };
                match rx.recv_timeout(wait) {
                    Ok(Msg::Fs(ev)) => note(ev),
                    Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                    Err(RecvTimeoutError::Timeout) => {
                        reloader.check_expiry(clock.now());
                        next_expiry = clock.now() + config.expiry_interval;
                        continue;
                    }
                }
                // Debounce: wait until the directories are quiet.
                loop {
                    match rx.recv_timeout(config.debounce) {
                        Ok(Msg::Fs(ev)) => note(ev),
                        Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                        Err(RecvTimeoutError::Timeout) => break,
                    }
                }
                if changed {
                    reloader.reload_trust();
                    let now = clock.now();
                    reloader.reload_certs(now);
                    reloader.check_expiry(now);
                }
            }
        })
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(WatchHandle {
        watcher: Some(watcher),
        stop: tx,
        thread: Some(thread),
    })
}
