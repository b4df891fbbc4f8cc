//! Concatenation: partial uploads joined into a final one.
//!
//! A final upload may be created before its partials are finished
//! (concatenation-unfinished). It is then stored with a deferred length and
//! joined lazily: the first HEAD or GET that finds all partials complete does
//! the join under the final upload's lock.

use http::{HeaderMap, HeaderValue};

use crate::error::HandlerError;
use crate::location::upload_url;
use crate::protocol::receive::check_max_size;
use crate::state::{Origin, State};
use crate::{Lock, UploadId, UploadInfo};

/// Checks the list a client gives for a new final upload: within the limit
/// and no partial twice. A partial named 4,000 times would turn a 160 KB
/// header into 4,000 copies of its bytes on disk.
pub fn check_partials(state: &State, partials: &[UploadId]) -> Result<(), HandlerError> {
    let max = state.config().max_concat_partials;
    if partials.len() > max {
        return Err(HandlerError::bad_request(format!(
            "Upload-Concat names {} partial uploads; at most {max} are allowed",
            partials.len()
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(partials.len());
    for id in partials {
        if !seen.insert(id) {
            return Err(HandlerError::bad_request(format!(
                "Upload-Concat names {id} more than once"
            )));
        }
    }
    Ok(())
}

/// Checks that every id names a partial upload, and returns the final
/// length when all of them are complete (`None` while some are not).
pub async fn final_size(state: &State, partials: &[UploadId]) -> Result<Option<u64>, HandlerError> {
    let mut total: Option<u64> = Some(0);
    for id in partials {
        let info = match state.info(id).await {
            Ok(info) => info,
            Err(HandlerError::NotFound) => {
                return Err(HandlerError::bad_request(format!(
                    "Upload-Concat names unknown upload {id}"
                )))
            }
            Err(e) => return Err(e),
        };
        if !info.is_partial {
            return Err(HandlerError::bad_request(format!(
                "Upload-Concat names {id}, which is not a partial upload"
            )));
        }
        total = match info.is_complete() {
            true => total.and_then(|t| t.checked_add(info.size)),
            false => None,
        };
    }
    if let Some(total) = total {
        check_max_size(state, total)?;
    }
    Ok(total)
}

/// Joins a waiting final upload once its partials are complete, under the
/// final upload's `lock`, which the caller holds.
pub async fn finish_if_ready(
    state: &State,
    id: &UploadId,
    info: UploadInfo,
    lock: &Lock,
    origin: &Origin,
) -> Result<UploadInfo, HandlerError> {
    if !info.is_final || info.is_complete() {
        return Ok(info);
    }
    let partials: Vec<UploadId> = info
        .partial_uploads
        .iter()
        .map(|p| {
            UploadId::parse(p).ok_or_else(|| {
                HandlerError::Internal(format!("stored partial id {p:?} is invalid"))
            })
        })
        .collect::<Result<_, _>>()?;
    // A partial that is gone now (deleted after the final was created) is
    // no fault of this request: the final can never complete, which is 410.
    let size = final_size(state, &partials).await.map_err(|e| match e {
        HandlerError::BadRequest(reason) => HandlerError::GoneFor(format!(
            "this final upload can never be completed: {reason}"
        )),
        other => other,
    })?;
    if size.is_none() {
        return Ok(info);
    }
    state
        .concat(id, &partials, lock.fencing_token(), origin)
        .await
}

/// `Upload-Concat` for HEAD: `partial`, or `final;` and the partials' URLs,
/// absolute like `Location` (tusd answers the same way), so a client can use
/// them as they are.
pub fn header_value(state: &State, request: &HeaderMap, info: &UploadInfo) -> Option<HeaderValue> {
    if info.is_partial {
        return Some(HeaderValue::from_static("partial"));
    }
    if !info.is_final {
        return None;
    }
    let config = state.config();
    let urls: Vec<String> = info
        .partial_uploads
        .iter()
        .filter_map(|p| UploadId::parse(p))
        .map(|id| upload_url(request, config.behind_proxy, &config.base_path, &id))
        .collect();
    HeaderValue::from_str(&format!("final;{}", urls.join(" "))).ok()
}
