//! The chaos suite's tus client: HTTP/1.1 spoken by hand over a raw
//! `TcpStream`, one request per connection (`Connection: close`), so that a
//! test decides exactly when a body stops, stalls or is cut off, and sees
//! every answer a server or proxy gives, also one that comes before the body
//! is complete.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Bytes written to the socket at a time; pacing sleeps between pieces.
pub const PIECE: usize = 16 * 1024;

/// How long each step of a request may take.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Connecting to the proxy.
    pub connect: Duration,
    /// One piece of body staying unwritten (the socket buffers are full and
    /// nothing reads them: a frozen node behind the proxy).
    pub write: Duration,
    /// The answer, counted from the end of what the request sends.
    pub answer: Duration,
}

/// One answer.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn offset(&self) -> Option<u64> {
        self.header("upload-offset")?.trim().parse().ok()
    }

    /// The status and the first line of the body, for reports.
    pub fn summary(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let line = text.lines().next().unwrap_or("").trim();
        if line.is_empty() {
            self.status.to_string()
        } else {
            format!(
                "{} {}",
                self.status,
                line.chars().take(120).collect::<String>()
            )
        }
    }
}

/// What became of a request that expects an answer.
#[derive(Debug)]
pub enum Outcome {
    Answered(Response),
    /// No answer: connect, write or read failed, or a timeout passed.
    Failed(String),
}

/// How a PATCH sends its body.
#[derive(Clone, Copy, Debug)]
pub enum Plan {
    /// All of it, then wait for the answer.
    Whole,
    /// `after` bytes, then close the connection (with a reset if `reset`)
    /// without waiting for an answer: a client that went away.
    Disconnect { after: usize, reset: bool },
    /// `after` bytes, nothing for `pause`, then the rest and the answer.
    StallThenFinish { after: usize, pause: Duration },
    /// `after` bytes, then nothing more while the connection stays open: the
    /// client gives up on it and resumes on a new connection. The old one
    /// is left to a task that waits for its (late) answer.
    StallThenAbandon { after: usize },
}

impl Plan {
    pub fn name(&self) -> &'static str {
        match self {
            Plan::Whole => "whole",
            Plan::Disconnect { .. } => "disconnect",
            Plan::StallThenFinish { .. } => "stall+finish",
            Plan::StallThenAbandon { .. } => "stall+abandon",
        }
    }
}

/// The late answer of an abandoned PATCH, if it came.
#[derive(Debug)]
pub struct LateAnswer {
    pub received: Instant,
    /// How far the client had sent this upload when the answer came.
    pub sent_then: u64,
    pub response: Response,
}

/// What became of a PATCH.
#[derive(Debug)]
pub enum PatchEnd {
    Answered(Response),
    Failed(String),
    /// Closed by the client on purpose ([`Plan::Disconnect`]).
    Disconnected,
    /// Left open ([`Plan::StallThenAbandon`]); the task yields its answer.
    Abandoned(JoinHandle<Option<LateAnswer>>),
}

/// A PATCH of `body` at `offset`, sent as `plan` says, `pace` between
/// pieces. `sent` is raised to `offset + n` each time `n` bytes of the body
/// are in the socket: how far this client has sent the upload.
pub struct PatchRequest<'a> {
    pub path: &'a str,
    pub offset: u64,
    pub body: Arc<[u8]>,
    pub plan: Plan,
    pub pace: Duration,
    pub sent: Arc<AtomicU64>,
}

/// Where requests go: the proxy on loopback.
#[derive(Clone, Debug)]
pub struct Target {
    pub port: u16,
}

