//! Reading and editing the configuration file for the admin commands (R-OPS-4).
//!
//! Every edit goes the same way:
//!
//! 1. read the file and validate it ([`Config::parse`]): edits start from a valid file;
//! 2. change the `toml_edit::DocumentMut`, which keeps every comment, blank line and the order
//!    of keys, so the operator's file stays theirs;
//! 3. validate the new text with [`Config::parse`]: a change that would make the configuration
//!    invalid (removing a peer a route targets, moving a dial plan with an IP-addressed peer to
//!    Secured, …) is refused with the validation error, and nothing is written;
//! 4. write atomically: a temporary file in the same directory, flushed to disk, with the
//!    original's permissions (and owner, where allowed), renamed over the original, then the
//!    directory flushed. A reader (the running gateway's reload, R-OPS-2) sees the old file or
//!    the new one, never half of one. If the file changed while the edit was prepared, nothing
//!    is written and the edit is refused, so a concurrent change is not lost.
//!
//! A symbolic link is followed: the file it points to is replaced, the link stays.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use mediagate_sip::{MediaLatching, MediaSource, VoipSecurity};
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, TableLike, Value};

use crate::{Config, ConfigError, DialPlanConfig, ErrorKind, PeerConfig, keys, transport_name};

/// A dial plan with its peers, for listing and showing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialPlanView {
    /// The dial plan.
    pub plan: DialPlanConfig,
    /// Its peers, in file order. The transport used with each is
    /// `peer.transport_in(plan.voip_security)`.
    pub peers: Vec<PeerConfig>,
}

/// The dial plans of the file at `path`, each with its peers, in file order.
pub fn list_dial_plans(path: &Path) -> Result<Vec<DialPlanView>, ConfigError> {
    let config = Config::load(path)?;
    Ok(config
        .dial_plans
        .iter()
        .map(|plan| view(&config, plan))
        .collect())
}

/// One dial plan of the file at `path` with its peers; an unknown name is an
/// [`ErrorKind::Invalid`] error listing the names there are.
pub fn show_dial_plan(path: &Path, name: &str) -> Result<DialPlanView, ConfigError> {
    let config = Config::load(path)?;
    let plan = config.dial_plan(name).ok_or_else(|| {
        no_such(
            path,
            "dial_plan",
            name,
            config.dial_plans.iter().map(|p| &p.name),
        )
    })?;
    Ok(view(&config, plan))
}

/// The peers of the file at `path`, in file order.
pub fn list_peers(path: &Path) -> Result<Vec<PeerConfig>, ConfigError> {
    Ok(Config::load(path)?.peers)
}

/// Sets the VoIP security mode of dial plan `plan` (R-MODE-4: the running gateway applies it
/// to new calls once it reloads). Returns the mode it had; when that is `mode` already, the
/// file is not written.
pub fn set_voip_security(
    path: &Path,
    plan: &str,
    mode: VoipSecurity,
) -> Result<VoipSecurity, ConfigError> {
    edit(path, |config, doc| {
        let before = config
            .dial_plan(plan)
            .ok_or_else(|| {
                no_such(
                    path,
                    "dial_plan",
                    plan,
                    config.dial_plans.iter().map(|p| &p.name),
                )
            })?
            .voip_security;
        if before == mode {
            return Ok((before, false));
        }
        let entry = entry_mut(doc, "dial_plan", plan)
            .ok_or_else(|| not_found_in_text(path, "dial_plan", plan))?;
        set_string(entry, "voip_security", &mode.to_string());
        Ok((before, true))
    })
}

