//! Dialogs (RFC 3261 §12) and the UAS core's 2xx retransmission (§13.3.1.4).
//!
//! A [`Dialog`] is a value the TU (the B2BUA leg) owns; it is created from the INVITE and a
//! 1xx-with-To-tag or 2xx, and builds in-dialog requests (BYE, re-INVITE, UPDATE, ACK for 2xx).
//! Its state is a plain enum: the per-state data is the same in every state, so the
//! rustls-style one-struct-per-state shape would add nothing here.

use std::time::{Duration, Instant};

use crate::Remote;
use crate::message::{
    CSeq, Header, Headers, Method, NameAddr, Request, Response, Scheme, Uri, Via,
};

/// Dialog identifier (RFC 3261 §12): Call-ID plus local and remote tags.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// Call-ID
    pub call_id: String,
    /// Our tag (From tag as UAC, To tag as UAS).
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: String,
}

/// Dialog state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    /// Created by a provisional response with a To tag.
    Early,
    /// Created or confirmed by a 2xx.
    Confirmed,
    /// BYE sent or received, or the early dialog failed.
    Terminated,
}

/// Which side created the dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We sent the INVITE.
    Uac,
    /// We received the INVITE.
    Uas,
}

/// Why a message cannot create or use a dialog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialogError {
    /// The response has no To tag, or the request no From tag.
    #[error("missing tag")]
    MissingTag,
    /// A header needed for the dialog is missing (Call-ID, CSeq, From, To, Contact).
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// The response cannot create a dialog (e.g. 100 or 3xx-6xx).
    #[error("status does not create a dialog")]
    NoDialog,
    /// In-dialog request with a CSeq lower than the last one (answer 500, RFC 3261 §12.2.2).
    #[error("CSeq out of order")]
    CSeqOutOfOrder,
    /// The request does not belong to this dialog.
    #[error("request does not match the dialog")]
    Mismatch,
}

/// One dialog (RFC 3261 §12.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    /// Identifier.
    pub id: DialogId,
    /// State.
    pub state: DialogState,
    /// Role.
    pub role: Role,
    /// Local CSeq: the last number we used.
    pub local_seq: u32,
    /// Remote CSeq: the last number the peer used, if any yet.
    pub remote_seq: Option<u32>,
    /// Our address (From as UAC, To as UAS), without tag.
    pub local_uri: NameAddr,
    /// The peer's address, without tag.
    pub remote_uri: NameAddr,
    /// Remote target: the peer's Contact.
    pub remote_target: Uri,
    /// Route set (RFC 3261 §12.1.1/§12.1.2), in the order requests use it.
    pub route_set: Vec<NameAddr>,
    /// True if the INVITE's Request-URI was sips.
    pub secure: bool,
    /// CSeq of the INVITE that created the dialog (for the ACK).
    pub invite_seq: u32,
}

fn strip_tag(mut a: NameAddr) -> NameAddr {
    a.params.retain(|p| !p.name.eq_ignore_ascii_case("tag"));
    a
}

impl Dialog {
    /// UAC side: from our INVITE and a 101-199 with To tag (early) or a 2xx (confirmed).
    pub fn new_uac(invite: &Request, response: &Response) -> Result<Dialog, DialogError> {
        let state = dialog_state_for(response)?;
        let h = &response.headers;
        let to = h.to().ok_or(DialogError::MissingHeader("To"))?;
        let from = invite
            .headers
            .from()
            .ok_or(DialogError::MissingHeader("From"))?;
        let remote_tag = to.tag().ok_or(DialogError::MissingTag)?.to_owned();
        let local_tag = from.tag().ok_or(DialogError::MissingTag)?.to_owned();
        let call_id = invite
            .headers
            .call_id()
            .ok_or(DialogError::MissingHeader("Call-ID"))?
            .to_owned();
        let cseq = invite
            .headers
            .cseq()
            .ok_or(DialogError::MissingHeader("CSeq"))?
            .seq;
        //= https://www.rfc-editor.org/rfc/rfc3261#section-12.1.2
        //# The route set MUST be set to the list of URIs in the Record-Route
        //# header field from the response, taken in reverse order
        let mut route_set: Vec<NameAddr> = h.record_routes().cloned().collect();
        route_set.reverse();
        //# The remote target MUST be set to the URI from the Contact header field
        //# of the response.
        // Lenient for provisional responses, which some PBXs send without Contact: the
        // Request-URI stands in until the 2xx brings the real target (`on_response`).
        let remote_target = match h.contact() {
            Some(c) => c.uri.clone(),
            None if state == DialogState::Early => invite.uri.clone(),
            None => return Err(DialogError::MissingHeader("Contact")),
        };
        Ok(Dialog {
            id: DialogId {
                call_id,
                local_tag,
                remote_tag,
            },
            state,
            role: Role::Uac,
            local_seq: cseq,
            remote_seq: None,
            local_uri: strip_tag(from.clone()),
            remote_uri: strip_tag(to.clone()),
            remote_target,
            route_set,
            secure: invite.uri.scheme == Scheme::Sips,
            invite_seq: cseq,
        })
    }

