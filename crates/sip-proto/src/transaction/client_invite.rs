//! INVITE client transaction.
//!
//! ```text
//! //= https://www.rfc-editor.org/rfc/rfc3261#section-17.1.1.2
//! //# Figure 5: INVITE client transaction
//! //#                                |INVITE from TU
//! //#              Timer A fires     |INVITE sent
//! //#              Reset A,          V                      Timer B fires
//! //#              INVITE sent +-----------+                or Transport Err.
//! //#                +---------|           |---------------+inform TU
//! //#                |         |  Calling  |               |
//! //#                +-------->|           |-------------->|
//! //#                          +-----------+ 2xx           |
//! //#                             |  |       2xx to TU     |
//! //#                             |  |1xx                  |
//! //#     300-699 +---------------+  |1xx to TU            |
//! //#    ACK sent |                  |                     |
//! //# resp. to TU |  1xx             V                     |
//! //#             |  1xx to TU  -----------+               |
//! //#             |  +---------|           |               |
//! //#             |  |         |Proceeding |-------------->|
//! //#             |  +-------->|           | 2xx           |
//! //#             |            +-----------+ 2xx to TU     |
//! //#             |       300-699    |                     |
//! //#             |       ACK sent,  |                     |
//! //#             |       resp. to TU|                     |
//! //#             |                  |                     |      NOTE:
//! //#             |  300-699         V                     |
//! //#             |  ACK sent  +-----------+Transport Err. |  transitions
//! //#             |  +---------|           |Inform TU      |  labeled with
//! //#             |  |         | Completed |-------------->|  the event
//! //#             |  +-------->|           |               |  over the action
//! //#             |            +-----------+               |  to take
//! //#             |              ^   |                     |
//! //#             |              |   | Timer D fires       |
//! //#             +--------------+   | -                   |
//! //#                                |                     |
//! //#                                V                     |
//! //#                          +-----------+               |
//! //#                          |           |               |
//! //#                          | Terminated|<--------------+
//! //#                          |           |
//! //#                          +-----------+
//! ```

use std::time::{Duration, Instant};

use super::{Ctx, Timer, TimerTable, apply, fsm};
use crate::config::Config;
use crate::endpoint::Event;
use crate::message::{CSeq, Header, Headers, Method, Request, Response};

fsm! {
    /// States of the INVITE client transaction (RFC 3261 Figure 5).
    pub enum InviteClientState {
        /// INVITE sent, no response yet.
        Calling,
        /// A provisional response arrived.
        Proceeding,
        /// A 300-699 arrived and was ACKed; absorbing retransmissions until Timer D.
        Completed,
        /// Done.
        Terminated,
    }
    transitions {
        on_provisional: Calling | Proceeding => Proceeding;
        on_2xx: Calling | Proceeding => Terminated;
        on_final_error: Calling | Proceeding => Completed;
        on_timer_b: Calling => Terminated;
        on_timer_d: Completed => Terminated;
        on_transport_error: Calling | Proceeding | Completed => Terminated;
    }
}

pub(crate) struct ClientInvite {
    pub(crate) state: InviteClientState,
    pub(crate) timers: TimerTable,
    request: Request,
    bytes: Vec<u8>,
    ack: Option<Vec<u8>>,
    interval_a: Duration,
    reliable: bool,
}

impl ClientInvite {
    pub(crate) fn start(
        now: Instant,
        config: &Config,
        request: Request,
        reliable: bool,
        ctx: &mut Ctx<'_>,
    ) -> Self {
        let bytes = request.to_bytes();
        ctx.transmit(bytes.clone());
        let mut timers = TimerTable::default();
        //= https://www.rfc-editor.org/rfc/rfc3261#section-17.1.1.2
        //# If an unreliable transport is being used, the client transaction
        //# MUST start timer A with a value of T1.
        if !reliable {
            timers.set(Timer::A, now + config.t1);
        }
        //# For any transport, the client transaction MUST start timer B with a value
        //# of 64*T1 seconds
        timers.set(Timer::B, now + config.timeout_64t1());
        ClientInvite {
            state: InviteClientState::Calling,
            timers,
            request,
            bytes,
            ack: None,
            interval_a: config.t1,
            reliable,
        }
    }

