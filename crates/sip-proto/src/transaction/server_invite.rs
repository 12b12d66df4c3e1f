//! INVITE server transaction.
//!
//! ```text
//! //= https://www.rfc-editor.org/rfc/rfc3261#section-17.2.1
//! //# Figure 7: INVITE server transaction
//! //#                                |INVITE
//! //#                                |pass INV to TU
//! //#             INVITE             V send 100 if TU won't in 200ms
//! //#             send response+-----------+
//! //#                 +--------|           |--------+101-199 from TU
//! //#                 |        | Proceeding|        |send response
//! //#                 +------->|           |<-------+
//! //#                          |           |          Transport Err.
//! //#                          |           |          Inform TU
//! //#                          |           |--------------->+
//! //#                          +-----------+                |
//! //#             300-699 from TU |     |2xx from TU        |
//! //#             send response   |     |send response      |
//! //#                             |     +------------------>+
//! //#                             |                         |
//! //#             INVITE          V          Timer G fires  |
//! //#             send response+-----------+ send response  |
//! //#                 +--------|           |--------+       |
//! //#                 |        | Completed |        |       |
//! //#                 +------->|           |<-------+       |
//! //#                          +-----------+                |
//! //#                             |     |                   |
//! //#                         ACK |     |                   |
//! //#                         -   |     +------------------>+
//! //#                             |        Timer H fires    |
//! //#                             V        or Transport Err.|
//! //#                          +-----------+  Inform TU     |
//! //#                          |           |                |
//! //#                          | Confirmed |                |
//! //#                          |           |                |
//! //#                          +-----------+                |
//! //#                                |                      |
//! //#                                |Timer I fires         |
//! //#                                |-                     |
//! //#                                |                      |
//! //#                                V                      |
//! //#                          +-----------+                |
//! //#                          |           |                |
//! //#                          | Terminated|<---------------+
//! //#                          |           |
//! //#                          +-----------+
//! ```

use std::time::{Duration, Instant};

use super::{Ctx, Timer, TimerTable, apply, fsm};
use crate::config::Config;
use crate::endpoint::Event;
use crate::error::ApiError;
use crate::message::{Header, Request, Response, StatusCode};

fsm! {
    /// States of the INVITE server transaction (RFC 3261 Figure 7).
    pub enum InviteServerState {
        /// INVITE received, no final response yet.
        Proceeding,
        /// 300-699 sent, waiting for the ACK (Timers G and H).
        Completed,
        /// ACK received; absorbing ACK retransmissions until Timer I.
        Confirmed,
        /// Done (also right after a 2xx: the UAS core retransmits it, RFC 3261 §13.3.1.4).
        Terminated,
    }
    transitions {
        on_send_provisional: Proceeding => Proceeding;
        on_send_2xx: Proceeding => Terminated;
        on_send_final_error: Proceeding => Completed;
        on_ack: Completed => Confirmed;
        on_timer_h: Completed => Terminated;
        on_timer_i: Confirmed => Terminated;
        on_transport_error: Proceeding | Completed => Terminated;
    }
}

pub(crate) struct ServerInvite {
    pub(crate) state: InviteServerState,
    pub(crate) timers: TimerTable,
    /// 100 Trying deadline ("send 100 if TU won't in 200ms"); not one of the RFC's lettered timers.
    pub(crate) trying_at: Option<Instant>,
    request: Request,
    last_response: Option<Vec<u8>>,
    interval_g: Duration,
    reliable: bool,
}

impl ServerInvite {
    pub(crate) fn start(
        now: Instant,
        config: &Config,
        request: Request,
        reliable: bool,
        ctx: &mut Ctx<'_>,
    ) -> Self {
        let mut tx = ServerInvite {
            state: InviteServerState::Proceeding,
            timers: TimerTable::default(),
            trying_at: None,
            request,
            last_response: None,
            interval_g: config.t1,
            reliable,
        };
        if config.trying_delay.is_zero() {
            tx.send_trying(ctx);
        } else {
            tx.trying_at = Some(now + config.trying_delay);
        }
        tx
    }

    pub(crate) fn request(&self) -> &Request {
        &self.request
    }