    /// UAS side: from the received INVITE and the 1xx/2xx we send (which carries our To tag).
    pub fn new_uas(invite: &Request, response: &Response) -> Result<Dialog, DialogError> {
        let state = dialog_state_for(response)?;
        let to = response
            .headers
            .to()
            .ok_or(DialogError::MissingHeader("To"))?;
        let from = invite
            .headers
            .from()
            .ok_or(DialogError::MissingHeader("From"))?;
        let local_tag = to.tag().ok_or(DialogError::MissingTag)?.to_owned();
        let remote_tag = from.tag().ok_or(DialogError::MissingTag)?.to_owned();
        let call_id = invite
            .headers
            .call_id()
            .ok_or(DialogError::MissingHeader("Call-ID"))?
            .to_owned();
        let cseq = invite
            .headers
            .cseq()
            .ok_or(DialogError::MissingHeader("CSeq"))?
            .seq;
        //= https://www.rfc-editor.org/rfc/rfc3261#section-12.1.1
        //# The route set MUST be set to the list of URIs in the Record-Route
        //# header field from the request, taken in order
        let route_set: Vec<NameAddr> = invite.headers.record_routes().cloned().collect();
        let remote_target = invite
            .headers
            .contact()
            .map(|c| c.uri.clone())
            .ok_or(DialogError::MissingHeader("Contact"))?;
        Ok(Dialog {
            id: DialogId {
                call_id,
                local_tag,
                remote_tag,
            },
            state,
            role: Role::Uas,
            local_seq: 0,
            remote_seq: Some(cseq),
            local_uri: strip_tag(to.clone()),
            remote_uri: strip_tag(from.clone()),
            remote_target,
            route_set,
            secure: invite.uri.scheme == Scheme::Sips,
            invite_seq: cseq,
        })
    }

    /// A response to a request we sent in this dialog (or to the creating INVITE): an early
    /// dialog is confirmed by a 2xx and ends on a failure; a 2xx to a re-INVITE refreshes the
    /// remote target (§12.2.1.2).
    pub fn on_response(&mut self, response: &Response) {
        let is_invite = response.cseq_method() == Some(&Method::Invite);
        match self.state {
            DialogState::Early if response.status.is_success() => {
                self.state = DialogState::Confirmed
            }
            DialogState::Early if response.status.code() >= 300 => {
                self.state = DialogState::Terminated
            }
            _ => {}
        }
        if is_invite
            && response.status.is_success()
            && let Some(c) = response.headers.contact()
        {
            self.remote_target = c.uri.clone();
        }
        // 481/408 to an in-dialog request end the dialog (RFC 3261 §12.2.1.2).
        if matches!(response.status.code(), 481 | 408) && self.state == DialogState::Confirmed {
            self.state = DialogState::Terminated;
        }
    }

    /// True if `headers` (of a request from the peer) belong to this dialog.
    pub fn matches_request(&self, headers: &Headers) -> bool {
        headers.call_id() == Some(self.id.call_id.as_str())
            && headers.from().and_then(NameAddr::tag) == Some(self.id.remote_tag.as_str())
            && headers.to().and_then(NameAddr::tag) == Some(self.id.local_tag.as_str())
    }

