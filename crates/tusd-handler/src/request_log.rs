//! What a request's one log line is built from: values the protocol
//! modules attach to a response for the dispatcher to read.

/// Number of bytes a request stored, attached to its response for the log line.
#[derive(Clone, Copy)]
pub(crate) struct BytesStored(pub u64);

/// The failure behind a 5xx answer, kept on the response so that the
/// request's one log line can name it next to the upload id.
#[derive(Clone)]
pub(crate) struct FailureReason(pub String);

/// A client-supplied value as it may appear in a log line: escaped, and
/// cut to `max` characters, so no client can forge lines or fill the log.
pub(crate) fn loggable(value: &str, max: usize) -> String {
    let mut out: String = value.escape_debug().take(max).collect();
    if value.escape_debug().nth(max).is_some() {
        out.push('…');
    }
    out
}