impl Target {
    fn head(&self, method: &str, path: &str, headers: &[(&str, String)]) -> Vec<u8> {
        let mut text = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nTus-Resumable: 1.0.0\r\nConnection: close\r\n",
            self.port
        );
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        text.into_bytes()
    }

    async fn connect(&self, timeouts: Timeouts) -> Result<TcpStream, String> {
        match tokio::time::timeout(
            timeouts.connect,
            TcpStream::connect(("127.0.0.1", self.port)),
        )
        .await
        {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(stream)
            }
            Ok(Err(e)) => Err(format!("connect: {e}")),
            Err(_) => Err("connect: timed out".to_owned()),
        }
    }

    /// A request without a body (POST, HEAD, GET, DELETE).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        timeouts: Timeouts,
    ) -> Outcome {
        let mut stream = match self.connect(timeouts).await {
            Ok(stream) => stream,
            Err(e) => return Outcome::Failed(e),
        };
        let mut all = headers.to_vec();
        if method == "POST" {
            all.push(("Content-Length", "0".to_owned()));
        }
        if let Err(e) = stream.write_all(&self.head(method, path, &all)).await {
            return Outcome::Failed(format!("write: {e}"));
        }
        match tokio::time::timeout(
            timeouts.answer,
            read_response(&mut stream, method == "HEAD"),
        )
        .await
        {
            Ok(Ok(response)) => Outcome::Answered(response),
            Ok(Err(e)) => Outcome::Failed(format!("read: {e}")),
            Err(_) => Outcome::Failed(format!("no answer within {:?}", timeouts.answer)),
        }
    }

    /// A PATCH as `request` describes it.
    pub async fn patch(&self, request: PatchRequest<'_>, timeouts: Timeouts) -> PatchEnd {
        let PatchRequest {
            path,
            offset,
            body,
            plan,
            pace,
            sent,
        } = request;
        let stream = match self.connect(timeouts).await {
            Ok(stream) => stream,
            Err(e) => return PatchEnd::Failed(e),
        };
        if let Plan::Disconnect { reset: true, .. } = plan {
            // A zero linger makes the close a reset and never blocks (the
            // deprecation is about non-zero lingers blocking the drop).
            #[allow(deprecated)]
            let _ = stream.set_linger(Some(Duration::ZERO));
        }
        let (reader, mut writer) = stream.into_split();
        let head = self.head(
            "PATCH",
            path,
            &[
                ("Upload-Offset", offset.to_string()),
                ("Content-Type", "application/offset+octet-stream".to_owned()),
                ("Content-Length", body.len().to_string()),
            ],
        );
        if let Err(e) = writer.write_all(&head).await {
            return PatchEnd::Failed(format!("write: {e}"));
        }
        let mut answer = Box::pin(read_owned(reader));
        let first_stop = match plan {
            Plan::Whole => body.len(),
            Plan::Disconnect { after, .. }
            | Plan::StallThenFinish { after, .. }
            | Plan::StallThenAbandon { after } => after.min(body.len()),
        };

        // Sends body[from..to] piece by piece; an answer that comes first
        // ends the request. `sent` is raised after each write call by what
        // that call put into the socket, before the answer is looked at
        // again, so no answer can acknowledge bytes `sent` does not count.
        macro_rules! send_range {
            ($from:expr, $to:expr) => {{
                let mut at = $from;
                let mut early = None;
                'body: while at < $to {
                    let piece_end = (at + PIECE).min($to);
                    while at < piece_end {
                        let write =
                            tokio::time::timeout(timeouts.write, writer.write(&body[at..piece_end]));
                        tokio::select! {
                            biased;
                            result = &mut answer => { early = Some(answered(result)); break 'body; }
                            written = write => match written {
                                Ok(Ok(0)) => {
                                    early = Some(PatchEnd::Failed("write: zero bytes".to_owned()));
                                    break 'body;
                                }
                                Ok(Ok(n)) => {
                                    at += n;
                                    sent.fetch_max(offset + at as u64, Ordering::SeqCst);
                                }
                                Ok(Err(e)) => {
                                    // The proxy closed; its answer may be on the way.
                                    early = Some(
                                        match tokio::time::timeout(Duration::from_secs(2), &mut answer).await {
                                            Ok(result) => answered(result),
                                            Err(_) => PatchEnd::Failed(format!("write: {e}")),
                                        },
                                    );
                                    break 'body;
                                }
                                Err(_) => {
                                    early = Some(PatchEnd::Failed(format!(
                                        "body write blocked for {:?}",
                                        timeouts.write
                                    )));
                                    break 'body;
                                }
                            },
                        }
                    }
                    if !pace.is_zero() && at < $to {
                        tokio::select! {
                            biased;
                            result = &mut answer => { early = Some(answered(result)); break 'body; }
                            _ = tokio::time::sleep(pace) => {}
                        }
                    }
                }
                early
            }};
        }

        if let Some(end) = send_range!(0, first_stop) {
            return end;
        }
        match plan {
            Plan::Disconnect { .. } => {
                drop(writer);
                drop(answer);
                PatchEnd::Disconnected
            }
            Plan::StallThenAbandon { .. } => {
                let answer_wait = timeouts.answer;
                PatchEnd::Abandoned(tokio::spawn(async move {
                    // The connection stays open (no FIN) until the answer
                    // comes or the wait ends, as a stalled client's would.
                    let result = tokio::time::timeout(answer_wait * 2, answer).await;
                    drop(writer);
                    match result {
                        Ok(Ok(response)) => Some(LateAnswer {
                            received: Instant::now(),
                            sent_then: sent.load(Ordering::SeqCst),
                            response,
                        }),
                        _ => None,
                    }
                }))
            }
            Plan::StallThenFinish { pause, .. } => {
                tokio::select! {
                    biased;
                    result = &mut answer => return answered(result),
                    _ = tokio::time::sleep(pause) => {}
                }
                if let Some(end) = send_range!(first_stop, body.len()) {
                    return end;
                }
                wait_answer(answer, timeouts.answer).await
            }
            Plan::Whole => wait_answer(answer, timeouts.answer).await,
        }
    }
}

