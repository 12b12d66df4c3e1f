//! SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966). Escapes (`%HH`) are kept as written;
//! the parser never unescapes (RFC 4475 §3.1.1.3: `name=v%61lue%25%34%31` stays as is).

use super::Param;

/// A string that is not a valid URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid URI")]
pub struct InvalidUri;

/// A URI scheme.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:`
    Tel,
    /// Any other scheme; the rest of the URI is kept opaque in [`Uri::host`].
    Other(String),
}

impl Scheme {
    /// The scheme name.
    pub fn as_str(&self) -> &str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
            Scheme::Other(s) => s,
        }
    }
}

/// An IP address as the `host` of a SIP URI or Via header (RFC 3261 §25.1): IPv4 as is,
/// IPv6 in brackets.
pub fn ip_host(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// A URI. For `sip`/`sips` all fields are used; for `tel` the number is in `host` and the
/// parameters in `params`; for other schemes everything after the colon is in `host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// Scheme.
    pub scheme: Scheme,
    /// User part, escapes kept.
    pub user: Option<String>,
    /// Password part (deprecated by RFC 3261, still parsed).
    pub password: Option<String>,
    /// Host (IPv6 references keep their brackets), tel number, or opaque part.
    pub host: String,
    /// Port.
    pub port: Option<u16>,
    /// URI parameters (`;lr`, `;transport=tcp`).
    pub params: Vec<Param>,
    /// URI headers (`?Route=...`), only valid inside `<>` and never in a Request-URI.
    pub headers: Vec<Param>,
}

impl Uri {
    /// `sip:[user@]host[:port]`
    pub fn sip(user: Option<&str>, host: &str, port: Option<u16>) -> Uri {
        Uri {
            scheme: Scheme::Sip,
            user: user.map(str::to_owned),
            password: None,
            host: host.to_owned(),
            port,
            params: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// A URI parameter by case-insensitive name; `Some(None)` for a flag.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        super::find_param(&self.params, name).map(|p| p.value.as_deref())
    }

    /// True if the `lr` parameter is present (loose routing, RFC 3261 §16.12).
    pub fn is_loose_route(&self) -> bool {
        self.param("lr").is_some()
    }

    /// Parses a URI. `s` must not contain surrounding `<>` or whitespace.
    pub fn parse(s: &str) -> Result<Uri, InvalidUri> {
        Self::parse_inner(s).map_err(|()| InvalidUri)
    }

    fn parse_inner(s: &str) -> Result<Uri, ()> {
        let colon = s.find(':').ok_or(())?;
        let scheme_s = &s[..colon];
        let rest = &s[colon + 1..];
        let mut chars = scheme_s.bytes();
        match chars.next() {
            Some(c) if c.is_ascii_alphabetic() => {}
            _ => return Err(()),
        }
        if !chars.all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'-' || c == b'.') {
            return Err(());
        }
        if rest.is_empty()
            || rest
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b == b'<' || b == b'>' || b == b'"')
        {
            return Err(());
        }
        let scheme = match scheme_s.to_ascii_lowercase().as_str() {
            "sip" => Scheme::Sip,
            "sips" => Scheme::Sips,
            "tel" => Scheme::Tel,
            _ => Scheme::Other(scheme_s.to_owned()),
        };
        match scheme {
            Scheme::Sip | Scheme::Sips => parse_sip(scheme, rest),
            Scheme::Tel => {
                let (number, params) = match rest.find(';') {
                    Some(i) => (&rest[..i], parse_params(&rest[i + 1..])?),
                    None => (rest, Vec::new()),
                };
                if number.is_empty() {
                    return Err(());
                }
                Ok(Uri {
                    scheme,
                    user: None,
                    password: None,
                    host: number.to_owned(),
                    port: None,
                    params,
                    headers: Vec::new(),
                })
            }
            Scheme::Other(_) => Ok(Uri {
                scheme,
                user: None,
                password: None,
                host: rest.to_owned(),
                port: None,
                params: Vec::new(),
                headers: Vec::new(),
            }),
        }
    }
}

fn parse_sip(scheme: Scheme, rest: &str) -> Result<Uri, ()> {
    let (userinfo, hostpart) = match rest.rfind('@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(ui) => {
            let (u, p) = match ui.find(':') {
                Some(i) => (&ui[..i], Some(ui[i + 1..].to_owned())),
                None => (ui, None),
            };
            if u.is_empty() {
                return Err(());
            }
            (Some(u.to_owned()), p)
        }
    };
    // host
    let (host, after_host) = if let Some(stripped) = hostpart.strip_prefix('[') {
        let end = stripped.find(']').ok_or(())?;
        let inner = &stripped[..end];
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(());
        }
        (&hostpart[..end + 2], &hostpart[end + 2..])
    } else {
        let end = hostpart.find([':', ';', '?']).unwrap_or(hostpart.len());
        (&hostpart[..end], &hostpart[end..])
    };
    if host.is_empty()
        || !(host.starts_with('[')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'))
    {
        return Err(());
    }
    let mut rest = after_host;
    let mut port = None;
    if let Some(r) = rest.strip_prefix(':') {
        let end = r.find([';', '?']).unwrap_or(r.len());
        let digits = &r[..end];
        if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
        port = Some(digits.parse::<u16>().map_err(|_| ())?);
        rest = &r[end..];
    }
    let (params_s, headers_s) = match rest.find('?') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let params = match params_s.strip_prefix(';') {
        Some(p) => parse_params(p)?,
        None if params_s.is_empty() => Vec::new(),
        None => return Err(()),
    };
    let mut headers = Vec::new();
    if let Some(h) = headers_s {
        for kv in h.split('&') {
            let (k, v) = kv.split_once('=').ok_or(())?;
            if k.is_empty() {
                return Err(());
            }
            headers.push(Param::new(k, v));
        }
    }
    Ok(Uri {
        scheme,
        user,
        password,
        host: host.to_owned(),
        port,
        params,
        headers,
    })
}

fn parse_params(s: &str) -> Result<Vec<Param>, ()> {
    let mut out = Vec::new();
    for p in s.split(';') {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (p, None),
        };
        if name.is_empty() {
            return Err(());
        }
        out.push(Param {
            name: name.to_owned(),
            value,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
