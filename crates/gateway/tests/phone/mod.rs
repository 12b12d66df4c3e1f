//! A scripted SIP phone for the gateway's integration tests: blocking std I/O, one thread
//! per SIP connection and one per media socket, no tokio.
//!
//! - [`Phone`]: a UAC over TCP, mutual TLS (rustls, client certificate) or UDP from a chosen
//!   source address: INVITE, ACK, re-INVITE, BYE, OPTIONS; in-dialog requests from the
//!   gateway (BYE, re-INVITE, UPDATE, OPTIONS) are answered on the connection thread and
//!   recorded.
//! - [`Uas`]: a plain TCP UAS on a port: 100 + 200 with its SDP to an INVITE (or another
//!   final status, see [`Uas::set_invite_status`]), 200 with its current SDP to a re-INVITE,
//!   200 to BYE and UPDATE, with extra headers on the 2xx if asked; every request recorded.
//! - [`Media`]: one UDP socket (symmetric RTP) that sends RTP or SRTP packets carrying a
//!   recognisable 32-bit marker and records what arrives (decrypting SRTP with the key from
//!   the gateway's SDP); optionally echoes what it receives.
//!
//! Everything sent and received on SIP goes into a [`Transcript`], printed when a test fails.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods // a test driver: it reads the clock
)]

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mediagate_media::sdes::CryptoAttribute;
use mediagate_media::srtp::{MasterKey, SrtpConfig, SrtpContext};
use mediagate_pki::testpki::Leaf;
use mediagate_sip_proto::sdp::Sdp;
use rustls_pki_types::pem::PemObject as _;

/// A small deterministic PRNG (SplitMix64): tests seed it from the clock and print the seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    /// A seed from the clock.
    pub fn time_seed() -> u64 {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        d.as_secs() ^ u64::from(d.subsec_nanos()).rotate_left(32) ^ u64::from(std::process::id())
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `range` (non-empty).
    pub fn range(&mut self, range: Range<u64>) -> u64 {
        range.start + self.next_u64() % (range.end - range.start)
    }
}

