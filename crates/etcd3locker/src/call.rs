//! One etcd request under a deadline, retried while etcd is unavailable.
//!
//! A client with several endpoints keeps working while one is down only if
//! a request that hit the dead one is sent again: etcd-client does not retry.
//! Every request of the lock protocol is safe to repeat (the lock Txn is
//! guarded by `create_revision == 0`, deletes are idempotent, a lease grant
//! carries its own id), so all of them go through [`retry`].

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// The longest one attempt may take; a member that accepted the connection
/// but stopped answering (paused, partitioned) costs at most this much
/// before the request goes to another endpoint.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// How a retried request failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The deadline passed; the last attempt may or may not have taken effect.
    Deadline(String),
    /// etcd refused the request; retrying would not help.
    Refused(etcd_client::Error),
}

impl From<CallError> for crate::Error {
    fn from(error: CallError) -> crate::Error {
        match error {
            CallError::Deadline(reason) => crate::Error::Unavailable(reason),
            CallError::Refused(e) => crate::Error::Etcd(e),
        }
    }
}

/// Runs `attempt` until it succeeds, fails for a reason other than
/// unavailability, or `deadline` passes. Each attempt is limited to
/// `per_attempt` and the time left.
pub(crate) async fn retry<T, F, Fut>(
    deadline: Instant,
    per_attempt: Duration,
    mut attempt: F,
) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let mut backoff = FIRST_BACKOFF;
    loop {
        let limit = deadline.min(Instant::now() + per_attempt);
        let reason = match tokio::time::timeout_at(limit, attempt()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) if !is_unavailable(&e) => return Err(CallError::Refused(e)),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {per_attempt:?}"),
        };
        if Instant::now() + backoff >= deadline {
            return Err(CallError::Deadline(reason));
        }
        tracing::debug!(%reason, "etcd request failed, retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Whether `error` says "try again, maybe elsewhere" rather than "no".
pub(crate) fn is_unavailable(error: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    use tonic::Code;
    match error {
        E::TransportError(_) | E::IoError(_) => true,
        E::GRpcStatus(status) => matches!(
            status.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::Unknown
        ),
        _ => false,
    }
}
