//! A cluster with authentication on: the locker locks with a user and
//! password, and a wrong password is a clear error at connect time.

use etcd3locker::{connect, ConnectOptions, Etcd3Locker};
use tusd_core::Locker;
use tusd_testsupport::{etcdctl, EtcdServer};

use crate::{id, in_secs};

fn etcdctl_ok(endpoints: &[String], args: &[&str]) {
    let output = etcdctl(endpoints).args(args).output().expect("run etcdctl");
    assert!(
        output.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn locks_with_user_and_password() {
    let etcd = EtcdServer::start().await;
    let endpoints = etcd.endpoints();
    etcdctl_ok(
        &endpoints,
        &["--interactive=false", "user", "add", "root:s3cret"],
    );
    etcdctl_ok(&endpoints, &["user", "grant-role", "root", "root"]);
    etcdctl_ok(&endpoints, &["auth", "enable"]);

    let mut options = ConnectOptions::new(endpoints.clone());
    options.username = Some("root".into());
    options.password = Some("s3cret".into());
    let locker = Etcd3Locker::new(connect(&options).await.expect("connect with credentials"));
    let lock = locker.lock(&id("secured"), in_secs(10)).await.unwrap();
    assert!(crate::token(&lock) > 0);
    lock.unlock().await.unwrap();
    locker.shutdown().await;

    options.password = Some("wrong".into());
    let error = connect(&options)
        .await
        .err()
        .expect("connected with a wrong password");
    assert!(error.to_string().contains(&endpoints[0]), "{error}");
}