/// A process-wide source of unique tags, branches and Call-IDs.
fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(1);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(Rng::time_seed);
    format!(
        "{:x}{:x}",
        seed & 0xffff_ffff,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Everything a SIP connection sent and received, with times; shared with a test's failure
/// dump.
#[derive(Debug, Clone, Default)]
pub struct Transcript(Arc<Mutex<Vec<String>>>);

impl Transcript {
    /// Appends one entry.
    pub fn push(&self, what: impl Into<String>) {
        self.0.lock().unwrap().push(what.into());
    }
    /// The whole transcript as text.
    pub fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

/// One SIP message as the tests need it: start line, headers in order, body.
#[derive(Debug, Clone)]
pub struct SipMsg {
    /// `INVITE sip:... SIP/2.0` or `SIP/2.0 200 OK`.
    pub first: String,
    /// Header names (full form) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Compact header forms (RFC 3261 §7.3.3) → full names.
fn full_name(name: &str) -> &str {
    match name {
        "v" | "V" => "Via",
        "f" | "F" => "From",
        "t" | "T" => "To",
        "i" | "I" => "Call-ID",
        "l" | "L" => "Content-Length",
        "m" | "M" => "Contact",
        "c" | "C" => "Content-Type",
        "x" | "X" => "Session-Expires",
        "k" | "K" => "Supported",
        _ => name,
    }
}

impl SipMsg {
    /// Parses a header section (without the blank line) and a body.
    fn parse(head: &str, body: Vec<u8>) -> SipMsg {
        let mut lines = head.split("\r\n");
        let first = lines.next().unwrap_or_default().to_owned();
        let mut headers: Vec<(String, String)> = Vec::new();
        for l in lines {
            if l.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(l.trim());
                }
                continue;
            }
            if let Some((n, v)) = l.split_once(':') {
                headers.push((full_name(n.trim()).to_owned(), v.trim().to_owned()));
            }
        }
        SipMsg {
            first,
            headers,
            body,
        }
    }

    /// Parses one whole message (a datagram, or a frame cut off a stream); `None` when the
    /// header block is not complete.
    pub fn from_bytes(bytes: &[u8]) -> Option<SipMsg> {
        let mut buf = bytes.to_vec();
        take_message(&mut buf)
    }

    /// The `branch` parameter of the top Via.
    pub fn branch(&self) -> Option<String> {
        let via = self.header("Via")?;
        via.split(';')
            .find_map(|p| p.trim().strip_prefix("branch="))
            .map(|b| b.split(',').next().unwrap_or(b).trim().to_owned())
    }

    /// The reason phrase of a response (empty for a request).
    pub fn reason(&self) -> String {
        if self.is_request() {
            return String::new();
        }
        self.first
            .splitn(3, ' ')
            .nth(2)
            .unwrap_or_default()
            .to_owned()
    }

    /// True for a request.
    pub fn is_request(&self) -> bool {
        !self.first.starts_with("SIP/2.0")
    }
    /// The status code of a response (0 for a request).
    pub fn status(&self) -> u16 {
        if self.is_request() {
            return 0;
        }
        self.first
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }
    /// The method of a request, or the CSeq method of a response.
    pub fn method(&self) -> String {
        if self.is_request() {
            self.first
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        } else {
            self.cseq().1
        }
    }
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// Every value of header `name`, in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// CSeq number and method.
    pub fn cseq(&self) -> (u32, String) {
        let v = self.header("CSeq").unwrap_or_default();
        let mut f = v.split_whitespace();
        let n = f.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        (n, f.next().unwrap_or_default().to_owned())
    }
    /// The `tag` parameter of a From/To value.
    pub fn tag_of(value: &str) -> Option<String> {
        let params = value.rsplit_once('>').map_or(value, |x| x.1);
        params
            .split(';')
            .find_map(|p| p.trim().strip_prefix("tag="))
            .map(str::to_owned)
    }
    /// The URI inside `<...>` of a name-addr (or the value itself).
    pub fn uri_of(value: &str) -> String {
        match (value.find('<'), value.find('>')) {
            (Some(a), Some(b)) if a < b => value[a + 1..b].to_owned(),
            _ => value.split(';').next().unwrap_or(value).trim().to_owned(),
        }
    }
    /// The body as text.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body as SDP, if it parses.
    pub fn sdp(&self) -> Option<Sdp> {
        if self.body.is_empty() {
            return None;
        }
        Sdp::parse(&self.body).ok()
    }
    /// The whole message as text.
    pub fn text(&self) -> String {
        let mut s = self.first.clone();
        for (n, v) in &self.headers {
            s.push_str(&format!("\r\n{n}: {v}"));
        }
        s.push_str("\r\n\r\n");
        s.push_str(&self.body_text());
        s
    }

    /// A response to this request: Via, From, To (with `to_tag` if the request's To has
    /// none), Call-ID, CSeq, then `extra` headers, then the body (SDP if not empty).
    pub fn response(
        &self,
        code: u16,
        reason: &str,
        to_tag: &str,
        extra: &[String],
        body: &str,
    ) -> String {
        let mut r = format!("SIP/2.0 {code} {reason}\r\n");
        for v in self.headers_named("Via") {
            r.push_str(&format!("Via: {v}\r\n"));
        }
        for name in ["From", "To", "Call-ID", "CSeq"] {
            let Some(v) = self.header(name) else { continue };
            if name == "To" && SipMsg::tag_of(v).is_none() && code > 100 {
                r.push_str(&format!("To: {v};tag={to_tag}\r\n"));
            } else {
                r.push_str(&format!("{name}: {v}\r\n"));
            }
        }
        for e in extra {
            r.push_str(e);
            r.push_str("\r\n");
        }
        if !body.is_empty() {
            r.push_str("Content-Type: application/sdp\r\n");
        }
        r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        r
    }
}

/// Cuts one complete message off the front of `buf` (CRLF keep-alives are skipped).
pub fn take_message(buf: &mut Vec<u8>) -> Option<SipMsg> {
    while buf.starts_with(b"\r\n") {
        buf.drain(..2);
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let probe = SipMsg::parse(&head, Vec::new());
    let len: usize = probe
        .header("Content-Length")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    if buf.len() < end + 4 + len {
        return None;
    }
    let body = buf[end + 4..end + 4 + len].to_vec();
    buf.drain(..end + 4 + len);
    Some(SipMsg { body, ..probe })
}

/// A byte stream the connection thread can own (TCP, or TLS over TCP).
pub trait Stream: Read + Write + Send + 'static {}
impl<T: Read + Write + Send + 'static> Stream for T {}

/// What a connection does with a request that arrives: the messages to send back.
pub type Handler = Box<dyn FnMut(&SipMsg) -> Vec<String> + Send>;

/// One SIP connection served by its own thread: outgoing messages go through a channel,
/// requests are answered by a [`Handler`], responses are handed to the owner.
pub struct Conn {
    out: mpsc::Sender<Vec<u8>>,
    responses: mpsc::Receiver<SipMsg>,
    closed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Conn {
    /// Starts the thread on `stream` (whose reads must time out after a few ms).
    pub fn spawn(stream: Box<dyn Stream>, transcript: Transcript, handler: Handler) -> Conn {
        let (out, out_rx) = mpsc::channel::<Vec<u8>>();
        let (resp_tx, responses) = mpsc::channel();
        let closed = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (closed.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            conn_loop(stream, out_rx, resp_tx, transcript, handler, &s);
            c.store(true, Ordering::SeqCst);
        });
        Conn {
            out,
            responses,
            closed,
            stop,
            thread: Some(thread),
        }
    }
    /// Queues `msg` for sending.
    pub fn send(&self, msg: String) {
        let _ = self.out.send(msg.into_bytes());
    }
    /// The next response, waiting up to `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<SipMsg> {
        self.responses.recv_timeout(timeout).ok()
    }
    /// True once the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn conn_loop(
    mut s: Box<dyn Stream>,
    out_rx: mpsc::Receiver<Vec<u8>>,
    resp_tx: mpsc::Sender<SipMsg>,
    transcript: Transcript,
    mut handler: Handler,
    stop: &AtomicBool,
) {
    let t0 = Instant::now();
    let stamp = |t0: Instant| format!("[{:>6} ms]", t0.elapsed().as_millis());
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let write = |s: &mut Box<dyn Stream>, bytes: &[u8]| -> bool {
        transcript.push(format!(
            "{} --> {}",
            stamp(t0),
            String::from_utf8_lossy(bytes)
        ));
        s.write_all(bytes).and_then(|()| s.flush()).is_ok()
    };
    while !stop.load(Ordering::SeqCst) {
        while let Ok(bytes) = out_rx.try_recv() {
            if !write(&mut s, &bytes) {
                transcript.push(format!("{} write failed: connection closed", stamp(t0)));
                return;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => {
                transcript.push(format!("{} connection closed by the far end", stamp(t0)));
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                transcript.push(format!("{} connection error: {e}", stamp(t0)));
                return;
            }
        }
        while let Some(msg) = take_message(&mut buf) {
            transcript.push(format!("{} <-- {}", stamp(t0), msg.text()));
            if msg.is_request() {
                for r in handler(&msg) {
                    if !write(&mut s, r.as_bytes()) {
                        return;
                    }
                }
            } else if resp_tx.send(msg).is_err() {
                return;
            }
        }
    }
}

/// A TCP connection from `local_ip` (any port) to `remote`.
pub fn connect_from(local_ip: IpAddr, remote: SocketAddr) -> TcpStream {
    try_connect_from(local_ip, remote)
        .unwrap_or_else(|e| panic!("TCP connect from {local_ip} to {remote}: {e}"))
}

/// [`connect_from`] that reports a failed connect instead of panicking.
pub fn try_connect_from(local_ip: IpAddr, remote: SocketAddr) -> std::io::Result<TcpStream> {
    connect_many(&[local_ip], remote).pop().unwrap()
}

/// One TCP connection from each of `local_ips` (any port) to `remote`, in order, on one
/// runtime (cheap for hundreds of connections).
pub fn connect_many(local_ips: &[IpAddr], remote: SocketAddr) -> Vec<std::io::Result<TcpStream>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut out = Vec::with_capacity(local_ips.len());
        for ip in local_ips {
            let r = async {
                let s = tokio::net::TcpSocket::new_v4()?;
                s.bind(SocketAddr::new(*ip, 0))?;
                let st = s.connect(remote).await?.into_std()?;
                st.set_nonblocking(false)?;
                st.set_nodelay(true)?;
                Ok(st)
            }
            .await;
            out.push(r);
        }
        out
    })
}

