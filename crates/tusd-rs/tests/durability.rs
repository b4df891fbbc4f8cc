//! `--durability`: at every level, an upload whose completing PATCH was
//! answered 204 is whole after a clean shutdown (SIGTERM) and a restart of
//! a real server process on the same directory; an unknown level is refused
//! at start-up with one line.

mod common;

use common::*;
use tusd_testsupport::{s3_place_for, TusServer};

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 253) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_upload_is_whole_after_sigterm_and_restart_at_every_level() {
    for level in ["none", "create", "complete"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("uploads");
        let args = ["--durability", level];
        let mut server = TusServer::start_in(BIN, &dir, &args);
        if s3_place_for(&dir).is_none() {
            let named = format!("durability {level}");
            eventually("the start-up line names the level", 250, || async {
                server.log().contains(&named)
            })
            .await;
        }
        let bytes = content(3 << 20);
        let url = create(&server, bytes.len() as u64).await;
        let half = bytes.len() / 2;
        assert_eq!(patch(&url, 0, bytes[..half].to_vec()).await.status(), 204);
        let done = patch(&url, half as u64, bytes[half..].to_vec()).await;
        assert_eq!(done.status(), 204, "{level}");
        assert_eq!(header_u64(&done, "upload-offset"), bytes.len() as u64);

        let exit = tokio::task::block_in_place(|| server.terminate());
        assert!(exit.success(), "{level}: {exit:?}\n{}", server.log());
        let server = TusServer::start_in(BIN, &dir, &args);
        let url = format!("{}{}", server.files_url(), id_of(&url));
        assert_eq!(offset(&url).await, bytes.len() as u64, "{level}");
        let (status, stored) = get_bytes(&url).await;
        assert_eq!(status, 200);
        assert!(stored == bytes, "{level}: the upload differs after restart");
        if s3_place_for(&dir).is_none() {
            let on_disk = std::fs::read(dir.join(id_of(&url))).unwrap();
            assert!(on_disk == bytes, "{level}: the data file differs");
        }
    }
}

#[test]
fn an_unknown_level_is_refused_with_one_line() {
    let out = std::process::Command::new(BIN)
        .args(["--durability", "sometimes", "--port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown durability \"sometimes\" (expected none, create or complete)"),
        "{stderr}"
    );
}
