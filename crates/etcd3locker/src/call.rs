//! One etcd request under a deadline, retried while etcd is unavailable,
//! and the one place that decides what an etcd error means.
//!
//! A client with several endpoints keeps working while one is down only if
//! a request that hit the dead one is sent again: etcd-client does not retry.
//! Every request of the lock protocol is safe to repeat (the lock Txn is
//! guarded by `create_revision == 0`, a delete sent twice removes the same
//! key, whose name is then retired (see `mutex`), a lease grant carries its
//! own id), so all of them go through [`retry`], or [`Attempts`] for the
//! requests of every lock cycle.

use std::future::Future;
use std::time::Duration;

use tokio::time::error::Elapsed;
use tokio::time::{Instant, Timeout};

/// The longest one attempt may take; a member that accepted the connection
/// but stopped answering (paused, partitioned) costs at most this much
/// before the request is sent again (see `docs/cluster.md`, timing budget).
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// What an etcd error means for the caller.
///
/// Decided from the gRPC status code, never from the message text, which
/// differs between etcd versions and is meant for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Try again, maybe on another member: the connection failed, the
    /// member had no leader, the request timed out inside etcd.
    Unavailable,
    /// etcd does not know the lease (`NotFound`; for this crate's requests
    /// only a lease can be missing): it expired or was revoked.
    LeaseNotFound,
    /// A grant with an id that already exists (`FailedPrecondition`; the
    /// only precondition of the requests this crate sends).
    LeaseExists,
    /// Anything else: permissions, a malformed request. Retrying cannot help.
    Refused,
}

/// Classifies `error`; see [`Failure`].
pub(crate) fn classify(error: &etcd_client::Error) -> Failure {
    use etcd_client::Error as E;
    use tonic::Code;
    match error {
        E::TransportError(_) | E::IoError(_) => Failure::Unavailable,
        E::GRpcStatus(status) => match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::Unknown => Failure::Unavailable,
            Code::NotFound => Failure::LeaseNotFound,
            Code::FailedPrecondition => Failure::LeaseExists,
            _ => Failure::Refused,
        },
        // etcd-client's own error for a keep-alive stream whose opening
        // keep-alive etcd answered with TTL 0, which is how etcd says it
        // does not know the lease.
        E::LeaseKeepAliveError(_) => Failure::LeaseNotFound,
        _ => Failure::Refused,
    }
}

/// A short description of `error` for texts that reach clients: the gRPC
/// code and etcd's message, never a transport error's text, which may name
/// internal addresses. The full error goes to the log.
pub(crate) fn public_reason(error: &etcd_client::Error) -> String {
    match error {
        etcd_client::Error::GRpcStatus(status) => status.message().to_owned(),
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            "connection to etcd failed".to_owned()
        }
        _ => "request failed".to_owned(),
    }
}

/// How a retried request failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The deadline passed; the last attempt may or may not have taken
    /// effect. The text says why without internal addresses.
    Deadline(String),
    /// etcd answered with an error that retrying would not fix.
    Refused(Failure, etcd_client::Error),
    /// The caller's deadline cut the request short while etcd showed no
    /// sign of trouble (no error, no attempt that hit its own timeout):
    /// the caller simply ran out of time, e.g. a lock request waiting its
    /// turn behind others. A lock attempt reports this as "still held"
    /// (423), not as an unavailable etcd (503).
    OutOfTime,
}

impl CallError {
    /// Whether etcd said the lease is gone.
    pub(crate) fn is_lease_not_found(&self) -> bool {
        matches!(self, CallError::Refused(Failure::LeaseNotFound, _))
    }
}

impl From<CallError> for crate::Error {
    fn from(error: CallError) -> crate::Error {
        match error {
            CallError::Deadline(reason) => crate::Error::Unavailable(reason),
            CallError::Refused(_, e) => crate::Error::Etcd(e),
            CallError::OutOfTime => {
                crate::Error::Unavailable("no answer before the deadline".to_owned())
            }
        }
    }
}

/// Runs `attempt` until it succeeds, fails for a reason other than
/// unavailability, or `deadline` passes. Each attempt is limited to
/// `per_attempt` and the time left.
pub(crate) async fn retry<T, F, Fut>(
    deadline: Instant,
    per_attempt: Duration,
    attempt: F,
) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    retry_noting_resends(deadline, per_attempt, attempt).await.0
}

/// [`retry`], also saying whether the request was sent more than once. An
/// attempt that got no answer may still be applied by etcd later, after
/// requests sent since: a member that hung keeps it queued.
pub(crate) async fn retry_noting_resends<T, F, Fut>(
    deadline: Instant,
    per_attempt: Duration,
    mut attempt: F,
) -> (Result<T, CallError>, bool)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let mut attempts = Attempts::new(deadline, per_attempt);
    loop {
        let answer = attempts.timed(attempt()).await;
        if let Some(outcome) = attempts.judge(answer).await {
            return (outcome, attempts.resent());
        }
    }
}

