//! A minimal WebSocket (RFC 6455, client side) and SSE client over a plain TCP socket: enough for
//! the integration tests and the benchmark to talk to the gateway as real network clients, with
//! control over reading (a client that never reads) and over the socket's receive buffer. Not
//! meant for production use: no TLS, no extensions, no compression.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

/// A non-upgrade HTTP answer (401, 403, 503...).
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub body: String,
}

/// One WebSocket frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

/// Connection options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `Authorization: Bearer` header value (without the scheme).
    pub bearer: Option<String>,
    /// The socket's receive buffer, in bytes (small = a slow reader fills up fast).
    pub recv_buffer: Option<u32>,
}

async fn open(addr: SocketAddr, recv_buffer: Option<u32>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads an HTTP/1.1 response head: status and headers (lowercased names).
async fn read_head(reader: &mut BufReader<TcpStream>) -> io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            )
        })?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    Ok((status, headers))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Reads a whole non-streaming body (content-length or chunked).
async fn read_body(
    reader: &mut BufReader<TcpStream>,
    headers: &[(String, String)],
) -> io::Result<String> {
    let mut body = Vec::new();
    if let Some(length) = header(headers, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(length, 0);
        reader.read_exact(&mut body).await?;
    } else if header(headers, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        while let Some(chunk) = read_chunk(reader).await? {
            body.extend_from_slice(&chunk);
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// One chunk of a chunked body; `None` at the end.
async fn read_chunk(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Vec<u8>>> {
    let mut line = String::new();
    if reader.read_line(&mut line).await? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
    let mut data = vec![0; size + 2];
    reader.read_exact(&mut data).await?;
    data.truncate(size);
    Ok(if size == 0 { None } else { Some(data) })
}

/// A WebSocket connection.
pub struct WsClient {
    stream: BufReader<TcpStream>,
    mask_seed: u32,
    /// Answer pings with pongs while reading (the default). Off: a client that looks dead.
    pub auto_pong: bool,
}

impl WsClient {
    /// Opens `ws://addr{path}`; `Err(reply)` when the gateway answered without upgrading.
    pub async fn connect(
        addr: SocketAddr,
        path: &str,
        options: &Options,
    ) -> io::Result<Result<WsClient, HttpReply>> {
        let stream = open(addr, options.recv_buffer).await?;
        let mut stream = BufReader::new(stream);
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        if let Some(token) = &options.bearer {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request.push_str("\r\n");
        stream.get_mut().write_all(request.as_bytes()).await?;
        let (status, headers) = read_head(&mut stream).await?;
        if status != 101 {
            let body = read_body(&mut stream, &headers).await?;
            return Ok(Err(HttpReply { status, body }));
        }
        Ok(Ok(WsClient {
            stream,
            mask_seed: 0x9e37_79b9,
            auto_pong: true,
        }))
    }

    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        // Client frames are masked (RFC 6455 §5.3); any key will do.
        self.mask_seed ^= self.mask_seed << 13;
        self.mask_seed ^= self.mask_seed >> 17;
        self.mask_seed ^= self.mask_seed << 5;
        let mask = self.mask_seed.to_be_bytes();
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x80 | opcode);
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= u16::MAX as usize => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.get_mut().write_all(&frame).await
    }

    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send_frame(0x1, text.as_bytes()).await
    }

    pub async fn send_json(&mut self, value: &serde_json::Value) -> io::Result<()> {
        self.send_text(&value.to_string()).await
    }

    pub async fn send_binary(&mut self, data: &[u8]) -> io::Result<()> {
        self.send_frame(0x2, data).await
    }

    /// Sends a close frame (normal closure).
    pub async fn close(&mut self) -> io::Result<()> {
        self.send_frame(0x8, &1000u16.to_be_bytes()).await
    }

    /// The next frame, reassembling fragmented messages.
    pub async fn next_frame(&mut self) -> io::Result<Frame> {
        let mut message: Option<(u8, Vec<u8>)> = None;
        loop {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head).await?;
            let fin = head[0] & 0x80 != 0;
            let opcode = head[0] & 0x0f;
            let masked = head[1] & 0x80 != 0;
            let length = match head[1] & 0x7f {
                126 => self.stream.read_u16().await? as u64,
                127 => self.stream.read_u64().await?,
                n => n as u64,
            };
            if length > 64 * 1024 * 1024 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "frame too large",
                ));
            }
            let mut mask = [0u8; 4];
            if masked {
                self.stream.read_exact(&mut mask).await?;
            }
            let mut payload = vec![0u8; length as usize];
            self.stream.read_exact(&mut payload).await?;
            if masked {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            let (opcode, payload) = match (opcode, message.take()) {
                (0x0, Some((first, mut data))) => {
                    data.extend_from_slice(&payload);
                    (first, data)
                }
                (op, _) => (op, payload),
            };
            if !fin && opcode < 0x8 {
                message = Some((opcode, payload));
                continue;
            }
            return Ok(match opcode {
                0x1 => Frame::Text(String::from_utf8_lossy(&payload).into_owned()),
                0x2 => Frame::Binary(payload),
                0x8 => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    let reason =
                        String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned();
                    Frame::Close(code, reason)
                }
                0x9 => Frame::Ping(payload),
                0xA => Frame::Pong(payload),
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("unknown opcode {other}"),
                    ))
                }
            });
        }
    }

    /// The next text frame as JSON (answering pings on the way); a close frame is an error of
    /// kind `ConnectionAborted` whose message has the close code.
    pub async fn next_json(&mut self) -> io::Result<serde_json::Value> {
        loop {
            match self.next_frame().await? {
                Frame::Text(text) => {
                    return serde_json::from_str(&text)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
                }
                Frame::Ping(payload) => {
                    if self.auto_pong {
                        self.send_frame(0xA, &payload).await?;
                    }
                }
                Frame::Close(code, reason) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("closed {}: {reason}", code.unwrap_or(0)),
                    ))
                }
                Frame::Pong(_) | Frame::Binary(_) => {}
            }
        }
    }

    /// `next_json` within `timeout`; `None` when nothing came.
    pub async fn next_json_within(
        &mut self,
        timeout: Duration,
    ) -> Option<io::Result<serde_json::Value>> {
        tokio::time::timeout(timeout, self.next_json()).await.ok()
    }

    /// Subscribes and returns the gateway's reply (`subscribed` or `error`).
    pub async fn subscribe(&mut self, channel: &str) -> io::Result<serde_json::Value> {
        self.send_json(&serde_json::json!({"type": "subscribe", "channel": channel}))
            .await?;
        self.next_control().await
    }

    /// The next frame whose type is a protocol frame (undotted), skipping messages.
    pub async fn next_control(&mut self) -> io::Result<serde_json::Value> {
        loop {
            let value = self.next_json().await?;
            if !value["type"].as_str().unwrap_or_default().contains('.') {
                return Ok(value);
            }
        }
    }
}

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