/// Adds `peer` as a new `[[peer]]` entry, after the last peer of its dial plan (else after the
/// last peer). Its name must be new; the result
/// must validate (its dial plan exists, R-PEER-3 for TLS plans, its transport's listener is
/// on, …). `peer.transport` is written only when it is `Some`, so that a peer left on the
/// default follows its dial plan's mode.
pub fn add_peer(path: &Path, peer: PeerConfig) -> Result<(), ConfigError> {
    edit(path, |config, doc| {
        if config.peer(&peer.name).is_some() {
            return Err(ConfigError {
                file: path.to_owned(),
                key: keys::element("peer", &peer.name),
                problem: "a peer with this name exists already".to_owned(),
                kind: ErrorKind::Invalid,
            });
        }
        let mut table = Table::new();
        table.insert("name", toml_edit::value(peer.name.as_str()));
        table.insert("address", toml_edit::value(peer.address.to_string()));
        table.insert("port", toml_edit::value(i64::from(peer.port)));
        if let Some(t) = peer.transport {
            table.insert("transport", toml_edit::value(transport_name(t)));
        }
        table.insert("dial_plan", toml_edit::value(peer.dial_plan.as_str()));
        if peer.media_source != MediaSource::default() {
            table.insert(
                "media_source",
                toml_edit::value(peer.media_source.to_string()),
            );
        }
        if peer.media_latching != MediaLatching::default() {
            table.insert(
                "media_latching",
                toml_edit::value(peer.media_latching.to_string()),
            );
        }
        table.decor_mut().set_prefix("\n");
        match doc.get_mut("peer") {
            Some(Item::ArrayOfTables(peers)) => {
                // After the last peer of the same dial plan, else after the last peer. A table
                // without a position is written after the one before it in the array.
                let same_plan = peers
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| {
                        t.get("dial_plan").and_then(Item::as_str) == Some(peer.dial_plan.as_str())
                    })
                    .map(|(i, _)| i)
                    .last();
                match same_plan {
                    Some(i) => peers.insert(i + 1, table),
                    None => peers.push(table),
                }
            }
            Some(Item::Value(Value::Array(peers))) => peers.push(table.into_inline_table()),
            _ => {
                let mut peers = ArrayOfTables::new();
                peers.push(table);
                doc.insert("peer", Item::ArrayOfTables(peers));
            }
        }
        Ok(((), true))
    })
}

/// Removes peer `name` (with the comments written above its `[[peer]]` header) and returns it.
/// Refused, with the validation error, while a route still targets it.
pub fn remove_peer(path: &Path, name: &str) -> Result<PeerConfig, ConfigError> {
    edit(path, |config, doc| {
        let peer = config
            .peer(name)
            .ok_or_else(|| no_such(path, "peer", name, config.peers.iter().map(|p| &p.name)))?
            .clone();
        let removed = match doc.get_mut("peer") {
            Some(Item::ArrayOfTables(peers)) => {
                let i = peers
                    .iter()
                    .position(|t| t.get("name").and_then(Item::as_str) == Some(name));
                i.map(|i| peers.remove(i)).is_some()
            }
            Some(Item::Value(Value::Array(peers))) => {
                let i = peers.iter().position(|v| {
                    v.as_inline_table()
                        .and_then(|t| t.get("name"))
                        .and_then(Value::as_str)
                        == Some(name)
                });
                i.map(|i| peers.remove(i)).is_some()
            }
            _ => false,
        };
        if !removed {
            return Err(not_found_in_text(path, "peer", name));
        }
        let empty = match doc.get("peer") {
            Some(Item::ArrayOfTables(a)) => a.is_empty(),
            Some(Item::Value(Value::Array(a))) => a.is_empty(),
            _ => false,
        };
        if empty {
            doc.remove("peer");
        }
        Ok((peer, true))
    })
}

fn view(config: &Config, plan: &DialPlanConfig) -> DialPlanView {
    DialPlanView {
        plan: plan.clone(),
        peers: config.peers_of(&plan.name).cloned().collect(),
    }
}

fn no_such<'a>(
    path: &Path,
    array: &str,
    name: &str,
    have: impl Iterator<Item = &'a String>,
) -> ConfigError {
    let have: Vec<&str> = have.map(String::as_str).collect();
    ConfigError {
        file: path.to_owned(),
        key: keys::element(array, name),
        problem: format!(
            "no such {} (there {}: {})",
            array.replace('_', " "),
            if have.len() == 1 { "is" } else { "are" },
            if have.is_empty() {
                "none".to_owned()
            } else {
                have.join(", ")
            }
        ),
        kind: ErrorKind::Invalid,
    }
}

/// The validated configuration has the entry but the document walk did not find it: only a
/// layout this module does not edit (e.g. `dial_plan` written as an inline array inside a
/// dotted key) gets here.
fn not_found_in_text(path: &Path, array: &str, name: &str) -> ConfigError {
    ConfigError {
        file: path.to_owned(),
        key: keys::element(array, name),
        problem: "this entry is written in a form the admin commands cannot edit; edit the file \
                  by hand"
            .to_owned(),
        kind: ErrorKind::Invalid,
    }
}

