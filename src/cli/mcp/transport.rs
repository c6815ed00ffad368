//! The stdio transport under the MCP server: rmcp's line transport, behind
//! a gate that answers what rmcp would drop without a word. A line that is
//! not JSON gets a JSON-RPC parse error (-32700); a line over [`MAX_LINE`]
//! is not buffered, and gets an error for its request id (read from its
//! start) rather than silence, so the client's call does not hang.

use std::io;

use rmcp::RoleServer;
use rmcp::model::{ErrorCode, ErrorData, RequestId};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::transport::async_rw::AsyncRwTransport;
use serde::Deserializer as _;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::mpsc;

/// The longest message line read. The daemon takes request bodies of up to
/// 1 MiB; JSON escaping can double that, and a little more is envelope.
pub const MAX_LINE: usize = 4 * 1024 * 1024;

/// How much of an over-long line is kept to find its request id in.
const ID_PREFIX: usize = 4096;

/// The transport `serve` runs on: what passed the gate reaches rmcp's
/// transport through a pipe; the gate's answers go out through that
/// transport's writer, so they never interleave with another message.
pub struct Gated<W: AsyncWrite + Send + Unpin + 'static> {
    inner: AsyncRwTransport<RoleServer, DuplexStream, W>,
    refusals: mpsc::Receiver<TxJsonRpcMessage<RoleServer>>,
}

/// The MCP session's transport on standard input and output.
pub fn stdio() -> Gated<tokio::io::Stdout> {
    gated(tokio::io::stdin(), tokio::io::stdout())
}

/// [`stdio`] on any reader and writer.
pub fn gated<R, W>(read: R, write: W) -> Gated<W>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let (to_inner, from_gate) = tokio::io::duplex(64 * 1024);
    let (refuse, refusals) = mpsc::channel(16);
    tokio::spawn(gate(BufReader::new(read), to_inner, refuse));
    Gated {
        // The gate already bounds lines; this only has to let them through.
        inner: AsyncRwTransport::new_server(from_gate, write).with_max_line_length(MAX_LINE + 2),
        refusals,
    }
}

impl<W: AsyncWrite + Send + Unpin + 'static> Transport<RoleServer> for Gated<W> {
    type Error = io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            tokio::select! {
                // An answer queued before the input ended goes out first.
                biased;
                Some(refusal) = self.refusals.recv() => {
                    // Its own task: rmcp may drop this future mid-write,
                    // which must not cut a line in half.
                    let sent = tokio::spawn(self.inner.send(refusal)).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        return None;
                    }
                }
                message = self.inner.receive() => return message,
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inner.close().await
    }
}

/// What one read of a line found.
enum Line {
    /// A whole line, without its newline.
    Whole(Vec<u8>),
    /// A line longer than [`MAX_LINE`]: its first bytes and its length.
    TooLong {
        prefix: Vec<u8>,
        length: usize,
    },
    End,
}

/// Passes each JSON line on to `inner` and answers the others through
/// `refuse`, until the input ends (which ends the session).
async fn gate<R: AsyncRead + Unpin>(
    mut input: BufReader<R>,
    mut inner: DuplexStream,
    refuse: mpsc::Sender<TxJsonRpcMessage<RoleServer>>,
) {
    loop {
        let refusal = match read_line(&mut input).await {
            Ok(Line::End) | Err(_) => return,
            Ok(Line::TooLong { prefix, length }) => too_long(&prefix, length),
            Ok(Line::Whole(line)) => match check(&line) {
                Ok(()) => {
                    let mut framed = line;
                    framed.push(b'\n');
                    if inner.write_all(&framed).await.is_err() {
                        return;
                    }
                    continue;
                }
                // Not JSON: there is no id to answer for.
                Err(error) => TxJsonRpcMessage::<RoleServer>::error(error, None),
            },
        };
        if refuse.send(refusal).await.is_err() {
            return;
        }
    }
}

