//! Status codes and reason phrases from one table (RFC 3261 §21 and extensions).

use std::fmt;

/// A SIP status code, 100..=699.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(u16);

macro_rules! status_codes {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, $reason:literal; )*) => {
        impl StatusCode {
            $( $(#[$doc])* pub const $name: StatusCode = StatusCode($code); )*

            /// The default reason phrase, or a class phrase for codes not in the table.
            pub fn reason(self) -> &'static str {
                match self.0 {
                    $( $code => $reason, )*
                    100..=199 => "Provisional",
                    200..=299 => "Success",
                    300..=399 => "Redirection",
                    400..=499 => "Client Error",
                    500..=599 => "Server Error",
                    _ => "Global Failure",
                }
            }

            /// Every code in the table (used by tests and docs).
            pub const KNOWN: &'static [StatusCode] = &[ $( StatusCode($code), )* ];
        }
    };
}

status_codes! {
    /// 100
    TRYING = 100, "Trying";
    /// 180
    RINGING = 180, "Ringing";
    /// 181
    CALL_IS_BEING_FORWARDED = 181, "Call Is Being Forwarded";
    /// 182
    QUEUED = 182, "Queued";
    /// 183
    SESSION_PROGRESS = 183, "Session Progress";
    /// 200
    OK = 200, "OK";
    /// 202
    ACCEPTED = 202, "Accepted";
    /// 300
    MULTIPLE_CHOICES = 300, "Multiple Choices";
    /// 301
    MOVED_PERMANENTLY = 301, "Moved Permanently";
    /// 302
    MOVED_TEMPORARILY = 302, "Moved Temporarily";
    /// 400
    BAD_REQUEST = 400, "Bad Request";
    /// 401
    UNAUTHORIZED = 401, "Unauthorized";
    /// 403
    FORBIDDEN = 403, "Forbidden";
    /// 404
    NOT_FOUND = 404, "Not Found";
    /// 405
    METHOD_NOT_ALLOWED = 405, "Method Not Allowed";
    /// 408
    REQUEST_TIMEOUT = 408, "Request Timeout";
    /// 413
    REQUEST_ENTITY_TOO_LARGE = 413, "Request Entity Too Large";
    /// 415
    UNSUPPORTED_MEDIA_TYPE = 415, "Unsupported Media Type";
    /// 416
    UNSUPPORTED_URI_SCHEME = 416, "Unsupported URI Scheme";
    /// 420
    BAD_EXTENSION = 420, "Bad Extension";
    /// 422 (RFC 4028)
    SESSION_INTERVAL_TOO_SMALL = 422, "Session Interval Too Small";
    /// 480
    TEMPORARILY_UNAVAILABLE = 480, "Temporarily Unavailable";
    /// 481
    CALL_DOES_NOT_EXIST = 481, "Call/Transaction Does Not Exist";
    /// 482
    LOOP_DETECTED = 482, "Loop Detected";
    /// 483
    TOO_MANY_HOPS = 483, "Too Many Hops";
    /// 484
    ADDRESS_INCOMPLETE = 484, "Address Incomplete";
    /// 486
    BUSY_HERE = 486, "Busy Here";
    /// 487
    REQUEST_TERMINATED = 487, "Request Terminated";
    /// 488
    NOT_ACCEPTABLE_HERE = 488, "Not Acceptable Here";
    /// 491
    REQUEST_PENDING = 491, "Request Pending";
    /// 500
    SERVER_INTERNAL_ERROR = 500, "Server Internal Error";
    /// 501
    NOT_IMPLEMENTED = 501, "Not Implemented";
    /// 502
    BAD_GATEWAY = 502, "Bad Gateway";
    /// 503
    SERVICE_UNAVAILABLE = 503, "Service Unavailable";
    /// 504
    SERVER_TIMEOUT = 504, "Server Time-out";
    /// 505
    VERSION_NOT_SUPPORTED = 505, "Version Not Supported";
    /// 513
    MESSAGE_TOO_LARGE = 513, "Message Too Large";
    /// 600
    BUSY_EVERYWHERE = 600, "Busy Everywhere";
    /// 603
    DECLINE = 603, "Decline";
    /// 604
    DOES_NOT_EXIST_ANYWHERE = 604, "Does Not Exist Anywhere";
    /// 606
    NOT_ACCEPTABLE = 606, "Not Acceptable";
}

impl StatusCode {
    /// A status code if `code` is in 100..=699.
    pub const fn new(code: u16) -> Option<StatusCode> {
        if code >= 100 && code <= 699 {
            Some(StatusCode(code))
        } else {
            None
        }
    }
    /// The numeric code.
    pub const fn code(self) -> u16 {
        self.0
    }
    /// 1xx
    pub const fn is_provisional(self) -> bool {
        self.0 < 200
    }
    /// 2xx
    pub const fn is_success(self) -> bool {
        self.0 >= 200 && self.0 < 300
    }
    /// 200..=699
    pub const fn is_final(self) -> bool {
        self.0 >= 200
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