/// A connected UDP socket as a byte stream for [`Conn`]: every write is one datagram and
/// every read returns one datagram (a whole SIP message).
struct UdpStream(UdpSocket);

impl Read for UdpStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.recv(buf) {
            // An ICMP port unreachable (the gateway's UDP socket not there) is not the end of
            // a UDP "connection".
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                Err(std::io::Error::from(ErrorKind::WouldBlock))
            }
            r => r,
        }
    }
}

impl Write for UdpStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.send(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Requests the gateway sent a [`Phone`] inside its dialog, and the SDP the phone answers
/// re-INVITEs with.
#[derive(Debug, Default)]
struct PhoneShared {
    requests: Vec<SipMsg>,
    sdp: String,
}

/// A scripted UAC: one call at a time on one connection to the gateway.
pub struct Phone {
    /// Name in transcripts.
    pub name: String,
    conn: Conn,
    /// Everything said on the connection.
    pub transcript: Transcript,
    local: SocketAddr,
    transport: &'static str,
    gateway: SocketAddr,
    user: String,
    domain: String,
    call_id: String,
    from_tag: String,
    cseq: u32,
    request_uri: String,
    to: String,
    remote_target: Option<String>,
    route_set: Vec<String>,
    shared: Arc<Mutex<PhoneShared>>,
    /// Provisional responses to the last INVITE.
    pub provisional: Vec<SipMsg>,
}

impl Phone {
    /// A phone over plain TCP from `local_ip` to the gateway at `gateway`.
    pub fn tcp(name: &str, local_ip: IpAddr, gateway: SocketAddr) -> Phone {
        let s = connect_from(local_ip, gateway);
        let local = s.local_addr().unwrap();
        s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        Phone::over(name, Box::new(s), local, "TCP", gateway)
    }

    /// A phone over mutual TLS from `local_ip`: it presents `leaf` and trusts `root_pem`;
    /// the gateway's certificate must name `server_name`.
    pub fn tls(
        name: &str,
        local_ip: IpAddr,
        gateway: SocketAddr,
        leaf: &Leaf,
        root_pem: &str,
        server_name: &str,
    ) -> Phone {
        Phone::try_tls(name, local_ip, gateway, leaf, root_pem, server_name)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Phone::tls`] that reports a failed connect or handshake instead of panicking.
    pub fn try_tls(
        name: &str,
        local_ip: IpAddr,
        gateway: SocketAddr,
        leaf: &Leaf,
        root_pem: &str,
        server_name: &str,
    ) -> Result<Phone, String> {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(leaf.chain(), leaf.key())
        .unwrap();
        let sni = rustls_pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), sni).unwrap();
        let mut tcp = try_connect_from(local_ip, gateway)
            .map_err(|e| format!("{name}: TCP connect to the gateway at {gateway}: {e}"))?;
        let local = tcp.local_addr().unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)
                .map_err(|e| format!("{name}: TLS handshake with the gateway: {e}"))?;
        }
        tcp.set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let stream = rustls::StreamOwned::new(conn, tcp);
        Ok(Phone::over(name, Box::new(stream), local, "TLS", gateway))
    }

    /// A phone over UDP from `local` (an IP and a port, 0: any) to the gateway at `gateway`.
    pub fn udp(name: &str, local: SocketAddr, gateway: SocketAddr) -> Phone {
        let s = UdpSocket::bind(local).unwrap_or_else(|e| panic!("{name}: UDP bind {local}: {e}"));
        s.connect(gateway).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        let local = s.local_addr().unwrap();
        Phone::over(name, Box::new(UdpStream(s)), local, "UDP", gateway)
    }

    fn over(
        name: &str,
        stream: Box<dyn Stream>,
        local: SocketAddr,
        transport: &'static str,
        gateway: SocketAddr,
    ) -> Phone {
        let transcript = Transcript::default();
        let shared = Arc::new(Mutex::new(PhoneShared::default()));
        let sh = shared.clone();
        let contact = format!(
            "Contact: <sip:{name}@{local};transport={}>",
            transport.to_ascii_lowercase()
        );
        let handler: Handler = Box::new(move |req| {
            let mut st = sh.lock().unwrap();
            st.requests.push(req.clone());
            match req.method().as_str() {
                "ACK" => vec![],
                "INVITE" => {
                    vec![req.response(200, "OK", "x", std::slice::from_ref(&contact), &st.sdp)]
                }
                _ => vec![req.response(200, "OK", "x", &[], "")],
            }
        });
        let conn = Conn::spawn(stream, transcript.clone(), handler);
        Phone {
            name: name.to_owned(),
            conn,
            transcript,
            local,
            transport,
            gateway,
            user: name.to_owned(),
            domain: format!("{name}.test"),
            call_id: format!("{}-{name}@test", unique()),
            from_tag: unique(),
            cseq: 0,
            request_uri: String::new(),
            to: String::new(),
            remote_target: None,
            route_set: Vec::new(),
            shared,
            provisional: Vec::new(),
        }
    }

    /// Forgets the dialog: the next [`Phone::invite`] starts a new call (new Call-ID and
    /// From tag) on the same connection.
    pub fn new_call(&mut self) {
        self.call_id = format!("{}-{}@test", unique(), self.name);
        self.from_tag = unique();
        self.cseq = 0;
        self.to.clear();
        self.remote_target = None;
        self.route_set.clear();
        self.shared.lock().unwrap().requests.clear();
    }

    /// The phone's local SIP address.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// The Call-ID of the current call.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Sends `msg` as it is (a whole SIP message).
    pub fn send_raw(&self, msg: String) {
        self.conn.send(msg);
    }

    /// The next response that arrives, waiting up to `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<SipMsg> {
        self.conn.recv(timeout)
    }

    /// An OPTIONS outside any dialog (its own Call-ID) to `sip:{user}@gateway`; the final
    /// response, or `None` if none came within `timeout`.
    pub fn options(&mut self, user: &str, timeout: Duration) -> Option<SipMsg> {
        let t = self.transport;
        let uri = format!(
            "sip:{user}@{}:{};transport={}",
            self.gateway.ip(),
            self.gateway.port(),
            t.to_ascii_lowercase()
        );
        let call_id = format!("{}-options-{}@test", unique(), self.name);
        let req = format!(
            "OPTIONS {uri} SIP/2.0\r\n\
             Via: SIP/2.0/{t} {local};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{user_}@{domain}>;tag={tag}\r\n\
             To: <{uri}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 OPTIONS\r\n\
             Contact: <sip:{user_}@{local};transport={tl}>\r\n\
             Accept: application/sdp\r\n\
             Content-Length: 0\r\n\r\n",
            local = self.local,
            branch = unique(),
            user_ = self.user,
            domain = self.domain,
            tag = unique(),
            tl = t.to_ascii_lowercase(),
        );
        self.conn.send(req);
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let r = self.conn.recv(left)?;
            if r.header("Call-ID") == Some(call_id.as_str()) && r.status() >= 200 {
                return Some(r);
            }
        }
    }

    fn request(&mut self, method: &str, uri: &str, branch: &str, cseq: u32, body: &str) -> String {
        let t = self.transport;
        let mut r = format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/{t} {local};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{user}@{domain}>;tag={tag}\r\n\
             To: {to}\r\n\
             Call-ID: {cid}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:{user}@{local};transport={tl}>\r\n",
            local = self.local,
            user = self.user,
            domain = self.domain,
            tag = self.from_tag,
            to = self.to,
            cid = self.call_id,
            tl = t.to_ascii_lowercase(),
        );
        for route in &self.route_set {
            r.push_str(&format!("Route: {route}\r\n"));
        }
        if !body.is_empty() {
            r.push_str("Content-Type: application/sdp\r\n");
        }
        r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        r
    }

    /// Waits for the final response to CSeq `cseq` (provisionals are kept).
    fn final_response(&mut self, cseq: u32, method: &str, secs: u64) -> SipMsg {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(r) = self.conn.recv(left) else {
                panic!(
                    "{}: no final response to {method} (CSeq {cseq}) within {secs} s",
                    self.name
                );
            };
            if r.cseq() != (cseq, method.to_owned()) {
                continue;
            }
            if r.status() < 200 {
                self.provisional.push(r);
                continue;
            }
            return r;
        }
    }

    /// Sends an INVITE for `user` at the gateway with `sdp` (the phone also answers
    /// re-INVITEs from the gateway with it), waits for the final response (10 s), ACKs it
    /// and returns it. A 2xx establishes the dialog.
    pub fn invite(&mut self, user: &str, sdp: &str) -> SipMsg {
        self.shared.lock().unwrap().sdp = sdp.to_owned();
        self.request_uri = format!(
            "sip:{user}@{}:{};transport={}",
            self.gateway.ip(),
            self.gateway.port(),
            self.transport.to_ascii_lowercase()
        );
        self.to = format!("<sip:{user}@{}>", self.gateway.ip());
        self.cseq += 1;
        let (cseq, branch, uri) = (self.cseq, unique(), self.request_uri.clone());
        let req = self.request("INVITE", &uri, &branch, cseq, sdp);
        self.provisional.clear();
        self.conn.send(req);
        let resp = self.final_response(cseq, "INVITE", 10);
        if let Some(to) = resp.header("To") {
            self.to = to.to_owned();
        }
        if resp.status() < 300 {
            self.remote_target = resp.header("Contact").map(SipMsg::uri_of);
            self.route_set = resp
                .headers_named("Record-Route")
                .iter()
                .rev()
                .map(|s| s.to_string())
                .collect();
            self.ack(cseq, None);
        } else {
            // Non-2xx: the ACK belongs to the INVITE transaction (same branch).
            self.ack(cseq, Some(&branch));
        }
        resp
    }

    fn ack(&mut self, cseq: u32, branch: Option<&str>) {
        let uri = match branch {
            Some(_) => self.request_uri.clone(),
            None => self
                .remote_target
                .clone()
                .unwrap_or_else(|| self.request_uri.clone()),
        };
        let branch = branch.map_or_else(unique, str::to_owned);
        let ack = self.request("ACK", &uri, &branch, cseq, "");
        self.conn.send(ack);
    }

    fn in_dialog(&mut self, method: &str, body: &str) -> (String, u32) {
        self.cseq += 1;
        let uri = self
            .remote_target
            .clone()
            .unwrap_or_else(|| self.request_uri.clone());
        let cseq = self.cseq;
        (self.request(method, &uri, &unique(), cseq, body), cseq)
    }

    /// A re-INVITE in the dialog with `sdp`; waits for the final response, ACKs a 2xx and
    /// returns it.
    pub fn reinvite(&mut self, sdp: &str) -> SipMsg {
        self.shared.lock().unwrap().sdp = sdp.to_owned();
        let (req, cseq) = self.in_dialog("INVITE", sdp);
        self.conn.send(req);
        let resp = self.final_response(cseq, "INVITE", 10);
        if resp.status() < 300 {
            if let Some(c) = resp.header("Contact") {
                self.remote_target = Some(SipMsg::uri_of(c));
            }
            self.ack(cseq, None);
        }
        resp
    }

    /// BYE in the dialog; returns the final response.
    pub fn bye(&mut self) -> SipMsg {
        let (req, cseq) = self.in_dialog("BYE", "");
        self.conn.send(req);
        self.final_response(cseq, "BYE", 10)
    }

    /// The requests the gateway sent us so far.
    pub fn requests(&self) -> Vec<SipMsg> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// Waits up to `timeout` for a request `method` from the gateway.
    pub fn wait_request(&self, method: &str, timeout: Duration) -> Option<SipMsg> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(r) = self.requests().into_iter().find(|r| r.method() == method) {
                return Some(r);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True once the gateway closed the connection.
    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }
}