/// The state of one request retried as [`retry`] does, for the requests
/// every lock cycle sends: they go through the lock's own KV client,
/// borrowed by each attempt, which a closure could not lend to the future
/// it returns; cloning a client per attempt cost allocations and atomic
/// counts on every lock and unlock. Use:
///
/// ```ignore
/// let mut attempts = Attempts::new(deadline, ATTEMPT_TIMEOUT);
/// let outcome = loop {
///     let answer = attempts.timed(kv.delete(key, None)).await;
///     if let Some(outcome) = attempts.judge(answer).await {
///         break outcome;
///     }
/// };
/// ```
pub(crate) struct Attempts {
    deadline: Instant,
    per_attempt: Duration,
    backoff: Duration,
    /// When the current attempt times out on its own, unless the
    /// caller's deadline comes first.
    own_timeout: Instant,
    /// An attempt failed or went unanswered.
    troubled: bool,
    resent: bool,
}

impl Attempts {
    pub(crate) fn new(deadline: Instant, per_attempt: Duration) -> Attempts {
        Attempts {
            deadline,
            per_attempt,
            backoff: FIRST_BACKOFF,
            own_timeout: deadline,
            troubled: false,
            resent: false,
        }
    }

    /// One attempt of the request, limited to the per-attempt time and the
    /// time left; its answer goes to [`Attempts::judge`].
    ///
    /// Two steps rather than one `async fn` taking the request: such a
    /// function keeps the request's future (kilobytes) twice in its state,
    /// as its argument and inside the timeout, and every lock's future
    /// would carry and copy both.
    pub(crate) fn timed<F: Future>(&mut self, request: F) -> Timeout<F> {
        if self.troubled {
            self.resent = true;
        }
        self.own_timeout = Instant::now() + self.per_attempt;
        tokio::time::timeout_at(self.deadline.min(self.own_timeout), request)
    }

    /// `Some` with the request's outcome once it is decided; `None` when
    /// the caller should send it again (the backoff has been slept).
    pub(crate) async fn judge<T>(
        &mut self,
        answer: Result<Result<T, etcd_client::Error>, Elapsed>,
    ) -> Option<Result<T, CallError>> {
        let (reason, detail) = match answer {
            Ok(Ok(value)) => return Some(Ok(value)),
            Ok(Err(e)) => match classify(&e) {
                Failure::Unavailable => (public_reason(&e), format!("{e:?}")),
                failure => return Some(Err(CallError::Refused(failure, e))),
            },
            Err(_) if self.deadline < self.own_timeout && !self.troubled => {
                return Some(Err(CallError::OutOfTime))
            }
            Err(_) => {
                let reason = format!("no answer within {:?}", self.per_attempt);
                (reason.clone(), reason)
            }
        };
        self.troubled = true;
        if Instant::now() + self.backoff >= self.deadline {
            tracing::warn!(error = %detail, "etcd request given up at its deadline");
            return Some(Err(CallError::Deadline(reason)));
        }
        tracing::debug!(error = %detail, "etcd request failed, retrying");
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        None
    }

    /// Whether the request was sent more than once.
    pub(crate) fn resent(&self) -> bool {
        self.resent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: tonic::Code, message: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, message))
    }

    #[test]
    fn classifies_by_code_not_text() {
        let lease_gone = status(tonic::Code::NotFound, "anything at all");
        assert_eq!(classify(&lease_gone), Failure::LeaseNotFound);
        let misleading = status(tonic::Code::Unavailable, "requested lease not found");
        assert_eq!(classify(&misleading), Failure::Unavailable);
        let exists = status(tonic::Code::FailedPrecondition, "");
        assert_eq!(classify(&exists), Failure::LeaseExists);
        let denied = status(tonic::Code::PermissionDenied, "");
        assert_eq!(classify(&denied), Failure::Refused);
        let keep_alive = etcd_client::Error::LeaseKeepAliveError("lease not found".into());
        assert_eq!(classify(&keep_alive), Failure::LeaseNotFound);
    }

    #[test]
    fn public_reasons_name_no_address() {
        let io = etcd_client::Error::IoError(std::io::Error::other("connect 10.1.2.3:2379"));
        assert!(!public_reason(&io).contains("10.1.2.3"));
        let timed_out = status(tonic::Code::Unavailable, "etcdserver: request timed out");
        assert_eq!(public_reason(&timed_out), "etcdserver: request timed out");
    }

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[tokio::test]
    async fn a_quiet_wait_cut_by_the_callers_deadline_is_out_of_time() {
        let result: Result<(), _> = retry(soon(50), ATTEMPT_TIMEOUT, || {
            std::future::pending::<Result<(), etcd_client::Error>>()
        })
        .await;
        assert!(matches!(result, Err(CallError::OutOfTime)), "{result:?}");
    }

    #[tokio::test]
    async fn a_deadline_after_etcd_failed_is_unavailability() {
        let mut failed_once = false;
        let result: Result<(), _> = retry(soon(200), ATTEMPT_TIMEOUT, || {
            let first = !failed_once;
            failed_once = true;
            async move {
                if first {
                    Err(etcd_client::Error::IoError(std::io::Error::other("reset")))
                } else {
                    std::future::pending().await
                }
            }
        })
        .await;
        assert!(matches!(result, Err(CallError::Deadline(_))), "{result:?}");
    }

    #[tokio::test]
    async fn an_attempt_that_hit_its_own_timeout_is_unavailability() {
        let result: Result<(), _> = retry(soon(300), Duration::from_millis(50), || {
            std::future::pending::<Result<(), etcd_client::Error>>()
        })
        .await;
        assert!(matches!(result, Err(CallError::Deadline(_))), "{result:?}");
    }
}
