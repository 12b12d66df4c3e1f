//! non-INVITE client transaction.
//!
//! ```text
//! //= https://www.rfc-editor.org/rfc/rfc3261#section-17.1.2.2
//! //# Figure 6: non-INVITE client transaction
//! //#                                |Request from TU
//! //#                                |send request
//! //#            Timer E             V
//! //#            send request  +-----------+
//! //#                +---------|           |-------------------+
//! //#                |         |  Trying   |  Timer F          |
//! //#                +-------->|           |  or Transport Err.|
//! //#                          +-----------+  inform TU        |
//! //#             200-699         |  |                         |
//! //#             resp. to TU     |  |1xx                      |
//! //#             +---------------+  |resp. to TU              |
//! //#             |                  |                         |
//! //#             |   Timer E        V       Timer F           |
//! //#             |   send req +-----------+ or Transport Err. |
//! //#             |  +---------|           | inform TU         |
//! //#             |  |         |Proceeding |------------------>|
//! //#             |  +-------->|           |-----+             |
//! //#             |            +-----------+     |1xx          |
//! //#             |              |      ^        |resp to TU   |
//! //#             | 200-699      |      +--------+             |
//! //#             | resp. to TU  |                             |
//! //#             |              |                             |
//! //#             |              V                             |
//! //#             |            +-----------+                   |
//! //#             |            |           |                   |
//! //#             |            | Completed |                   |
//! //#             |            |           |                   |
//! //#             |            +-----------+                   |
//! //#             |              ^   |                         |
//! //#             |              |   | Timer K                 |
//! //#             +--------------+   | -                       |
//! //#                                |                         |
//! //#                                V                         |
//! //#          NOTE:           +-----------+                   |
//! //#                          |           |                   |
//! //#      transitions         | Terminated|<------------------+
//! //#      labeled with        |           |
//! //#      the event           +-----------+
//! //#      over the action
//! //#      to take
//! ```

use std::time::{Duration, Instant};

use super::{Ctx, Timer, TimerTable, apply, fsm};
use crate::config::Config;
use crate::endpoint::Event;
use crate::message::{Request, Response};

fsm! {
    /// States of the non-INVITE client transaction (RFC 3261 Figure 6).
    pub enum NonInviteClientState {
        /// Request sent, no response yet.
        Trying,
        /// A provisional response arrived.
        Proceeding,
        /// A final response arrived; absorbing retransmissions until Timer K.
        Completed,
        /// Done.
        Terminated,
    }
    transitions {
        on_provisional: Trying | Proceeding => Proceeding;
        on_final: Trying | Proceeding => Completed;
        on_timer_f: Trying | Proceeding => Terminated;
        on_timer_k: Completed => Terminated;
        on_transport_error: Trying | Proceeding => Terminated;
    }
}

pub(crate) struct ClientNonInvite {
    pub(crate) state: NonInviteClientState,
    pub(crate) timers: TimerTable,
    bytes: Vec<u8>,
    interval_e: Duration,
    reliable: bool,
}

impl ClientNonInvite {
    pub(crate) fn start(
        now: Instant,
        config: &Config,
        request: &Request,
        reliable: bool,
        ctx: &mut Ctx<'_>,
    ) -> Self {
        let bytes = request.to_bytes();
        ctx.transmit(bytes.clone());
        let mut timers = TimerTable::default();
        //= https://www.rfc-editor.org/rfc/rfc3261#section-17.1.2.2
        //# If an unreliable transport is in use, the client transaction MUST set timer
        //# E to fire in T1 seconds.
        if !reliable {
            timers.set(Timer::E, now + config.t1);
        }
        timers.set(Timer::F, now + config.timeout_64t1());
        ClientNonInvite {
            state: NonInviteClientState::Trying,
            timers,
            bytes,
            interval_e: config.t1,
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
        use NonInviteClientState::*;
        match self.state {
            Trying | Proceeding if response.status.is_provisional() => {
                apply(self.state.on_provisional());
                ctx.response(response);
            }
            Trying | Proceeding => {
                apply(self.state.on_final());
                self.timers.stop_all();
                //# Once the client transaction enters the "Completed" state, it MUST set
                //# Timer K to fire in T4 seconds for unreliable transports, and zero
                //# seconds for reliable transports.
                let k = if self.reliable {
                    Duration::ZERO
                } else {
                    config.t4
                };
                self.timers.set(Timer::K, now + k);
                ctx.response(response);
            }
            _ => {}
        }
    }

    pub(crate) fn on_timer(
        &mut self,
        now: Instant,
        config: &Config,
        timer: Timer,
        ctx: &mut Ctx<'_>,
    ) {
        use NonInviteClientState::*;
        match (timer, self.state) {
            (Timer::E, Trying) => {
                //# If timer E fires while still in this state, the timer is reset, but
                //# this time with a value of MIN(2*T1, T2).
                ctx.transmit(self.bytes.clone());
                self.interval_e = (self.interval_e * 2).min(config.t2);
                self.timers.set(Timer::E, now + self.interval_e);
            }
            (Timer::E, Proceeding) => {
                //# If Timer E fires while in the "Proceeding" state, the request MUST be
                //# passed to the transport layer for retransmission, and Timer E MUST be
                //# reset with a value of T2 seconds.
                ctx.transmit(self.bytes.clone());
                self.interval_e = config.t2;
                self.timers.set(Timer::E, now + config.t2);
            }
            (Timer::F, Trying | Proceeding) => {
                apply(self.state.on_timer_f());
                self.timers.stop_all();
                ctx.event(Event::Timeout { id: ctx.id, timer });
            }
            (Timer::K, Completed) => {
                apply(self.state.on_timer_k());
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
