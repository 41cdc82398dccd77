//! Sticky by key: a value read from the start of a client's first HTTP/1.x request (a cookie, a
//! query parameter or a header, e.g. socket.io's `sid`), so that clients behind one address (a
//! NAT, a proxy without the PROXY protocol) are told apart, and a client that changes address
//! keeps its worker.
//!
//! The primary peeks at the request (`MSG_PEEK`: nothing is consumed, the worker reads the whole
//! request itself) and calls [`find`] on what it has, with a bound on bytes and time. Only the
//! request line and header block are looked at; the body never is. When the key is absent, the
//! request is not HTTP/1.x, or the bound is reached first, the caller falls back to the client's
//! address.

/// Where the key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The value of the cookie with this name (`Cookie: name=value; ...`).
    Cookie(String),
    /// The value of this query parameter in the request target (`/path?name=value&...`).
    Query(String),
    /// The value of this header (name compared without case).
    Header(String),
}

impl KeySource {
    /// Checks the name: non-empty, at most 256 bytes, and made of characters that can appear in
    /// that place (an HTTP token for cookies and headers, anything but `&`, `=`, `#` and spaces
    /// for a query name).
    pub fn validate(&self) -> crate::Result<()> {
        let (what, name) = match self {
            KeySource::Cookie(n) => ("cookie", n),
            KeySource::Query(n) => ("query", n),
            KeySource::Header(n) => ("header", n),
        };
        let ok_char = |b: u8| match self {
            KeySource::Query(_) => b.is_ascii_graphic() && !b"&=#?".contains(&b),
            _ => is_token(b),
        };
        if name.is_empty() || name.len() > 256 || !name.bytes().all(ok_char) {
            return Err(crate::Error::invalid_option(
                "routing.key",
                format_args!(
                    "sticky key {what} name {name:?}: expected 1 to 256 characters valid in a \
                     {what} name"
                ),
            ));
        }
        Ok(())
    }
}

/// What the bytes seen so far say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found<'a> {
    /// The header block is not complete and the key has not been seen yet: peek again.
    Incomplete,
    /// The key's value (as sent: not percent-decoded, which is enough to tell clients apart).
    Key(&'a [u8]),
    /// The whole header block was seen and has no such key, or this is not an HTTP/1.x request:
    /// route by address.
    Absent,
}

/// Looks for `source` in the start of a request.
pub fn find<'a>(buf: &'a [u8], source: &KeySource) -> Found<'a> {
    let Some(line_end) = find_crlf(buf, 0) else {
        return if looks_like_request_start(buf) {
            Found::Incomplete
        } else {
            Found::Absent
        };
    };
    let line = &buf[..line_end];
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Found::Absent;
    };
    if method.is_empty() || !method.iter().all(|&b| is_token(b)) || !version.starts_with(b"HTTP/1.")
    {
        return Found::Absent;
    }
    if let KeySource::Query(name) = source {
        return match query_param(target, name.as_bytes()) {
            Some(v) => Found::Key(v),
            None => Found::Absent,
        };
    }
    let mut at = line_end + 2;
    loop {
        let Some(end) = find_crlf(buf, at) else {
            return Found::Incomplete;
        };
        if end == at {
            return Found::Absent; // blank line: end of the header block
        }
        let field = &buf[at..end];
        at = end + 2;
        let Some(colon) = field.iter().position(|&b| b == b':') else {
            return Found::Absent; // not a header line: not HTTP as we can trust it
        };
        let (name, value) = (&field[..colon], trim(&field[colon + 1..]));
        match source {
            KeySource::Header(want) if name.eq_ignore_ascii_case(want.as_bytes()) => {
                return Found::Key(value);
            }
            KeySource::Cookie(want) if name.eq_ignore_ascii_case(b"cookie") => {
                if let Some(v) = cookie(value, want.as_bytes()) {
                    return Found::Key(v);
                }
            }
            _ => {}
        }
    }
}

/// Could `buf` be the start of a request line (a method made of token characters so far)?
fn looks_like_request_start(buf: &[u8]) -> bool {
    let method_end = buf.iter().position(|&b| b == b' ').unwrap_or(buf.len());
    method_end <= 32 && buf[..method_end].iter().all(|&b| is_token(b))
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| from + i)
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn query_param<'a>(target: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let q = target.iter().position(|&b| b == b'?')?;
    let query = &target[q + 1..];
    let query = query.split(|&b| b == b'#').next().unwrap_or(query);
    query.split(|&b| b == b'&').find_map(|pair| {
        let (k, v) = split_once(pair, b'=')?;
        (k == name && !v.is_empty()).then_some(v)
    })
}

