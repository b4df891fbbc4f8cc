//! The fencing rule every store applies, in one place: whether a lock
//! holder's [`FencingToken`] may change an upload, given the upload's
//! [`FenceRecord`] (the newest token that changed it).
//!
//! Tokens are comparable only within one issuer (one etcd cluster and
//! prefix, or one memory locker's lifetime). A token is admitted when the
//! upload has no record yet (it is recorded); when its issuer is the
//! recorded one and it is at least the recorded token (equal: the same
//! holder writing again); or when its issuer is new, neither the recorded
//! one nor a retired one (a restarted memory locker, a switch of locker):
//! the new issuer takes over and the old one is *retired* for this upload,
//! so a holder still alive under it is refused from then on instead of
//! alternating with the new one. It is refused when it is lower than the
//! recorded token of its issuer, or its issuer is retired.
//!
//! How a store makes the check atomic with the change is its own business
//! (the file store: an `flock`ed critical section; the S3 store: a
//! conditional write of its record); the rule and the record's JSON shape
//! (`{"Issuer": "...", "Token": 42, "Retired": [...]}`) are shared.

use serde::{Deserialize, Serialize};

use crate::FencingToken;

/// How many retired issuers a record remembers; the oldest goes first.
pub const MAX_RETIRED: usize = 16;

/// What a store records per upload: the newest token that changed it, and
/// the issuers taken over from (the file store keeps it in an extended
/// attribute of the data file).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FenceRecord {
    pub issuer: String,
    pub token: i64,
    #[serde(default)]
    pub retired: Vec<String>,
}

/// Decides whether `token` may change an upload whose record is `record`.
/// `Ok(Some(new))` when the record must become `new`, `Ok(None)` when it
/// stays, `Err(reason)` when the caller is stale.
pub fn admit(
    record: Option<&FenceRecord>,
    token: &FencingToken,
) -> Result<Option<FenceRecord>, String> {
    let Some(record) = record else {
        return Ok(Some(FenceRecord {
            issuer: token.issuer().to_owned(),
            token: token.value(),
            retired: Vec::new(),
        }));
    };
    if record.issuer == token.issuer() {
        return match token.value() {
            value if value < record.token => Err(format!(
                "token {token} is older than {}#{}, which has written since",
                record.issuer, record.token
            )),
            value if value == record.token => Ok(None),
            value => Ok(Some(FenceRecord {
                token: value,
                ..record.clone()
            })),
        };
    }
    if record.retired.iter().any(|r| r == token.issuer()) {
        return Err(format!(
            "token {token} comes from a locker that {}#{} has taken over from",
            record.issuer, record.token
        ));
    }
    let mut retired = record.retired.clone();
    retired.push(record.issuer.clone());
    if retired.len() > MAX_RETIRED {
        retired.remove(0);
    }
    Ok(Some(FenceRecord {
        issuer: token.issuer().to_owned(),
        token: token.value(),
        retired,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(issuer: &str, value: i64) -> FencingToken {
        FencingToken::new(issuer, value)
    }

    fn record(issuer: &str, value: i64, retired: &[&str]) -> FenceRecord {
        FenceRecord {
            issuer: issuer.into(),
            token: value,
            retired: retired.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn the_first_token_is_recorded() {
        assert_eq!(admit(None, &token("a", 5)), Ok(Some(record("a", 5, &[]))));
    }

    #[test]
    fn within_one_issuer_newer_and_equal_pass_and_older_is_refused() {
        let current = record("a", 5, &[]);
        assert_eq!(admit(Some(&current), &token("a", 5)), Ok(None));
        assert_eq!(
            admit(Some(&current), &token("a", 9)),
            Ok(Some(record("a", 9, &[])))
        );
        assert!(admit(Some(&current), &token("a", 4)).is_err());
    }

    #[test]
    fn a_new_issuer_takes_over_and_the_old_one_is_refused_for_good() {
        let first = record("a", 500, &[]);
        // A restarted locker counts from 1 again: not locked out.
        let taken = admit(Some(&first), &token("b", 1)).unwrap().unwrap();
        assert_eq!(taken, record("b", 1, &["a"]));
        // A holder still alive under the old issuer is now stale.
        assert!(admit(Some(&taken), &token("a", 501)).is_err());
        // A third issuer takes over again, and both old ones stay out.
        let third = admit(Some(&taken), &token("c", 1)).unwrap().unwrap();
        assert_eq!(third, record("c", 1, &["a", "b"]));
        assert!(admit(Some(&third), &token("b", 2)).is_err());
    }

    #[test]
    fn the_retired_list_is_bounded() {
        let mut current = record("i0", 1, &[]);
        for i in 1..=MAX_RETIRED + 3 {
            current = admit(Some(&current), &token(&format!("i{i}"), 1))
                .unwrap()
                .unwrap();
        }
        assert_eq!(current.retired.len(), MAX_RETIRED);
        assert_eq!(current.retired[0], "i3");
    }
}