    fn send_trying(&mut self, ctx: &mut Ctx<'_>) {
        let trying = self.request.response(StatusCode::TRYING).to_bytes();
        ctx.transmit(trying.clone());
        self.last_response = Some(trying);
    }

    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        match (self.timers.next_timeout(), self.trying_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A retransmitted INVITE.
    pub(crate) fn on_retransmit(&mut self, ctx: &mut Ctx<'_>) {
        if matches!(
            self.state,
            InviteServerState::Proceeding | InviteServerState::Completed
        ) && let Some(r) = &self.last_response
        {
            ctx.transmit(r.clone());
        }
    }

    /// An ACK for our non-2xx final response.
    pub(crate) fn on_ack(&mut self, now: Instant, config: &Config) {
        if self.state.on_ack().is_ok() {
            self.timers.stop(Timer::G);
            self.timers.stop(Timer::H);
            //= https://www.rfc-editor.org/rfc/rfc3261#section-17.2.1
            //# The purpose of the "Confirmed" state is to absorb any additional ACK
            //# messages that arrive, triggered from retransmissions of the final
            //# response.  When this state is entered, timer I is set to fire in T4
            //# seconds for unreliable transports, and zero seconds for reliable
            //# transports.
            let i = if self.reliable {
                Duration::ZERO
            } else {
                config.t4
            };
            self.timers.set(Timer::I, now + i);
        }
    }

    /// The TU sends a response. The caller has added the To tag.
    pub(crate) fn send_response(
        &mut self,
        now: Instant,
        config: &Config,
        mut response: Response,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), ApiError> {
        if self.state != InviteServerState::Proceeding {
            return Err(ApiError::InvalidState(self.state.name()));
        }
        if response.headers.cseq() != self.request.headers.cseq() {
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
        self.trying_at = None;
        let status = response.status;
        ctx.transmit(bytes.clone());
        if status.is_provisional() {
            apply(self.state.on_send_provisional());
            self.last_response = Some(bytes);
        } else if status.is_success() {
            //# If, while in the "Proceeding" state, the TU passes a 2xx response to
            //# the server transaction, the server transaction MUST pass this
            //# response to the transport layer for transmission.  It is not
            //# retransmitted by the server transaction; retransmissions of 2xx
            //# responses are handled by the TU.  The server transaction MUST then
            //# transition to the "Terminated" state.
            apply(self.state.on_send_2xx());
            self.timers.stop_all();
        } else {
            apply(self.state.on_send_final_error());
            self.last_response = Some(bytes);
            //# When the "Completed" state is entered, timer H MUST be set to fire in
            //# 64*T1 seconds for all transports.  [...] If an unreliable transport is
            //# being used, the server transaction MUST start timer G
            if !self.reliable {
                self.timers.set(Timer::G, now + config.t1);
            }
            self.timers.set(Timer::H, now + config.timeout_64t1());
        }
        Ok(())
    }

    pub(crate) fn on_timer(
        &mut self,
        now: Instant,
        config: &Config,
        timer: Timer,
        ctx: &mut Ctx<'_>,
    ) {
        use InviteServerState::*;
        match (timer, self.state) {
            (Timer::G, Completed) => {
                //# If timer G fires, the response is passed to the transport layer once
                //# more for retransmission, and timer G is set to fire in MIN(2*T1, T2)
                //# seconds.
                if let Some(r) = &self.last_response {
                    ctx.transmit(r.clone());
                }
                self.interval_g = (self.interval_g * 2).min(config.t2);
                self.timers.set(Timer::G, now + self.interval_g);
            }
            (Timer::H, Completed) => {
                apply(self.state.on_timer_h());
                self.timers.stop_all();
                ctx.event(Event::Timeout { id: ctx.id, timer });
            }
            (Timer::I, Confirmed) => {
                apply(self.state.on_timer_i());
                self.timers.stop_all();
            }
            _ => {}
        }
    }

    /// The 100 Trying deadline passed without a provisional response from the TU.
    pub(crate) fn on_trying_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        if self.trying_at.is_some_and(|t| t <= now) {
            self.trying_at = None;
            if self.state == InviteServerState::Proceeding && self.last_response.is_none() {
                self.send_trying(ctx);
            }
        }
    }

    pub(crate) fn on_transport_error(&mut self, ctx: &mut Ctx<'_>) {
        if self.state.on_transport_error().is_ok() {
            self.timers.stop_all();
            self.trying_at = None;
            ctx.event(Event::TransportError { id: ctx.id });
        }
    }
}