fn cookie<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let (k, v) = split_once(trim(pair), b'=')?;
        let v = trim(v);
        let v = v
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(v);
        (k == name && !v.is_empty()).then_some(v)
    })
}

fn split_once(s: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|&b| b == sep)?;
    Some((&s[..i], &s[i + 1..]))
}

/// RFC 9110 `tchar`.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"GET /socket.io/?EIO=4&transport=polling&sid=abc123 HTTP/1.1\r\n\
        Host: example\r\n\
        Cookie: theme=dark; io=Zx9_k ; other=\"q\"\r\n\
        X-Session:  s-42 \r\n\
        \r\n\
        body Cookie: io=nope\r\n";

    fn cookie_src(n: &str) -> KeySource {
        KeySource::Cookie(n.into())
    }

    #[test]
    fn finds_cookie_query_and_header() {
        assert_eq!(find(REQ, &cookie_src("io")), Found::Key(b"Zx9_k"));
        assert_eq!(find(REQ, &cookie_src("other")), Found::Key(b"q"));
        assert_eq!(
            find(REQ, &KeySource::Query("sid".into())),
            Found::Key(b"abc123")
        );
        assert_eq!(find(REQ, &KeySource::Query("EIO".into())), Found::Key(b"4"));
        assert_eq!(
            find(REQ, &KeySource::Header("x-session".into())),
            Found::Key(b"s-42")
        );
    }

    #[test]
    fn absent_keys_and_the_body_is_never_read() {
        assert_eq!(find(REQ, &cookie_src("missing")), Found::Absent);
        assert_eq!(
            find(REQ, &KeySource::Query("transport2".into())),
            Found::Absent
        );
        assert_eq!(
            find(REQ, &KeySource::Header("X-None".into())),
            Found::Absent
        );
        // "io" appears after the blank line only as body text.
        let no_cookie = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nCookie: io=body\r\n";
        assert_eq!(find(no_cookie, &cookie_src("io")), Found::Absent);
        // Empty values do not count as keys.
        let empty = b"GET /?sid=&sid=x HTTP/1.1\r\nCookie: io=\r\n\r\n";
        assert_eq!(
            find(empty, &KeySource::Query("sid".into())),
            Found::Key(b"x")
        );
        assert_eq!(find(empty, &cookie_src("io")), Found::Absent);
    }

    #[test]
    fn prefixes_are_incomplete_until_the_key_or_the_blank_line() {
        let at = REQ.windows(5).position(|w| w == b"Zx9_k").unwrap();
        for n in 0..at {
            let got = find(&REQ[..n], &cookie_src("io"));
            assert_eq!(got, Found::Incomplete, "prefix {n}");
        }
        // The query key is known as soon as the request line is complete.
        let line = REQ.iter().position(|&b| b == b'\n').unwrap() + 1;
        assert_eq!(
            find(&REQ[..line - 1], &KeySource::Query("sid".into())),
            Found::Incomplete
        );
        assert_eq!(
            find(&REQ[..line], &KeySource::Query("sid".into())),
            Found::Key(b"abc123")
        );
    }

    #[test]
    fn not_http_falls_back_at_once() {
        for junk in [
            &b"\x16\x03\x01\x02\x00"[..], // a TLS ClientHello
            b"SSH-2.0-OpenSSH_9.6\r\n",
            b"GET / SPDY/3\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        ] {
            assert_eq!(find(junk, &cookie_src("io")), Found::Absent, "{junk:?}");
        }
    }

    #[test]
    fn names_are_validated() {
        assert!(cookie_src("io").validate().is_ok());
        assert!(KeySource::Query("sid".into()).validate().is_ok());
        assert!(KeySource::Header("X-Session".into()).validate().is_ok());
        for bad in [
            cookie_src(""),
            cookie_src("a b"),
            KeySource::Header("x:y".into()),
            KeySource::Query("a&b".into()),
            KeySource::Query("x".repeat(257)),
        ] {
            let e = bad.validate().unwrap_err();
            assert!(e.message().contains("sticky key"), "{e}");
        }
    }
}