/// The `[[array]]` entry (or inline-array element) whose `name` is `name`.
fn entry_mut<'a>(
    doc: &'a mut DocumentMut,
    array: &str,
    name: &str,
) -> Option<&'a mut dyn TableLike> {
    match doc.get_mut(array)? {
        Item::ArrayOfTables(tables) => tables
            .iter_mut()
            .find(|t| t.get("name").and_then(Item::as_str) == Some(name))
            .map(|t| t as &mut dyn TableLike),
        Item::Value(Value::Array(values)) => values
            .iter_mut()
            .filter_map(Value::as_inline_table_mut)
            .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
            .map(|t| t as &mut dyn TableLike),
        _ => None,
    }
}

/// Sets `key` to the string `text`, keeping the comment and spacing around the old value.
fn set_string(table: &mut dyn TableLike, key: &str, text: &str) {
    match table.get_mut(key) {
        Some(Item::Value(old)) => {
            let decor = old.decor().clone();
            let mut new = Value::from(text);
            *new.decor_mut() = decor;
            *old = new;
        }
        _ => {
            table.insert(key, toml_edit::value(text));
        }
    }
}

/// Read, validate, change, validate, write. `change` returns its result and whether the
/// document changed (nothing is written when it did not).
fn edit<T>(
    path: &Path,
    change: impl FnOnce(&Config, &mut DocumentMut) -> Result<(T, bool), ConfigError>,
) -> Result<T, ConfigError> {
    let original = fs::read_to_string(path).map_err(|e| io_error(path, "cannot read", &e))?;
    let config = Config::parse(&original, path)?;
    let mut doc: DocumentMut = original
        .parse()
        .map_err(|e: toml_edit::TomlError| ConfigError {
            file: path.to_owned(),
            key: String::new(),
            problem: e.message().to_owned(),
            kind: ErrorKind::Syntax,
        })?;
    let (out, changed) = change(&config, &mut doc)?;
    if !changed {
        return Ok(out);
    }
    let text = doc.to_string();
    Config::parse(&text, path).map_err(|e| ConfigError {
        problem: format!("{} (change refused; the file is unchanged)", e.problem),
        ..e
    })?;
    write_atomically(path, &original, &text)?;
    Ok(out)
}

fn io_error(path: &Path, what: &str, e: &std::io::Error) -> ConfigError {
    ConfigError {
        file: path.to_owned(),
        key: String::new(),
        problem: format!("{what}: {e}"),
        kind: ErrorKind::Io,
    }
}

/// Replaces the file at `path`, which must still hold `expected`, with `text` (see the module
/// doc for the steps).
pub(crate) fn write_atomically(path: &Path, expected: &str, text: &str) -> Result<(), ConfigError> {
    static SEQUENCE: AtomicU32 = AtomicU32::new(0);
    let target = fs::canonicalize(path).map_err(|e| io_error(path, "cannot resolve", &e))?;
    let dir = target.parent().map(Path::to_path_buf).unwrap_or_default();
    let meta = fs::metadata(&target).map_err(|e| io_error(path, "cannot stat", &e))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_error(&tmp, "cannot create", &e))?;
        // Owner before mode (a chown may clear set-id bits). Only root may give a file away; an
        // operator editing a file they can write but do not own gets a file they own, with the
        // same mode.
        match std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid())) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
            Err(e) => return Err(io_error(&tmp, "cannot set owner", &e)),
        }
        file.set_permissions(meta.permissions())
            .map_err(|e| io_error(&tmp, "cannot set permissions", &e))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| io_error(&tmp, "cannot write", &e))?;
        drop(file);
        let now = fs::read_to_string(&target).map_err(|e| io_error(path, "cannot read", &e))?;
        if now != expected {
            return Err(ConfigError {
                file: path.to_owned(),
                key: String::new(),
                problem: "the file changed while this edit was being made; nothing was written, \
                          run the command again"
                    .to_owned(),
                kind: ErrorKind::Io,
            });
        }
        fs::rename(&tmp, &target).map_err(|e| io_error(path, "cannot replace", &e))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(&dir, "cannot flush directory", &e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests;
