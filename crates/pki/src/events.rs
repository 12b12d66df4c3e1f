//! Stable event codes of this crate's log lines (documented in `docs/events.md`).
//!
//! Every log line carries `code = "GW20xx"` as a structured field and starts its message with
//! the code, so operators can grep and alert on it. Codes are never reused for another meaning.

/// A certificate was selected for use (at start): issuer, serial, thumbprints, expiry.
pub const CERT_SELECTED: &str = "GW2001";
/// No usable certificate existed, a self-signed one was generated.
pub const CERT_GENERATED: &str = "GW2002";
/// The certificate in use changed (reload picked another one).
pub const CERT_CHANGED: &str = "GW2003";
/// The certificate in use expires within 30 days (warning, daily).
pub const CERT_EXPIRING: &str = "GW2004";
/// The certificate in use has expired (error, daily).
pub const CERT_EXPIRED: &str = "GW2005";
/// A certificate reload found nothing usable; the previous certificate stays in use.
pub const CERT_RELOAD_REFUSED: &str = "GW2006";
/// A candidate in the store is not usable (with the reason), logged on every scan.
pub const CERT_CANDIDATE_UNUSABLE: &str = "GW2007";
/// The trust store was loaded or changed (number of anchors).
pub const TRUST_LOADED: &str = "GW2008";
/// A trust store reload failed; the previous trust store stays in force.
pub const TRUST_RELOAD_REFUSED: &str = "GW2009";
/// A peer's certificate was refused during a handshake (with the reason).
pub const PEER_REFUSED: &str = "GW2010";
/// A usable candidate's private key file is readable by group or others.
pub const KEY_FILE_TOO_OPEN: &str = "GW2011";