    /// An in-dialog request from the peer (RFC 3261 §12.2.2): checks CSeq order, refreshes the
    /// target on re-INVITE/UPDATE, and terminates on BYE. ACK and CANCEL do not advance CSeq.
    pub fn on_request(&mut self, request: &Request) -> Result<(), DialogError> {
        if !self.matches_request(&request.headers) {
            return Err(DialogError::Mismatch);
        }
        let cseq = request
            .headers
            .cseq()
            .ok_or(DialogError::MissingHeader("CSeq"))?;
        if !matches!(request.method, Method::Ack | Method::Cancel) {
            if let Some(last) = self.remote_seq {
                //# If the remote sequence number was not empty, but the sequence number
                //# of the request is lower than the remote sequence number, the request
                //# is out of order and MUST be rejected with a 500 (Server Internal
                //# Error) response.
                if cseq.seq < last {
                    return Err(DialogError::CSeqOutOfOrder);
                }
            }
            self.remote_seq = Some(cseq.seq);
        }
        match request.method {
            Method::Bye => self.state = DialogState::Terminated,
            Method::Invite | Method::Update => {
                if let Some(c) = request.headers.contact() {
                    self.remote_target = c.uri.clone();
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Builds an in-dialog request (RFC 3261 §12.2.1.1). `via` is our Via for the transport
    /// (the endpoint fills in the branch). Increments the local CSeq, except for ACK, which
    /// reuses the INVITE's number — use [`Dialog::create_ack`] for that.
    pub fn create_request(&mut self, method: Method, via: Via) -> Request {
        self.local_seq = self.local_seq.wrapping_add(1) & 0x7fff_ffff;
        let seq = self.local_seq;
        if method == Method::Invite {
            self.invite_seq = seq;
        }
        if method == Method::Bye {
            self.state = DialogState::Terminated;
        }
        self.build(method, seq, via)
    }

    /// The ACK for a 2xx to the INVITE with CSeq `invite_seq` (RFC 3261 §13.2.2.4). The TU
    /// sends it statelessly and again for each retransmitted 2xx.
    pub fn create_ack(&self, invite_seq: u32, via: Via) -> Request {
        self.build(Method::Ack, invite_seq, via)
    }

    fn build(&self, method: Method, seq: u32, via: Via) -> Request {
        let mut headers = Headers::default();
        headers.push(Header::Via(via));
        headers.push(Header::MaxForwards(70));
        headers.push(Header::From(
            self.local_uri.clone().with_tag(&self.id.local_tag),
        ));
        headers.push(Header::To(
            self.remote_uri.clone().with_tag(&self.id.remote_tag),
        ));
        headers.push(Header::CallId(self.id.call_id.clone()));
        headers.push(Header::CSeq(CSeq {
            seq,
            method: method.clone(),
        }));
        //= https://www.rfc-editor.org/rfc/rfc3261#section-12.2.1.1
        //# If the route set is not empty, and the first URI in the route set
        //# contains the lr parameter (see Section 19.1.1), the UAC MUST place
        //# the remote target URI into the Request-URI and MUST include a Route
        //# header field containing the route set values in order, including all
        //# parameters.
        let uri = match self.route_set.first() {
            None => self.remote_target.clone(),
            Some(first) if first.uri.is_loose_route() => {
                for r in &self.route_set {
                    headers.push(Header::Route(r.clone()));
                }
                self.remote_target.clone()
            }
            Some(first) => {
                //# If the route set is not empty, and its first URI does not contain the
                //# lr parameter, the UAC MUST place the first URI from the route set
                //# into the Request-URI, stripping any parameters that are not allowed
                //# in a Request-URI.  The UAC MUST add a Route header field containing
                //# the remainder of the route set values in order, including all
                //# parameters.  The UAC MUST then place the remote target URI into the
                //# Route header field as the last value.
                let mut uri = first.uri.clone();
                uri.params.retain(|p| {
                    !p.name.eq_ignore_ascii_case("method") && !p.name.eq_ignore_ascii_case("maddr")
                });
                uri.headers.clear();
                for r in &self.route_set[1..] {
                    headers.push(Header::Route(r.clone()));
                }
                headers.push(Header::Route(NameAddr::new(self.remote_target.clone())));
                uri
            }
        };
        headers.push(Header::ContentLength(0));
        Request {
            method,
            uri,
            headers,
            body: Vec::new(),
        }
    }
}

fn dialog_state_for(response: &Response) -> Result<DialogState, DialogError> {
    let code = response.status.code();
    if (101..200).contains(&code) {
        Ok(DialogState::Early)
    } else if response.status.is_success() {
        Ok(DialogState::Confirmed)
    } else {
        Err(DialogError::NoDialog)
    }
}

/// UAS core retransmission of a 2xx to INVITE until the ACK arrives (RFC 3261 §13.3.1.4).
///
/// ```text
/// //= https://www.rfc-editor.org/rfc/rfc3261#section-13.3.1.4
/// //# The 2xx response is passed to the transport with an
/// //# interval that starts at T1 seconds and doubles for each
/// //# retransmission until it reaches T2 seconds [...] The response
/// //# is retransmitted [...] until the ACK arrives [...] If the server
/// //# retransmits the 2xx response for 64*T1 seconds without receiving
/// //# an ACK, the dialog is confirmed, but the session SHOULD be
/// //# terminated.
/// ```
///
/// Retransmission runs on every transport: a proxy downstream of a TCP hop may be on UDP.
#[derive(Debug, Clone)]
pub(crate) struct Accepted2xx {
    pub(crate) call_id: String,
    pub(crate) cseq: u32,
    pub(crate) remote: Remote,
    pub(crate) bytes: Vec<u8>,
    interval: Duration,
    pub(crate) next: Instant,
    pub(crate) give_up: Instant,
}

impl Accepted2xx {
    pub(crate) fn new(
        now: Instant,
        t1: Duration,
        call_id: String,
        cseq: u32,
        remote: Remote,
        bytes: Vec<u8>,
    ) -> Self {
        Accepted2xx {
            call_id,
            cseq,
            remote,
            bytes,
            interval: t1,
            next: now + t1,
            give_up: now + t1 * 64,
        }
    }

    pub(crate) fn next_timeout(&self) -> Instant {
        self.next.min(self.give_up)
    }

    /// Returns true if the bytes must be retransmitted now.
    pub(crate) fn poll_retransmit(&mut self, now: Instant, t2: Duration) -> bool {
        if self.next <= now && now < self.give_up {
            self.interval = (self.interval * 2).min(t2);
            self.next = now + self.interval;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests;