/// An SSE connection.
pub struct SseClient {
    stream: BufReader<TcpStream>,
    chunked: bool,
    pending: Vec<u8>,
}

impl SseClient {
    /// Opens `http://addr{path}`; `Err(reply)` when the answer is not a 200 event stream.
    pub async fn connect(
        addr: SocketAddr,
        path: &str,
        options: &Options,
    ) -> io::Result<Result<SseClient, HttpReply>> {
        let stream = open(addr, options.recv_buffer).await?;
        let mut stream = BufReader::new(stream);
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        if let Some(token) = &options.bearer {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request.push_str("\r\n");
        stream.get_mut().write_all(request.as_bytes()).await?;
        let (status, headers) = read_head(&mut stream).await?;
        if status != 200 {
            let body = read_body(&mut stream, &headers).await?;
            return Ok(Err(HttpReply { status, body }));
        }
        let chunked = header(&headers, "transfer-encoding").is_some_and(|v| v.contains("chunked"));
        Ok(Ok(SseClient {
            stream,
            chunked,
            pending: Vec::new(),
        }))
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.chunked {
            match read_chunk(&mut self.stream).await? {
                Some(chunk) => self.pending.extend_from_slice(&chunk),
                None => return Err(io::ErrorKind::UnexpectedEof.into()),
            }
        } else {
            let mut buf = [0u8; 4096];
            let n = self.stream.read(&mut buf).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.pending.extend_from_slice(&buf[..n]);
        }
        Ok(())
    }

    async fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line);
                return Ok(text.trim_end_matches(['\r', '\n']).to_string());
            }
            self.fill().await?;
        }
    }

    /// The next event (comments skipped).
    pub async fn next_event(&mut self) -> io::Result<SseEvent> {
        let mut event = SseEvent::default();
        let mut has_data = false;
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                if has_data {
                    return Ok(event);
                }
                event = SseEvent::default();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line.as_str(), ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event.event = Some(value.to_string()),
                "data" => {
                    if has_data {
                        event.data.push('\n');
                    }
                    event.data.push_str(value);
                    has_data = true;
                }
                _ => {}
            }
        }
    }

    /// The next event's data as JSON, with its event name.
    pub async fn next_json(&mut self) -> io::Result<(Option<String>, serde_json::Value)> {
        let event = self.next_event().await?;
        let value = serde_json::from_str(&event.data)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok((event.event, value))
    }
}
