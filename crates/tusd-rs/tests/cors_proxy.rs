//! CORS as tusd does it, and `Location` behind a proxy.

mod common;

use common::*;
use reqwest::Method;
use tusd_testsupport::InProcessServer;

#[tokio::test]
async fn preflight_is_answered_with_allowed_methods_and_headers() {
    let server = InProcessServer::with_args(&[]).await;
    let r = client()
        .request(Method::OPTIONS, server.files_url())
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "PATCH")
        .header("Access-Control-Request-Headers", "upload-offset")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    for m in ["POST", "HEAD", "PATCH", "OPTIONS", "GET", "DELETE"] {
        assert!(methods.contains(m), "{m} missing from {methods}");
    }
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in [
        "upload-offset",
        "upload-length",
        "tus-resumable",
        "upload-metadata",
        "upload-concat",
        "upload-checksum",
        "x-http-method-override",
    ] {
        assert!(allowed.contains(name), "{name} missing from {allowed}");
    }
    assert!(h.contains_key("access-control-max-age"));
    assert_eq!(r.status(), 200, "browsers refuse other preflight statuses");
    assert_eq!(h["tus-resumable"], "1.0.0");
    assert_eq!(h["tus-version"], "1.0.0");
}

#[tokio::test]
async fn normal_responses_carry_allow_origin_and_expose_headers() {
    let server = InProcessServer::with_args(&[]).await;
    let r = tus(Method::POST, &server.files_url())
        .header("Origin", "https://app.example")
        .header("Upload-Length", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in [
        "location",
        "upload-offset",
        "upload-length",
        "tus-resumable",
        "upload-expires",
    ] {
        assert!(exposed.contains(name), "{name} missing from {exposed}");
    }
    // Errors too, so a browser can read why.
    let r = client()
        .head(format!("{}0123456789abcdef", server.files_url()))
        .header("Origin", "https://app.example")
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
}

#[tokio::test]
async fn plain_tus_options_still_reports_the_protocol() {
    let server = InProcessServer::with_args(&[]).await;
    let r = client()
        .request(Method::OPTIONS, server.files_url())
        .header("Origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.headers()["tus-version"], "1.0.0");
    assert!(r.headers().contains_key("tus-extension"));
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
}

#[tokio::test]
async fn non_matching_origin_gets_no_cors_headers() {
    let server =
        InProcessServer::with_args(&["--cors-allow-origin", r"https://.*\.good\.example"]).await;
    let send = |origin: &'static str, preflight: bool| {
        let mut r = client()
            .request(Method::OPTIONS, server.files_url())
            .header("Origin", origin);
        if preflight {
            r = r.header("Access-Control-Request-Method", "POST");
        }
        r.send()
    };
    let good = send("https://app.good.example", true).await.unwrap();
    assert_eq!(
        good.headers()["access-control-allow-origin"],
        "https://app.good.example"
    );
    for origin in [
        "https://evil.example",
        "https://app.good.example.evil",
        "http://app.good.example",
    ] {
        for preflight in [true, false] {
            let r = send(origin, preflight).await.unwrap();
            for (name, _) in r.headers() {
                assert!(
                    !name.as_str().starts_with("access-control-"),
                    "{origin}: {name}"
                );
            }
        }
    }
    let r = tus(Method::POST, &server.files_url())
        .header("Origin", "https://evil.example")
        .header("Upload-Length", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn disable_cors_sends_none() {
    let server = InProcessServer::with_args(&["--disable-cors"]).await;
    let r = client()
        .request(Method::OPTIONS, server.files_url())
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

async fn location(server: &impl Server, headers: &[(&str, &str)]) -> String {
    let mut r = tus(Method::POST, &server.files_url()).header("Upload-Length", "1");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 201);
    r.headers()["location"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn behind_proxy_location_honours_forwarded_headers() {
    let server = InProcessServer::with_args(&["--behind-proxy"]).await;
    let url = location(
        &server,
        &[
            ("X-Forwarded-Host", "up.example"),
            ("X-Forwarded-Proto", "https"),
        ],
    )
    .await;
    assert!(url.starts_with("https://up.example/files/"), "{url}");
    let url = location(
        &server,
        &[("Forwarded", "for=10.0.0.1;host=fw.example;proto=https")],
    )
    .await;
    assert!(url.starts_with("https://fw.example/files/"), "{url}");
    let url = location(&server, &[("X-Forwarded-Host", "up.example")]).await;
    assert!(url.starts_with("http://up.example/files/"), "{url}");
    // The URL it hands out names an upload the server knows.
    let id = id_of(&url);
    assert_eq!(offset(&format!("{}{id}", server.files_url())).await, 0);
}

#[tokio::test]
async fn without_behind_proxy_forwarded_headers_are_ignored() {
    let server = InProcessServer::with_args(&[]).await;
    let url = location(
        &server,
        &[
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-Proto", "https"),
            ("Forwarded", "host=evil2.example;proto=https"),
        ],
    )
    .await;
    assert!(url.starts_with(&server.files_url()), "{url}");
}