    pub(crate) fn on_response(
        &mut self,
        now: Instant,
        config: &Config,
        response: Response,
        ctx: &mut Ctx<'_>,
    ) {
        use InviteClientState::*;
        let status = response.status;
        match self.state {
            Calling | Proceeding if status.is_provisional() => {
                apply(self.state.on_provisional());
                self.timers.stop(Timer::A);
                self.timers.stop(Timer::B);
                ctx.response(response);
            }
            Calling | Proceeding if status.is_success() => {
                apply(self.state.on_2xx());
                self.timers.stop_all();
                ctx.response(response);
            }
            Calling | Proceeding => {
                apply(self.state.on_final_error());
                self.timers.stop_all();
                //= https://www.rfc-editor.org/rfc/rfc3261#section-17.1.1.3
                //# The ACK request constructed by the client transaction MUST contain
                //# values for the Call-ID, From, and Request-URI that are equal to the
                //# values of those header fields in the request passed to the transport
                //# by the client transaction
                let ack = ack_for(&self.request, &response).to_bytes();
                ctx.transmit(ack.clone());
                self.ack = Some(ack);
                let d = if self.reliable {
                    Duration::ZERO
                } else {
                    config.timer_d
                };
                self.timers.set(Timer::D, now + d);
                ctx.response(response);
            }
            Completed if status.is_final() => {
                // Retransmitted final response: ACK again, do not pass up.
                if let Some(ack) = &self.ack {
                    ctx.transmit(ack.clone());
                }
            }
            _ => {}
        }
    }

    pub(crate) fn on_timer(&mut self, now: Instant, timer: Timer, ctx: &mut Ctx<'_>) {
        use InviteClientState::*;
        match (timer, self.state) {
            (Timer::A, Calling) => {
                ctx.transmit(self.bytes.clone());
                self.interval_a *= 2;
                self.timers.set(Timer::A, now + self.interval_a);
            }
            (Timer::B, Calling) => {
                apply(self.state.on_timer_b());
                self.timers.stop_all();
                ctx.event(Event::Timeout { id: ctx.id, timer });
            }
            (Timer::D, Completed) => {
                apply(self.state.on_timer_d());
                self.timers.stop_all();
            }
            _ => {}
        }
    }

    pub(crate) fn on_transport_error(&mut self, ctx: &mut Ctx<'_>) {
        if self.state.on_transport_error().is_ok() {
            self.timers.stop_all();
            ctx.event(Event::TransportError { id: ctx.id });
        }
    }
}

/// The ACK for a non-2xx final response (RFC 3261 §17.1.1.3).
pub(crate) fn ack_for(request: &Request, response: &Response) -> Request {
    let mut headers = Headers::default();
    if let Some(v) = request.headers.top_via() {
        headers.push(Header::Via(v.clone()));
    }
    for h in request.headers.iter() {
        match h {
            Header::From(_) | Header::CallId(_) | Header::Route(_) | Header::MaxForwards(_) => {
                headers.push(h.clone())
            }
            Header::CSeq(c) => headers.push(Header::CSeq(CSeq {
                seq: c.seq,
                method: Method::Ack,
            })),
            _ => {}
        }
    }
    //# The To header field in the ACK MUST equal the To header field in the
    //# response being acknowledged
    if let Some(to) = response.headers.to() {
        headers.push(Header::To(to.clone()));
    }
    headers.push(Header::ContentLength(0));
    Request {
        method: Method::Ack,
        uri: request.uri.clone(),
        headers,
        body: Vec::new(),
    }
}
