//! What the fake model servers (`fake_provider`, `fake_responses`,
//! `fake_anthropic`) share: the accept loop and reading one HTTP/1.1
//! request off a connection. The coding-agents bench includes it by
//! `#[path]` beside the last two.

use std::io::BufRead;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

use serde_json::Value;

/// Listens on a free loopback port, returned, and serves each connection
/// with `serve`, on a thread of its own, until `stopping` is true when one
/// arrives (a fake's `Drop` sets its flag, then connects once to wake the
/// loop).
pub fn listen<S: Send + Sync + 'static>(
    shared: Arc<S>,
    stopping: fn(&S) -> bool,
    serve: fn(TcpStream, &S),
) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stopping(&shared) {
                break;
            }
            let Ok(stream) = stream else { continue };
            let shared = shared.clone();
            std::thread::spawn(move || serve(stream, &shared));
        }
    });
    port
}

/// One request as a fake server received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent, query and all.
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The `content-length` bytes of body as JSON; `Null` when they are not.
    pub body: Value,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// The value of header `name` (any case) in `headers`, the first if repeated.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The next request on a connection: its request line, headers and body.
/// `None` once the client has closed the connection, or when what it sent
/// is not a request (the fake then closes it).
pub fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok()?;
        }
        headers.push((name, value));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    })
}