async fn wait_answer(
    answer: std::pin::Pin<Box<impl std::future::Future<Output = io::Result<Response>>>>,
    within: Duration,
) -> PatchEnd {
    match tokio::time::timeout(within, answer).await {
        Ok(result) => answered(result),
        Err(_) => PatchEnd::Failed(format!("no answer within {within:?}")),
    }
}

fn answered(result: io::Result<Response>) -> PatchEnd {
    match result {
        Ok(response) => PatchEnd::Answered(response),
        Err(e) => PatchEnd::Failed(format!("read: {e}")),
    }
}

async fn read_owned(mut reader: OwnedReadHalf) -> io::Result<Response> {
    read_response(&mut reader, false).await
}

/// Reads one HTTP/1.1 response: head, then a body by `Content-Length`, or
/// to the end of the connection when there is none (`Connection: close`).
pub async fn read_response(
    reader: &mut (impl AsyncRead + Unpin),
    head_only: bool,
) -> io::Result<Response> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 8192];
    loop {
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("connection closed after {} bytes of answer", buffer.len()),
            ));
        }
        buffer.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Response::new(&mut headers);
        let status = parsed
            .parse(&buffer)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let httparse::Status::Complete(head_len) = status else {
            if buffer.len() > 64 * 1024 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "huge head"));
            }
            continue;
        };
        let code = parsed.code.unwrap_or(0);
        if (100..200).contains(&code) {
            buffer.drain(..head_len);
            continue;
        }
        let headers: Vec<(String, String)> = parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let mut response = Response {
            status: code,
            headers,
            body: buffer[head_len..].to_vec(),
        };
        if head_only || code == 204 || code == 304 {
            response.body.clear();
            return Ok(response);
        }
        match response
            .header("content-length")
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            Some(length) => {
                while response.body.len() < length {
                    let n = reader.read(&mut chunk).await?;
                    if n == 0 {
                        break;
                    }
                    response.body.extend_from_slice(&chunk[..n]);
                }
                response.body.truncate(length);
            }
            None => {
                // Chunked or close-delimited: keep the raw rest, it is only
                // read for reports.
                loop {
                    let n = reader.read(&mut chunk).await?;
                    if n == 0 {
                        break;
                    }
                    response.body.extend_from_slice(&chunk[..n]);
                }
            }
        }
        return Ok(response);
    }
}

/// Deterministic bytes for an upload: a splitmix64 stream from `seed`, so
/// that every byte depends on its position and a shifted write shows.
pub fn upload_data(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small deterministic random source for the workload's choices.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        splitmix64(&mut self.0)
    }

    /// A number in `low..high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low).max(1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}