/// Reads one line without ever holding more than [`MAX_LINE`] of it.
async fn read_line<R: AsyncRead + Unpin>(input: &mut BufReader<R>) -> io::Result<Line> {
    let mut line = Vec::new();
    let mut length = 0usize;
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            // A last line without its newline is still a message.
            return Ok(if length == 0 {
                Line::End
            } else if length > MAX_LINE {
                Line::TooLong {
                    prefix: line,
                    length,
                }
            } else {
                Line::Whole(line)
            });
        }
        let newline = available.iter().position(|&b| b == b'\n');
        let take = newline.map_or(available.len(), |at| at + 1);
        let content = &available[..newline.unwrap_or(take)];
        length += content.len();
        // Past the limit, only the start is kept (to find the id in).
        let keep = if length > MAX_LINE {
            ID_PREFIX
        } else {
            MAX_LINE
        };
        let room = keep.saturating_sub(line.len());
        line.extend_from_slice(&content[..content.len().min(room)]);
        if length > MAX_LINE {
            line.truncate(ID_PREFIX);
        }
        input.consume(take);
        if newline.is_some() {
            return Ok(if length > MAX_LINE {
                Line::TooLong {
                    prefix: line,
                    length,
                }
            } else {
                Line::Whole(line)
            });
        }
    }
}

/// Whether a line may go on to rmcp: blank lines and JSON do (rmcp answers
/// JSON of the wrong shape itself); anything else gets a parse error.
fn check(line: &[u8]) -> Result<(), ErrorData> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let json = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match serde_json::from_slice::<IgnoredAny>(json) {
        Ok(_) => Ok(()),
        Err(error) => Err(ErrorData::parse_error(
            format!("the message is not valid JSON: {error}"),
            None,
        )),
    }
}

fn too_long(prefix: &[u8], length: usize) -> TxJsonRpcMessage<RoleServer> {
    let error = ErrorData::new(
        ErrorCode::INVALID_REQUEST,
        format!(
            "the message is {length} bytes long; the longest accepted is {MAX_LINE} bytes, so it was not read"
        ),
        None,
    );
    TxJsonRpcMessage::<RoleServer>::error(error, request_id(prefix))
}

/// The top-level `"id"` of a JSON-RPC message, read from its first bytes
/// (which may end mid-message): `None` when it is not among them.
fn request_id(prefix: &[u8]) -> Option<RequestId> {
    let prefix = prefix.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(prefix);
    let mut found = None;
    let mut deserializer = serde_json::Deserializer::from_slice(prefix);
    // It ends in an error wherever the prefix is cut; what it found stays.
    let _ = deserializer.deserialize_map(IdSeeker(&mut found));
    found
}

/// Reads an object's members until `"id"`, skipping the others.
struct IdSeeker<'a>(&'a mut Option<RequestId>);

impl<'de> Visitor<'de> for IdSeeker<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON-RPC message")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "id" {
                *self.0 = Some(map.next_value::<RequestId>()?);
                return Ok(());
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_found_in_a_cut_off_message() {
        let cut = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"arguments":{"content":"xxxx"#;
        assert_eq!(request_id(cut), Some(RequestId::Number(7)));
        let named = br#"{"jsonrpc":"2.0","method":"x","id":"call-1","params":{"a":"#;
        assert_eq!(request_id(named), Some(RequestId::String("call-1".into())));
        let late = br#"{"jsonrpc":"2.0","method":"x","params":{"content":"xxxx"#;
        assert_eq!(request_id(late), None);
        assert_eq!(request_id(b"not json"), None);
        // A nested "id" is not the request's.
        let nested = br#"{"params":{"id":3,"more":"#;
        assert_eq!(request_id(nested), None);
    }

    #[test]
    fn only_json_passes_the_gate() {
        assert!(check(b"{\"jsonrpc\":\"2.0\"}\r").is_ok());
        assert!(check(b"  ").is_ok());
        assert!(check(b"{\"jsonrpc\":").is_err());
        assert!(check(b"hello").is_err());
    }
}
