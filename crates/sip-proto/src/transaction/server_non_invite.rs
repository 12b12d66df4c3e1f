//! non-INVITE server transaction.
//!
//! ```text
//! //= https://www.rfc-editor.org/rfc/rfc3261#section-17.2.2
//! //# Figure 8: non-INVITE server transaction
//! //#                                   |Request received
//! //#                                   |pass to TU
//! //#                                   V
//! //#                             +-----------+
//! //#                             |           |
//! //#                             | Trying    |-------------+
//! //#                             |           |             |
//! //#                             +-----------+             |200-699 from TU
//! //#                                   |                   |send response
//! //#                                   |1xx from TU        |
//! //#                                   |send response      |
//! //#                                   |                   |
//! //#                Request            V      1xx from TU  |
//! //#                send response+-----------+send response|
//! //#                    +--------|           |--------+    |
//! //#                    |        | Proceeding|        |    |
//! //#                    +------->|           |<-------+    |
//! //#             +<--------------|           |             |
//! //#             |Trnsprt Err    +-----------+             |
//! //#             |Inform TU            |                   |
//! //#             |                     |                   |
//! //#             |                     |200-699 from TU    |
//! //#             |                     |send response      |
//! //#             |  Request            V                   |
//! //#             |  send response+-----------+             |
//! //#             |      +--------|           |             |
//! //#             |      |        | Completed |<------------+
//! //#             |      +------->|           |
//! //#             +<--------------|           |
//! //#             |Trnsprt Err    +-----------+
//! //#             |Inform TU            |
//! //#             |                     |Timer J fires
//! //#             |                     |-
//! //#             |                     |
//! //#             |                     V
//! //#             |               +-----------+
//! //#             |               |           |
//! //#             +-------------->| Terminated|
//! //#                             |           |
//! //#                             +-----------+
//! ```

use std::time::{Duration, Instant};

use super::{Ctx, Timer, TimerTable, apply, fsm};
use crate::config::Config;
use crate::endpoint::Event;
use crate::error::ApiError;
use crate::message::{CSeq, Header, Response};

fsm! {
    /// States of the non-INVITE server transaction (RFC 3261 Figure 8).
    pub enum NonInviteServerState {
        /// Request received, nothing sent yet.
        Trying,
        /// A provisional response was sent.
        Proceeding,
        /// A final response was sent; absorbing retransmissions until Timer J.
        Completed,
        /// Done.
        Terminated,
    }
    transitions {
        on_send_provisional: Trying | Proceeding => Proceeding;
        on_send_final: Trying | Proceeding => Completed;
        on_timer_j: Completed => Terminated;
        on_transport_error: Trying | Proceeding | Completed => Terminated;
    }
}

pub(crate) struct ServerNonInvite {
    pub(crate) state: NonInviteServerState,
    pub(crate) timers: TimerTable,
    cseq: Option<CSeq>,
    last_response: Option<Vec<u8>>,
    reliable: bool,
}

impl ServerNonInvite {
    pub(crate) fn start(cseq: Option<CSeq>, reliable: bool) -> Self {
        ServerNonInvite {
            state: NonInviteServerState::Trying,
            timers: TimerTable::default(),
            cseq,
            last_response: None,
            reliable,
        }
    }

    /// A retransmitted request.
    pub(crate) fn on_retransmit(&mut self, ctx: &mut Ctx<'_>) {
        //= https://www.rfc-editor.org/rfc/rfc3261#section-17.2.2
        //# Once in the "Trying" state, any further request retransmissions are
        //# discarded.
        if matches!(
            self.state,
            NonInviteServerState::Proceeding | NonInviteServerState::Completed
        ) && let Some(r) = &self.last_response
        {
            ctx.transmit(r.clone());
        }
    }

    pub(crate) fn send_response(
        &mut self,
        now: Instant,
        config: &Config,
        mut response: Response,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), ApiError> {
        if !matches!(
            self.state,
            NonInviteServerState::Trying | NonInviteServerState::Proceeding
        ) {
            return Err(ApiError::InvalidState(self.state.name()));
        }
        if response.headers.cseq() != self.cseq.as_ref() {
            return Err(ApiError::Mismatch);
        }
        if !response
            .headers
            .iter()
            .any(|h| matches!(h, Header::ContentLength(_)))
        {
            response
                .headers
                .push(Header::ContentLength(response.body.len()));
        }
        let bytes = response.to_bytes();
        ctx.transmit(bytes.clone());
        self.last_response = Some(bytes);
        if response.status.is_provisional() {
            apply(self.state.on_send_provisional());
        } else {
            apply(self.state.on_send_final());
            //# When the server transaction enters the "Completed" state, it MUST set
            //# Timer J to fire in 64*T1 seconds for unreliable transports, and zero
            //# seconds for reliable transports.
            let j = if self.reliable {
                Duration::ZERO
            } else {
                config.timeout_64t1()
            };
            self.timers.set(Timer::J, now + j);
        }
        Ok(())
    }

    pub(crate) fn on_timer(&mut self, timer: Timer) {
        if timer == Timer::J && self.state == NonInviteServerState::Completed {
            apply(self.state.on_timer_j());
            self.timers.stop_all();
        }
    }

    pub(crate) fn on_transport_error(&mut self, ctx: &mut Ctx<'_>) {
        if self.state.on_transport_error().is_ok() {
            self.timers.stop_all();
            ctx.event(Event::TransportError { id: ctx.id });
        }
    }
}
