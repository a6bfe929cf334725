//! HTTP/1.1 request parsing and response pieces: pure functions, no I/O.

use alloc::string::String;
use alloc::vec::Vec;

/// The longest request target (414 beyond).
pub const MAX_TARGET: usize = 2048;
/// The longest request head: request line and headers (413 beyond).
pub const MAX_HEAD: usize = 8192;
/// The most headers (413 beyond).
pub const MAX_HEADERS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
}

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The decoded path, `/`-separated, without the query.
    pub path: String,
    pub keep_alive: bool,
    pub range: Option<String>,
    /// Bytes of body announced by Content-Length (GET and HEAD ignore it,
    /// but it has to be skipped).
    pub body: usize,
}

/// Why a request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    BadRequest,
    /// The head is too large (413).
    TooLarge,
    /// The target is too long (414).
    UriTooLong,
    /// A method other than GET and HEAD (405).
    MethodNotAllowed,
    /// Not HTTP/1.0 or 1.1 (505).
    VersionNotSupported,
}

impl Refusal {
    #[must_use]
    pub fn status(self) -> u16 {
        match self {
            Refusal::BadRequest => 400,
            Refusal::TooLarge => 413,
            Refusal::UriTooLong => 414,
            Refusal::MethodNotAllowed => 405,
            Refusal::VersionNotSupported => 505,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    /// More bytes are needed.
    Incomplete,
    /// A request, and how many bytes of the buffer its head took.
    Request(Request, usize),
    Refused(Refusal),
}

fn find_head_end(buffer: &[u8]) -> Option<usize> {
    buffer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| at + 4)
}

fn is_token(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Parses the request head at the start of `buffer`.
#[must_use]
pub fn parse(buffer: &[u8]) -> Parse {
    let Some(end) = find_head_end(buffer) else {
        // The request line alone already too long?
        let line_end = buffer.iter().position(|&b| b == b'\n');
        let line_len = line_end.unwrap_or(buffer.len());
        if line_len > MAX_TARGET + 32 {
            return Parse::Refused(Refusal::UriTooLong);
        }
        if buffer.len() > MAX_HEAD {
            return Parse::Refused(Refusal::TooLarge);
        }
        return Parse::Incomplete;
    };
    if end > MAX_HEAD {
        return Parse::Refused(Refusal::TooLarge);
    }
    let head = &buffer[..end - 4];
    let Ok(head) = core::str::from_utf8(head) else {
        return Parse::Refused(Refusal::BadRequest);
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parse::Refused(if request_line.len() > MAX_TARGET {
            Refusal::UriTooLong
        } else {
            Refusal::BadRequest
        });
    };
    if method.is_empty() || !method.bytes().all(is_token) {
        return Parse::Refused(Refusal::BadRequest);
    }
    if target.len() > MAX_TARGET {
        return Parse::Refused(Refusal::UriTooLong);
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ if version.starts_with("HTTP/") && version.len() == 8 => {
            return Parse::Refused(Refusal::VersionNotSupported);
        }
        _ => return Parse::Refused(Refusal::BadRequest),
    };
    let mut keep_alive = !http10;
    let mut range = None;
    let mut body = 0usize;
    let mut host = false;
    let mut count = 0;
    for line in lines {
        count += 1;
        if count > MAX_HEADERS {
            return Parse::Refused(Refusal::TooLarge);
        }
        let Some((name, value)) = line.split_once(':') else {
            return Parse::Refused(Refusal::BadRequest);
        };
        if name.is_empty() || !name.bytes().all(is_token) {
            return Parse::Refused(Refusal::BadRequest);
        }
        let value = value.trim_matches([' ', '\t']);
        if value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
            return Parse::Refused(Refusal::BadRequest);
        }
        if name.eq_ignore_ascii_case("connection") {
            for option in value.split(',') {
                let option = option.trim();
                if option.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if option.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("range") {
            range = Some(String::from(value));
        } else if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<usize>() {
                Ok(length) if body == 0 || body == length => body = length,
                _ => return Parse::Refused(Refusal::BadRequest),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // No request bodies are taken; a chunked one cannot be skipped
            // without decoding it.
            return Parse::Refused(Refusal::BadRequest);
        } else if name.eq_ignore_ascii_case("host") {
            host = true;
        }
    }
    if !http10 && !host {
        return Parse::Refused(Refusal::BadRequest);
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => return Parse::Refused(Refusal::MethodNotAllowed),
    };
    let Some(path) = decode_path(target) else {
        return Parse::Refused(Refusal::BadRequest);
    };
    Parse::Request(
        Request {
            method,
            path,
            keep_alive,
            range,
            body,
        },
        end,
    )
}

/// The path of an origin-form target, percent-decoded, without the query;
/// `None` if it is not one, decodes to invalid UTF-8 or a control byte, or
/// climbs with `..`.
#[must_use]
pub fn decode_path(target: &str) -> Option<String> {
    let path = target.split(['?', '#']).next()?;
    if !path.starts_with('/') {
        return None;
    }
    let mut bytes = Vec::with_capacity(path.len());
    let mut input = path.bytes();
    while let Some(byte) = input.next() {
        if byte == b'%' {
            let high = hex(input.next()?)?;
            let low = hex(input.next()?)?;
            bytes.push(high << 4 | low);
        } else {
            bytes.push(byte);
        }
    }
    let decoded = String::from_utf8(bytes).ok()?;
    if decoded.chars().any(char::is_control) || decoded.contains('\\') {
        return None;
    }
    if decoded.split('/').any(|segment| segment == "..") {
        return None;
    }
    Some(decoded)
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// A byte range of a file of `size` bytes: `Ok(None)` for no (or an
/// ignorable) range, `Ok(Some((start, end)))` with `end` exclusive, `Err(())`
/// when it cannot be satisfied (416).
#[allow(clippy::result_unit_err, reason = "one failure: unsatisfiable")]
pub fn byte_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(header) = header else {
        return Ok(None);
    };
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    // One range only; several are served as the whole file.
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        let Ok(suffix) = last.parse::<u64>() else {
            return Ok(None);
        };
        if suffix == 0 || size == 0 {
            return Err(());
        }
        return Ok(Some((size.saturating_sub(suffix), size)));
    }
    let Ok(start) = first.parse::<u64>() else {
        return Ok(None);
    };
    let end = if last.is_empty() {
        size
    } else {
        match last.parse::<u64>() {
            Ok(last) if last >= start => last.saturating_add(1).min(size),
            _ => return Ok(None),
        }
    };
    if start >= size {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// The content type for a file name, by extension.
#[must_use]
pub fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map_or("", |(_, extension)| extension);
    let lower = extension.to_ascii_lowercase();
    match lower.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" | "md" | "toml" | "rs" | "c" | "h" => "text/plain; charset=utf-8",
        "css" => "text/css",
        "js" => "text/javascript",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

/// The reason phrase of the statuses this server sends.
#[must_use]
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// `text` with `<`, `>`, `&`, `"` and `'` escaped for HTML.
#[must_use]
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// `text` as a JSON string literal, quotes included.
#[must_use]
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str(&alloc::format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A path with every byte outside the unreserved set and `/` percent-encoded
/// (for links in listings).
#[must_use]
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&alloc::format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Parse {
        parse(text.as_bytes())
    }

    #[test]
    fn a_plain_get_parses_and_keeps_alive() {
        let Parse::Request(request, used) =
            request("GET /DOCS/A%20B.TXT?x=1 HTTP/1.1\r\nHost: h\r\nRange: bytes=0-9\r\n\r\nGET")
        else {
            panic!("no request");
        };
        assert_eq!(used, 63);
        assert_eq!(request.method, Method::Get);
        assert_eq!(request.path, "/DOCS/A B.TXT");
        assert!(request.keep_alive);
        assert_eq!(request.range.as_deref(), Some("bytes=0-9"));
    }

    #[test]
    fn connection_close_and_http10() {
        let Parse::Request(one, _) =
            request("HEAD / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        else {
            panic!()
        };
        assert!(!one.keep_alive);
        assert_eq!(one.method, Method::Head);
        let Parse::Request(old, _) = request("GET / HTTP/1.0\r\n\r\n") else {
            panic!()
        };
        assert!(!old.keep_alive);
    }

    #[test]
    fn malformed_requests_are_refused() {
        assert_eq!(request("GET / HTTP/1.1\r\nHost: h\r\n"), Parse::Incomplete);
        for bad in [
            "GARBAGE\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET noslash HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET / HTTP/1.1\r\nHost h\r\n\r\n",
            "GET /../etc HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET /%00 HTTP/1.1\r\nHost: h\r\n\r\n",
            "GET / FTP/1.1\r\nHost: h\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(request(bad), Parse::Refused(Refusal::BadRequest), "{bad:?}");
        }
        assert_eq!(
            request("POST / HTTP/1.1\r\nHost: h\r\n\r\n"),
            Parse::Refused(Refusal::MethodNotAllowed)
        );
        assert_eq!(
            request("GET / HTTP/2.0\r\nHost: h\r\n\r\n"),
            Parse::Refused(Refusal::VersionNotSupported)
        );
    }

    #[test]
    fn oversized_requests_get_413_and_414() {
        let long_target = alloc::format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(3000));
        assert_eq!(request(&long_target), Parse::Refused(Refusal::UriTooLong));
        // Refused before the head is complete, too.
        let partial = alloc::format!("GET /{}", "a".repeat(3000));
        assert_eq!(request(&partial), Parse::Refused(Refusal::UriTooLong));
        let big_headers = alloc::format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
            "b".repeat(9000)
        );
        assert_eq!(request(&big_headers), Parse::Refused(Refusal::TooLarge));
        let mut many = alloc::string::String::from("GET / HTTP/1.1\r\nHost: h\r\n");
        for i in 0..70 {
            many.push_str(&alloc::format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(request(&many), Parse::Refused(Refusal::TooLarge));
    }

    #[test]
    fn ranges() {
        assert_eq!(byte_range(None, 100), Ok(None));
        assert_eq!(byte_range(Some("bytes=0-9"), 100), Ok(Some((0, 10))));
        assert_eq!(byte_range(Some("bytes=90-"), 100), Ok(Some((90, 100))));
        assert_eq!(byte_range(Some("bytes=-10"), 100), Ok(Some((90, 100))));
        assert_eq!(byte_range(Some("bytes=50-500"), 100), Ok(Some((50, 100))));
        assert_eq!(byte_range(Some("bytes=100-"), 100), Err(()));
        assert_eq!(byte_range(Some("bytes=9-3"), 100), Ok(None));
        assert_eq!(byte_range(Some("items=0-1"), 100), Ok(None));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parser() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pieces: [&[u8]; 8] = [
            b"GET ",
            b"/",
            b" HTTP/1.1",
            b"\r\n",
            b"Host: a",
            b"Range: bytes=",
            b"%",
            b":",
        ];
        for _ in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..next() % 24 {
                match next() % 3 {
                    0 => input.push(next() as u8),
                    _ => input.extend_from_slice(pieces[(next() % 8) as usize]),
                }
            }
            if let Parse::Request(request, used) = parse(&input) {
                assert!(used <= input.len());
                let _ = byte_range(request.range.as_deref(), next() % 1000);
            }
            let text = String::from_utf8_lossy(&input);
            let _ = decode_path(&text);
            let _ = byte_range(Some(&text), next() % 1000);
        }
    }

    #[test]
    fn escapes_and_types() {
        assert_eq!(
            html_escape("<a href=\"x\">&"),
            "&lt;a href=&quot;x&quot;&gt;&amp;"
        );
        assert_eq!(json_string("a\"b\\\n\u{1}"), "\"a\\\"b\\\\\\n\\u0001\"");
        assert_eq!(encode_path("/A B/ü"), "/A%20B/%C3%BC");
        assert_eq!(content_type("INDEX.HTM"), "text/html; charset=utf-8");
        assert_eq!(content_type("BIG.BIN"), "application/octet-stream");
    }
}
