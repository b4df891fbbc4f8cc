//! tusd v2's hook JSON, field for field (`pkg/hooks/hooks.go`,
//! `pkg/handler/hooks.go`, `pkg/handler/http.go`).
//!
//! Sent:
//! ```json
//! {"Type": "pre-create",
//!  "Event": {"Upload": {"ID": "", "Size": 11, "SizeIsDeferred": false, "Offset": 0,
//!                       "MetaData": {"filename": "a.txt"}, "IsPartial": false,
//!                       "IsFinal": false, "PartialUploads": [], "Storage": {}},
//!            "HTTPRequest": {"Method": "POST", "URI": "/files/", "RemoteAddr": "127.0.0.1:50312",
//!                            "Header": {"Upload-Length": ["11"], "Host": ["localhost:8080"]}}}}
//! ```
//! Understood back (every field optional; `null` is the same as absent):
//! `HTTPResponse` {`StatusCode`, `Body`, `Header`}, `RejectUpload`,
//! `RejectTermination`, `ChangeFileInfo` {`ID`, `MetaData`, `Storage`},
//! `StopUpload`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use tusd_handler::{RequestInfo, UploadInfo};

use crate::HookType;

/// What a hook receives (tusd's `HookRequest`).
#[derive(Clone, Debug, Serialize)]
pub struct HookRequest {
    #[serde(rename = "Type", serialize_with = "hook_name")]
    pub kind: HookType,
    #[serde(rename = "Event")]
    pub event: HookEvent,
}

fn hook_name<S: serde::Serializer>(kind: &HookType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.name())
}

/// tusd's `HookEvent`: the upload (the same fields as the file store's
/// `.info`) and the request that caused the event.
#[derive(Clone, Debug, Serialize)]
pub struct HookEvent {
    #[serde(rename = "Upload")]
    pub upload: UploadInfo,
    #[serde(rename = "HTTPRequest")]
    pub http_request: HttpRequest,
}

/// tusd's `HTTPRequest`. `Header` holds every request header under Go's
/// canonical name (`Upload-Length`), values as a list, plus `Host`, as
/// tusd adds it back. Empty for an event no request caused (expiry).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HttpRequest {
    pub method: String,
    #[serde(rename = "URI")]
    pub uri: String,
    pub remote_addr: String,
    pub header: BTreeMap<String, Vec<String>>,
}

impl HookRequest {
    pub fn new(kind: HookType, upload: UploadInfo, request: Option<&RequestInfo>) -> HookRequest {
        HookRequest {
            kind,
            event: HookEvent {
                upload,
                http_request: request.map(HttpRequest::from_request).unwrap_or_default(),
            },
        }
    }
}

impl HttpRequest {
    fn from_request(r: &RequestInfo) -> HttpRequest {
        let mut header: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in r.headers.iter() {
            header
                .entry(canonical_header_key(name.as_str()))
                .or_default()
                .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
        if !header.contains_key("Host") {
            if let Some(authority) = r.uri.authority() {
                header.insert("Host".into(), vec![authority.to_string()]);
            }
        }
        HttpRequest {
            method: r.method.to_string(),
            uri: r
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| r.uri.path().to_owned()),
            remote_addr: r.remote_addr.map(|a| a.to_string()).unwrap_or_default(),
            header,
        }
    }
}

/// Go's `http.CanonicalHeaderKey`: each dash-separated word capitalised.
pub fn canonical_header_key(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    out
}

/// What a hook answers (tusd's `HookResponse`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct HookResponse {
    #[serde(rename = "HTTPResponse", default, deserialize_with = "null_default")]
    pub http_response: HttpResponse,
    #[serde(rename = "RejectUpload", default, deserialize_with = "null_default")]
    pub reject_upload: bool,
    #[serde(
        rename = "RejectTermination",
        default,
        deserialize_with = "null_default"
    )]
    pub reject_termination: bool,
    #[serde(rename = "ChangeFileInfo", default, deserialize_with = "null_default")]
    pub change_file_info: FileInfoChanges,
    #[serde(rename = "StopUpload", default, deserialize_with = "null_default")]
    pub stop_upload: bool,
}

/// tusd's `HTTPResponse`: a status of 0 and an empty body change nothing.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct HttpResponse {
    #[serde(rename = "StatusCode", default, deserialize_with = "null_default")]
    pub status_code: i64,
    #[serde(rename = "Body", default, deserialize_with = "null_default")]
    pub body: String,
    #[serde(rename = "Header", default, deserialize_with = "null_default")]
    pub header: BTreeMap<String, String>,
}

/// tusd's `FileInfoChanges`: an empty `ID` keeps the store's choice; a
/// `MetaData` or `Storage` that is absent or `null` keeps the request's,
/// any map (also `{}`) replaces it whole.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct FileInfoChanges {
    #[serde(rename = "ID", default, deserialize_with = "null_default")]
    pub id: String,
    #[serde(rename = "MetaData", default)]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(rename = "Storage", default)]
    pub storage: Option<BTreeMap<String, String>>,
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_keys_are_gos() {
        assert_eq!(canonical_header_key("upload-length"), "Upload-Length");
        assert_eq!(
            canonical_header_key("x-http-method-override"),
            "X-Http-Method-Override"
        );
    }

    #[test]
    fn response_fields_and_nulls() {
        let r: HookResponse = serde_json::from_str(
            r#"{"HTTPResponse":{"StatusCode":403,"Body":"no","Header":null},"RejectUpload":true,
                "ChangeFileInfo":{"ID":"abc","MetaData":{"a":"b"},"Storage":null},"StopUpload":null}"#,
        )
        .unwrap();
        assert_eq!(r.http_response.status_code, 403);
        assert!(r.reject_upload && !r.stop_upload);
        assert_eq!(r.change_file_info.id, "abc");
        assert!(r.change_file_info.storage.is_none());
        let empty: HookResponse = serde_json::from_str("{}").unwrap();
        assert!(empty.change_file_info.metadata.is_none());
    }

    #[test]
    fn request_json_has_tusds_field_names() {
        let req = HookRequest::new(HookType::PostFinish, UploadInfo::default(), None);
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(v["Type"], "post-finish");
        assert!(v["Event"]["Upload"].get("ID").is_some());
        assert!(v["Event"]["Upload"].get("MetaData").is_some());
        assert!(v["Event"]["HTTPRequest"].get("RemoteAddr").is_some());
        assert!(v["Event"]["HTTPRequest"].get("URI").is_some());
    }
}
