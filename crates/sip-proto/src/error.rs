//! Errors by fault (STYLE.md §6). Parse errors (the peer's fault) are
//! [`crate::message::ParseError`]; framing errors are [`crate::framing::FrameError`]; these are
//! API misuse by the caller (the TU).

/// The caller asked for something the protocol state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No live transaction with this id (it may have terminated).
    #[error("unknown or terminated transaction")]
    UnknownTransaction,
    /// The transaction is in a state where this action is not allowed.
    #[error("not allowed in transaction state {0}")]
    InvalidState(&'static str),
    /// A request must carry a Via (the transport's sent-by); the core fills in the branch.
    #[error("request has no Via header")]
    MissingVia,
    /// ACK for a 2xx is not a transaction: send it with `Endpoint::send_stateless`.
    #[error("ACK is not sent through a client transaction")]
    AckIsNotATransaction,
    /// A response for a server transaction that is not a request (CSeq method mismatch).
    #[error("response CSeq does not match the transaction")]
    Mismatch,
}
