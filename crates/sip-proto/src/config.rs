//! Protocol timing and size limits. Defaults are RFC 3261's; see `docs/signaling.md`.

use std::time::Duration;

use crate::framing::FramingConfig;

/// Endpoint configuration. Build with `Config::default()` and adjust fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// T1, RTT estimate (RFC 3261 default 500 ms).
    pub t1: Duration,
    /// T2, maximum retransmit interval for non-INVITE requests and INVITE responses (4 s).
    pub t2: Duration,
    /// T4, maximum time a message stays in the network (5 s).
    pub t4: Duration,
    /// Timer D on unreliable transports (RFC 3261: at least 32 s).
    pub timer_d: Duration,
    /// Delay before an INVITE server transaction sends 100 Trying on its own (RFC 3261 §17.2.1:
    /// 200 ms). `Duration::ZERO` sends it at once.
    pub trying_delay: Duration,
    /// Stream framing caps.
    pub framing: FramingConfig,
    /// Key of the ChaCha20 generator behind Call-IDs, tags and branches. The driver gives each
    /// process a fresh random one ([`Config::with_random_ids`] is the usual way); tests may fix
    /// it ([`Config::with_id_seed`]) to be deterministic. The default is fixed and for tests
    /// only: two processes on it produce the same identifiers.
    pub id_seed: [u8; 32],
    /// Live transactions above which new requests get a stateless 503 (default 100 000:
    /// 1000 calls/s on UDP keeps ~30 000 non-INVITE transactions in Timer J, so this is 3x
    /// headroom at a few hundred bytes each).
    pub max_transactions: usize,
    /// Retry-After seconds on that 503 (default 5).
    pub overload_retry_after: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_d: Duration::from_secs(32),
            trying_delay: Duration::from_millis(200),
            framing: FramingConfig::default(),
            id_seed: *b"mediagate test identifiers seed!",
            max_transactions: 100_000,
            overload_retry_after: 5,
        }
    }
}

impl Config {
    /// Sets a deterministic identifier seed from a number (tests).
    pub fn with_id_seed(mut self, seed: u64) -> Self {
        self.id_seed = [0; 32];
        self.id_seed[..8].copy_from_slice(&seed.to_le_bytes());
        self
    }

    /// Sets the identifier seed to `seed`, 32 bytes from the operating system's random source
    /// (the driver reads them; this crate does no I/O).
    pub fn with_random_ids(mut self, seed: [u8; 32]) -> Self {
        self.id_seed = seed;
        self
    }

    /// 64*T1: timers B, F, H, J and the 2xx give-up time.
    pub fn timeout_64t1(&self) -> Duration {
        self.t1 * 64
    }
}
