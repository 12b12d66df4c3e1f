use super::*;

const CFG: FramingConfig = FramingConfig {
    max_header_bytes: 256,
    max_body_bytes: 16,
};

#[test]
fn incomplete_then_complete_across_reads() {
    let msg = b"OPTIONS sip:a@b SIP/2.0\r\nl: 4\r\n\r\nbodyNEXT";
    for cut in 0..30 {
        assert_eq!(check(&msg[..cut], &CFG), Check::Incomplete, "cut {cut}");
    }
    assert_eq!(check(&msg[..msg.len() - 5], &CFG), Check::Incomplete);
    assert_eq!(check(msg, &CFG), Check::Complete(msg.len() - 4));
}

#[test]
fn folded_content_length_with_space_before_colon() {
    let msg = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length  :\r\n   3\r\n\r\nabc";
    assert_eq!(check(msg, &CFG), Check::Complete(msg.len()));
}

#[test]
fn keepalives() {
    assert_eq!(
        check(b"\r\n\r\nINVITE", &CFG),
        Check::KeepAlive { len: 4, pong: true }
    );
    assert_eq!(
        check(b"\r\nINVITE", &CFG),
        Check::KeepAlive {
            len: 2,
            pong: false
        }
    );
    assert_eq!(
        check(b"\r\n", &CFG),
        Check::KeepAlive {
            len: 2,
            pong: false
        }
    );
    assert_eq!(check(b"\r", &CFG), Check::Incomplete);
    assert!(is_keepalive_datagram(b"\r\n\r\n"));
    assert!(!is_keepalive_datagram(b""));
}

#[test]
fn caps_and_errors() {
    let big = vec![b'a'; 300];
    assert_eq!(
        check(&big, &CFG),
        Check::Error(FrameError::HeadersTooLarge { max: 256 })
    );
    let msg = b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 17\r\n\r\n";
    assert_eq!(
        check(msg, &CFG),
        Check::Error(FrameError::BodyTooLarge {
            header_len: msg.len(),
            content_length: 17
        })
    );
    let msg = b"INVITE sip:a@b SIP/2.0\r\nContent-Length: -999\r\n\r\n";
    assert_eq!(
        check(msg, &CFG),
        Check::Error(FrameError::InvalidContentLength {
            header_len: msg.len()
        })
    );
    let msg = b"INVITE sip:a@b SIP/2.0\r\nContent-Length: five\r\n\r\n";
    assert_eq!(
        check(msg, &CFG),
        Check::Error(FrameError::InvalidContentLength {
            header_len: msg.len()
        })
    );
    let msg = b"INVITE sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nxx";
    assert_eq!(
        check(msg, &CFG),
        Check::Error(FrameError::InvalidContentLength {
            header_len: msg.len() - 2
        })
    );
    let msg = b"INVITE sip:a@b SIP/2.0\r\nTo: x\r\n\r\n";
    assert_eq!(
        check(msg, &CFG),
        Check::Error(FrameError::MissingContentLength {
            header_len: msg.len()
        })
    );
}
