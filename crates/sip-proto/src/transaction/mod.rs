//! RFC 3261 §17 transaction state machines.
//!
//! Each machine is a small `Copy` state enum whose transitions are declared once, in an
//! `fsm!` table next to the RFC figure (s2n-quic `stream/state` style). The transaction
//! structs around them hold the request/response bytes to retransmit and a `TimerTable`;
//! they never read the clock: every method takes `now`.

mod client_invite;
mod client_non_invite;
mod server_invite;
mod server_non_invite;
mod timer;

pub use client_invite::InviteClientState;
pub use client_non_invite::NonInviteClientState;
pub use server_invite::InviteServerState;
pub use server_non_invite::NonInviteServerState;
pub use timer::Timer;

pub(crate) use client_invite::ClientInvite;
pub(crate) use client_non_invite::ClientNonInvite;
pub(crate) use server_invite::ServerInvite;
pub(crate) use server_non_invite::ServerNonInvite;
pub(crate) use timer::TimerTable;

use std::collections::VecDeque;

use crate::endpoint::{Event, Output, Transmit};
use crate::{Remote, message::Response};

/// Handle to a transaction owned by the [`crate::Endpoint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId(pub(crate) u64);

/// A transition that the table does not allow (a bug in the caller of the FSM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidTransition {
    pub(crate) from: &'static str,
    pub(crate) event: &'static str,
}

/// Declares a state enum and its transition table. Each `event: From|From => To;` line becomes
/// a method `event(&mut self) -> Result<(), InvalidTransition>`; `transitions()` and `dot()`
/// expose the table for snapshot tests and docs.
macro_rules! fsm {
    (
        $(#[$meta:meta])*
        pub enum $ty:ident { $( $(#[$smeta:meta])* $state:ident ),* $(,)? }
        transitions { $( $event:ident : $($from:ident)|+ => $to:ident ; )* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $ty { $( $(#[$smeta])* $state ),* }

        #[allow(dead_code)]
        impl $ty {
            $(
                pub(crate) fn $event(&mut self) -> Result<(), $crate::transaction::InvalidTransition> {
                    match *self {
                        $( $ty::$from )|+ => { *self = $ty::$to; Ok(()) }
                        other => Err($crate::transaction::InvalidTransition { from: other.name(), event: stringify!($event) }),
                    }
                }
            )*

            /// The state's name.
            pub fn name(self) -> &'static str {
                match self { $( $ty::$state => stringify!($state) ),* }
            }

            /// The transition table as `(event, from, to)` rows, in declaration order.
            pub fn transitions() -> Vec<(&'static str, &'static str, &'static str)> {
                vec![ $( $( (stringify!($event), stringify!($from), stringify!($to)), )+ )* ]
            }

            /// The table as a Graphviz digraph.
            pub fn dot() -> String {
                let mut s = format!("digraph {} {{\n", stringify!($ty));
                for (event, from, to) in Self::transitions() {
                    s.push_str(&format!("  {from} -> {to} [label=\"{event}\"];\n"));
                }
                s.push_str("}\n");
                s
            }
        }
    };
}
pub(crate) use fsm;

/// Applies a transition that the caller has already checked; a failure is a bug, reported in
/// debug builds and ignored in release (the state stays unchanged).
pub(crate) fn apply(r: Result<(), InvalidTransition>) {
    debug_assert!(r.is_ok(), "invalid transition: {r:?}");
}

/// Where a transaction writes its outputs.
pub(crate) struct Ctx<'a> {
    pub(crate) id: TransactionId,
    pub(crate) remote: Remote,
    pub(crate) out: &'a mut VecDeque<Output>,
}

impl Ctx<'_> {
    pub(crate) fn transmit(&mut self, bytes: Vec<u8>) {
        self.out.push_back(Output::Transmit(Transmit {
            remote: self.remote,
            bytes,
        }));
    }
    pub(crate) fn event(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }
    pub(crate) fn response(&mut self, response: Response) {
        let id = self.id;
        self.event(Event::Response { id, response });
    }
}

/// The state of any transaction, for observers and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransactionState {
    /// INVITE client transaction (Figure 5).
    InviteClient(InviteClientState),
    /// non-INVITE client transaction (Figure 6).
    NonInviteClient(NonInviteClientState),
    /// INVITE server transaction (Figure 7).
    InviteServer(InviteServerState),
    /// non-INVITE server transaction (Figure 8).
    NonInviteServer(NonInviteServerState),
}

#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) use client_invite::ack_for as client_invite_ack_for_tests;