/// What a [`Uas`] answers with and what it saw.
#[derive(Debug, Default)]
struct UasShared {
    sdp: String,
    requests: Vec<SipMsg>,
    /// A final status other than 200 for initial INVITEs.
    invite_status: Option<(u16, String)>,
    /// Extra header lines on the 2xx to INVITE (initial and re-INVITE) and UPDATE.
    extra: Vec<String>,
}

/// A scripted plain-TCP UAS (a peer of an Unsecured plan): it accepts the gateway's
/// connections and answers every INVITE with 100 + 200 and its SDP.
pub struct Uas {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Everything said on its connections.
    pub transcript: Transcript,
    shared: Arc<Mutex<UasShared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Uas {
    /// Listens on `addr` (TCP) and answers with `sdp` (see [`Uas::set_answer`]).
    pub fn listen(addr: SocketAddr, sdp: &str) -> Uas {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("UAS bind {addr}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let transcript = Transcript::default();
        let shared = Arc::new(Mutex::new(UasShared {
            sdp: sdp.to_owned(),
            ..UasShared::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (tr, sh, st) = (transcript.clone(), shared.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, from)) => {
                        tr.push(format!("accepted a connection from {from}"));
                        s.set_nonblocking(false).unwrap();
                        s.set_nodelay(true).unwrap();
                        s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
                        conns.push(Conn::spawn(Box::new(s), tr.clone(), uas_handler(&sh, addr)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            drop(conns);
        });
        Uas {
            addr,
            transcript,
            shared,
            stop,
            thread: Some(thread),
        }
    }

    /// The SDP for the next answers (INVITE and re-INVITE).
    pub fn set_answer(&self, sdp: &str) {
        self.shared.lock().unwrap().sdp = sdp.to_owned();
    }

    /// Answers the next initial INVITEs with `code` and `reason` (after 100 Trying) instead of
    /// 200 with SDP.
    pub fn set_invite_status(&self, code: u16, reason: &str) {
        self.shared.lock().unwrap().invite_status = Some((code, reason.to_owned()));
    }

    /// Header lines (`Name: value`) added to every 2xx to INVITE, re-INVITE and UPDATE.
    pub fn set_extra_headers(&self, headers: &[&str]) {
        self.shared.lock().unwrap().extra = headers.iter().map(|h| (*h).to_owned()).collect();
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<SipMsg> {
        self.shared.lock().unwrap().requests.clone()
    }

    /// The INVITEs (initial and re-INVITEs) received so far.
    pub fn invites(&self) -> Vec<SipMsg> {
        self.requests()
            .into_iter()
            .filter(|r| r.method() == "INVITE")
            .collect()
    }

    /// Waits up to `timeout` until `n` requests `method` have arrived; returns the `n`th.
    pub fn wait_request(&self, method: &str, n: usize, timeout: Duration) -> Option<SipMsg> {
        let deadline = Instant::now() + timeout;
        loop {
            let found: Vec<SipMsg> = self
                .requests()
                .into_iter()
                .filter(|r| r.method() == method)
                .collect();
            if found.len() >= n {
                return found.into_iter().nth(n - 1);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn uas_handler(shared: &Arc<Mutex<UasShared>>, addr: SocketAddr) -> Handler {
    let shared = shared.clone();
    let tag = unique();
    let contact = format!("Contact: <sip:far@{addr};transport=tcp>");
    Box::new(move |req| {
        let mut st = shared.lock().unwrap();
        st.requests.push(req.clone());
        let mut ok_headers = vec![contact.clone()];
        ok_headers.extend(st.extra.iter().cloned());
        match req.method().as_str() {
            "ACK" => vec![],
            "INVITE" => {
                let initial = req.header("To").and_then(SipMsg::tag_of).is_none();
                let trying = req.response(100, "Trying", &tag, &[], "");
                match &st.invite_status {
                    Some((code, reason)) if initial => {
                        vec![trying, req.response(*code, reason, &tag, &[], "")]
                    }
                    _ => {
                        let ok = req.response(200, "OK", &tag, &ok_headers, &st.sdp);
                        if initial { vec![trying, ok] } else { vec![ok] }
                    }
                }
            }
            "UPDATE" => vec![req.response(200, "OK", &tag, &st.extra, "")],
            _ => vec![req.response(200, "OK", &tag, &[], "")],
        }
    })
}

impl Drop for Uas {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The session part of an SDP (v, o, s, c, t) for `ip` with `o=` version `version`; `c` is
/// the session-level `c=` address (usually `ip`).
pub fn sdp_session(ip: IpAddr, version: u32, c: &str) -> String {
    format!("v=0\r\no=- 4242 {version} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {c}\r\nt=0 0\r\n")
}

/// A one-stream PCMU offer/answer at `addr`: RTP/SAVP with `a=crypto:{crypto}` when
/// `crypto` is given (else RTP/AVP), and a direction attribute (`sendrecv`, `sendonly`,
/// `recvonly`, `inactive`).
pub fn audio_sdp(
    addr: SocketAddr,
    version: u32,
    crypto: Option<&CryptoAttribute>,
    dir: &str,
) -> String {
    let mut s = sdp_session(addr.ip(), version, &addr.ip().to_string());
    let proto = if crypto.is_some() {
        "RTP/SAVP"
    } else {
        "RTP/AVP"
    };
    s.push_str(&format!(
        "m=audio {} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\n",
        addr.port()
    ));
    if let Some(c) = crypto {
        s.push_str(&format!("a=crypto:{c}\r\n"));
    }
    s.push_str(&format!("a={dir}\r\n"));
    s
}

/// The first `a=crypto` line of media section `i` of `sdp`, parsed.
pub fn crypto_of(sdp: &Sdp, i: usize) -> Option<CryptoAttribute> {
    let line = sdp.media.get(i)?.crypto_lines().next()?;
    CryptoAttribute::parse(line).ok()
}

/// The direction attribute of media section `i` (`sendrecv` when none is written).
pub fn direction_of(sdp: &Sdp, i: usize) -> String {
    let dirs = ["sendrecv", "sendonly", "recvonly", "inactive"];
    let find = |lines: &[mediagate_sip_proto::sdp::Line]| {
        lines
            .iter()
            .filter(|l| l.kind == 'a')
            .find(|l| dirs.contains(&l.value.as_str()))
            .map(|l| l.value.clone())
    };
    sdp.media
        .get(i)
        .and_then(|m| find(&m.lines))
        .or_else(|| find(&sdp.session))
        .unwrap_or_else(|| "sendrecv".into())
}

/// Marks our test payloads: the first 4 octets, followed by the 32-bit marker.
const MAGIC: u32 = 0x4D47_5448;

/// One packet a [`Media`] received.
#[derive(Debug, Clone, Copy)]
pub struct Rx {
    /// Source address.
    pub from: SocketAddr,
    /// RTP SSRC.
    pub ssrc: u32,
    /// RTP sequence number.
    pub seq: u16,
    /// Our payload marker, if the payload is one of ours.
    pub marker: Option<u32>,
    /// Whether it was SRTP (decrypted with the receive key).
    pub srtp: bool,
}

#[derive(Default)]
struct RxState {
    key: Option<MasterKey>,
    ctx: Option<SrtpContext>,
    packets: Vec<Rx>,
    /// SRTP packets that did not decrypt with the receive key.
    undecryptable: u64,
    /// Times a fresh context was needed (the sender restarted its index space).
    restarts: u64,
    /// RTCP, STUN and anything else that is not RTP.
    other: u64,
    echo: bool,
    echoed: u64,
}

/// One RTP endpoint: a UDP socket that sends from the port it advertises (symmetric RTP)
/// and a receiver thread recording what arrives.
pub struct Media {
    /// The local address (advertise it in SDP).
    pub addr: SocketAddr,
    sock: Arc<UdpSocket>,
    rx: Arc<Mutex<RxState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    peer: Option<SocketAddr>,
    tx_key: Option<MasterKey>,
    tx: Option<SrtpContext>,
    /// SSRC of what we send.
    pub ssrc: u32,
    /// Sequence number of the next packet we send.
    pub seq: u16,
    ts: u32,
}

impl Media {
    /// Binds `addr` (port 0: any) and starts the receiver.
    pub fn bind(addr: SocketAddr, ssrc: u32, seq: u16) -> Media {
        let sock = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("media bind {addr}: {e}"));
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let sock = Arc::new(sock);
        let rx = Arc::new(Mutex::new(RxState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, r, st) = (sock.clone(), rx.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !st.load(Ordering::SeqCst) {
                let Ok((n, from)) = s.recv_from(&mut buf) else {
                    continue;
                };
                let mut state = r.lock().unwrap();
                on_packet(&mut state, &s, from, &mut buf, n);
            }
        });
        Media {
            addr,
            sock,
            rx,
            stop,
            thread: Some(thread),
            peer: None,
            tx_key: None,
            tx: None,
            ssrc,
            seq,
            ts: u32::from(seq) * 160,
        }
    }

    /// Where we send (the gateway's media address for our leg).
    pub fn set_peer(&mut self, to: SocketAddr) {
        self.peer = Some(to);
    }

    /// SRTP key for what we send (`None`: plain RTP); a fresh sender context.
    pub fn set_tx_key(&mut self, key: Option<&MasterKey>) {
        self.tx_key = key.cloned();
        self.tx = key.map(|k| SrtpContext::new(k, SrtpConfig::default()));
    }

    /// Restarts our sender: a fresh SRTP context (same key, ROC 0), SSRC `ssrc`, next
    /// sequence number `seq`.
    pub fn restart(&mut self, ssrc: u32, seq: u16) {
        let key = self.tx_key.clone();
        self.set_tx_key(key.as_ref());
        self.ssrc = ssrc;
        self.seq = seq;
    }

    /// SRTP key for what we receive (`None`: plain RTP). An unchanged key keeps the context.
    pub fn set_rx_key(&self, key: Option<&MasterKey>) {
        let mut st = self.rx.lock().unwrap();
        if st.key.as_ref() != key {
            st.key = key.cloned();
            st.ctx = key.map(|k| SrtpContext::new(k, SrtpConfig::default()));
        }
    }

    /// Echo every packet back to its source (before recording it).
    pub fn set_echo(&self, on: bool) {
        self.rx.lock().unwrap().echo = on;
    }

    /// The next packet (PT 0, 160-octet payload carrying `marker`), protected when we have
    /// a send key; advances the sequence number.
    pub fn packet(&mut self, marker: u32) -> Vec<u8> {
        let mut p = vec![0u8; 12 + 160 + 64];
        p[0] = 0x80;
        p[1] = 0;
        p[2..4].copy_from_slice(&self.seq.to_be_bytes());
        p[4..8].copy_from_slice(&self.ts.to_be_bytes());
        p[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        p[12..16].copy_from_slice(&MAGIC.to_be_bytes());
        p[16..20].copy_from_slice(&marker.to_be_bytes());
        for b in &mut p[20..172] {
            *b = 0xd5;
        }
        let len = match self.tx.as_mut() {
            Some(ctx) => ctx.protect_rtp(&mut p, 172).expect("protect"),
            None => 172,
        };
        p.truncate(len);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(160);
        p
    }

    /// Sends the next packet with `marker` to the peer; returns the bytes on the wire.
    pub fn send(&mut self, marker: u32) -> Vec<u8> {
        let p = self.packet(marker);
        self.send_raw(&p);
        p
    }

    /// Sends `bytes` to the peer as they are.
    pub fn send_raw(&self, bytes: &[u8]) {
        let to = self.peer.expect("media peer set");
        self.sock.send_to(bytes, to).unwrap();
    }

    /// Sends `bytes` to `to`.
    pub fn send_to(&self, bytes: &[u8], to: SocketAddr) {
        self.sock.send_to(bytes, to).unwrap();
    }

    /// Sends one packet per marker, `gap` apart.
    pub fn send_run(&mut self, markers: Range<u32>, gap: Duration) {
        for m in markers {
            self.send(m);
            std::thread::sleep(gap);
        }
    }

    /// Everything received so far (RTP only).
    pub fn received(&self) -> Vec<Rx> {
        self.rx.lock().unwrap().packets.clone()
    }

    /// Number of RTP packets received so far.
    pub fn count(&self) -> usize {
        self.rx.lock().unwrap().packets.len()
    }

    /// Distinct markers in `range` among the packets received from index `from` on.
    pub fn markers(&self, from: usize, range: Range<u32>) -> usize {
        let st = self.rx.lock().unwrap();
        st.packets
            .iter()
            .skip(from)
            .filter_map(|p| p.marker)
            .filter(|m| range.contains(m))
            .collect::<HashSet<_>>()
            .len()
    }

    /// Waits up to `timeout` for `want` distinct markers of `range` (from index `from`);
    /// returns how many arrived.
    pub fn wait_markers(
        &self,
        from: usize,
        range: Range<u32>,
        want: usize,
        timeout: Duration,
    ) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.markers(from, range.clone());
            if n >= want || Instant::now() >= deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until nothing has arrived for `quiet` (at most `max`).
    pub fn wait_quiet(&self, quiet: Duration, max: Duration) {
        let deadline = Instant::now() + max;
        let mut last = self.count();
        let mut since = Instant::now();
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            let n = self.count();
            if n != last {
                last = n;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return;
            }
        }
    }

    /// A one-line summary of what arrived.
    pub fn summary(&self) -> String {
        let st = self.rx.lock().unwrap();
        let sources: HashSet<SocketAddr> = st.packets.iter().map(|p| p.from).collect();
        let ssrcs: HashSet<u32> = st.packets.iter().map(|p| p.ssrc).collect();
        format!(
            "media {}: {} RTP packets received (srtp {}), from {:?}, SSRCs {:x?}, undecryptable {}, \
             sender restarts {}, non-RTP {}, echoed {}",
            self.addr,
            st.packets.len(),
            st.packets.iter().filter(|p| p.srtp).count(),
            sources,
            ssrcs,
            st.undecryptable,
            st.restarts,
            st.other,
            st.echoed
        )
    }
}

fn on_packet(st: &mut RxState, sock: &UdpSocket, from: SocketAddr, buf: &mut [u8], n: usize) {
    if st.echo && sock.send_to(&buf[..n], from).is_ok() {
        st.echoed += 1;
    }
    // RTP version 2, and not RTCP (PT 200-204 in the second octet).
    if n < 12 || buf[0] >> 6 != 2 || (200..=204).contains(&buf[1]) {
        st.other += 1;
        return;
    }
    let mut srtp = false;
    let mut len = n;
    if let Some(key) = st.key.clone() {
        srtp = true;
        let copy = buf[..n].to_vec();
        match st.ctx.as_mut().map(|c| c.unprotect_rtp(buf, n)) {
            Some(Ok(l)) => len = l,
            _ => {
                // The sender may have restarted its index space (a fresh context on the
                // gateway's side): accept it as a new stream if it decrypts.
                buf[..n].copy_from_slice(&copy);
                let mut fresh = SrtpContext::new(&key, SrtpConfig::default());
                match fresh.unprotect_rtp(buf, n) {
                    Ok(l) => {
                        len = l;
                        st.ctx = Some(fresh);
                        st.restarts += 1;
                    }
                    Err(_) => {
                        st.undecryptable += 1;
                        return;
                    }
                }
            }
        }
    }
    let seq = u16::from_be_bytes([buf[2], buf[3]]);
    let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
    let cc = usize::from(buf[0] & 0x0f);
    let at = 12 + 4 * cc;
    let marker = (len >= at + 8
        && u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) == MAGIC)
        .then(|| u32::from_be_bytes([buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]]));
    st.packets.push(Rx {
        from,
        ssrc,
        seq,
        marker,
        srtp,
    });
}

impl Drop for Media {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
