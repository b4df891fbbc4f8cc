//! A real nginx in front of tusd-rs nodes, as a child process on loopback.
//!
//! The proxy settings are [`TEMPLATE`], the very text docs/cluster.md
//! ("Behind nginx") recommends to operators, with `{{listen}}` set to a free
//! loopback port and the `{{node}}` line repeated once per upstream. Around
//! it goes only what a test needs: one process that stays in the foreground
//! (`daemon off; master_process off;`), so it dies with its handle, and a
//! temporary prefix holding the config, pid file, temp paths and logs.
//!
//! The binary is `NGINX_BIN`, else `/usr/sbin/nginx`, else `nginx` on `PATH`
//! (`scripts/install-nginx.sh` installs Debian's nginx-light).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::ports::free_port;

/// The recommended configuration, with `{{listen}}` and `{{node}}` to fill.
pub const TEMPLATE: &str = include_str!("nginx.conf.template");

/// How long nginx may take to listen before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// [`TEMPLATE`] with `listen` for `{{listen}}` and the `{{node}}` line once
/// per entry of `nodes` (each `host:port`).
pub fn render(listen: &str, nodes: &[String]) -> String {
    let mut out = String::new();
    for line in TEMPLATE.lines() {
        if line.contains("{{node}}") {
            for node in nodes {
                out.push_str(&line.replace("{{node}}", node));
                out.push('\n');
            }
        } else {
            out.push_str(&line.replace("{{listen}}", listen));
            out.push('\n');
        }
    }
    out
}

/// A running nginx proxying `/files/` round-robin to tusd-rs nodes. Killed
/// when dropped.
pub struct Nginx {
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx on a free loopback port in front of
    /// `127.0.0.1:{port}` for each of `upstreams`, and waits until it
    /// accepts connections.
    pub fn start(upstreams: &[u16]) -> Nginx {
        assert!(!upstreams.is_empty(), "nginx needs at least one upstream");
        let dir = tempfile::tempdir().expect("temporary nginx prefix");
        let port = free_port();
        let nodes: Vec<String> = upstreams.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, main_config(dir.path(), port, &nodes)).expect("writing nginx.conf");
        let child = Command::new(nginx_bin())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", nginx_bin().display()));
        let mut nginx = Nginx { child, port, dir };
        nginx.wait_listening();
        nginx
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The creation URL through nginx, `http://127.0.0.1:PORT/files/`.
    pub fn files_url(&self) -> String {
        format!("{}/files/", self.origin())
    }

    /// Everything nginx wrote to its error log (level `warn` and above).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// The access log: one line per request, `"REQUEST" STATUS upstream=ADDR
    /// upstream_status=STATUS`.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// The whole configuration file nginx runs with.
    pub fn config(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nginx.conf")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_listening(&mut self) {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "nginx exited at start ({status}); its error log:\n{}\nits config:\n{}",
                    self.error_log(),
                    self.config()
                );
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if started.elapsed() > START_TIMEOUT {
                panic!(
                    "nginx did not listen on port {} within {START_TIMEOUT:?}; its error log:\n{}",
                    self.port,
                    self.error_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test's nginx.conf: one foreground process with everything under
/// `dir`, and the rendered [`TEMPLATE`] as its http block.
fn main_config(dir: &Path, port: u16, nodes: &[String]) -> String {
    let d = dir.display();
    let mut conf = String::new();
    let _ = write!(
        conf,
        "daemon off;\n\
         master_process off;\n\
         worker_processes 1;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n\
         log_format tusd '\"$request\" $status upstream=$upstream_addr upstream_status=$upstream_status';\n\
         access_log {d}/access.log tusd;\n\
         client_body_temp_path {d}/client_body;\n\
         proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n\
         scgi_temp_path {d}/scgi;\n\
         \n"
    );
    conf.push_str(&render(&format!("127.0.0.1:{port}"), nodes));
    conf.push_str("}\n");
    conf
}

/// The nginx binary: `NGINX_BIN`, else `/usr/sbin/nginx`, else `nginx` on
/// `PATH`.
pub fn nginx_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("NGINX_BIN").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "NGINX_BIN={} does not name a file; run scripts/install-nginx.sh",
            path.display()
        );
        return path;
    }
    let system = PathBuf::from("/usr/sbin/nginx");
    if system.is_file() {
        return system;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("nginx not found: set NGINX_BIN or run scripts/install-nginx.sh (nginx-light)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_line_repeats_per_upstream_and_nothing_is_left_to_fill() {
        let nodes = ["127.0.0.1:1".to_owned(), "127.0.0.1:2".to_owned()];
        let conf = render("127.0.0.1:3", &nodes);
        assert!(!conf.contains("{{"), "{conf}");
        assert!(conf.contains("listen 127.0.0.1:3;"), "{conf}");
        for node in nodes {
            assert_eq!(
                conf.matches(&format!("server {node} ")).count(),
                1,
                "{conf}"
            );
        }
    }

    #[test]
    fn nginx_accepts_the_config_and_proxies_to_its_upstream() {
        use std::io::{Read, Write};
        // A one-shot upstream answering any request with 204.
        let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream_port = upstream.local_addr().unwrap().port();
        let answered = std::thread::spawn(move || {
            let (mut conn, _) = upstream.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                conn.read_exact(&mut byte).unwrap();
                head.push(byte[0]);
            }
            conn.write_all(b"HTTP/1.1 204 No Content\r\nX-Upstream: yes\r\n\r\n")
                .unwrap();
            String::from_utf8(head).unwrap()
        });
        let nginx = Nginx::start(&[upstream_port]);
        let mut client = std::net::TcpStream::connect(("127.0.0.1", nginx.port())).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            client,
            "HEAD /files/abc HTTP/1.1\r\nHost: uploads.example:8443\r\nForwarded: host=evil\r\n\r\n"
        )
        .unwrap();
        let mut response = [0u8; 512];
        let n = client.read(&mut response).unwrap();
        let response = String::from_utf8_lossy(&response[..n]).into_owned();
        assert!(response.starts_with("HTTP/1.1 204"), "{response}");
        assert!(response.contains("X-Upstream: yes"), "{response}");
        let seen = answered.join().unwrap().to_ascii_lowercase();
        // What tusd-rs's --behind-proxy reads, and a client's own Forwarded
        // header replaced.
        assert!(
            seen.contains("x-forwarded-host: uploads.example:8443"),
            "{seen}"
        );
        assert!(seen.contains("x-forwarded-proto: http"), "{seen}");
        assert!(
            seen.contains("forwarded: host=\"uploads.example:8443\";proto=http"),
            "{seen}"
        );
        assert!(!seen.contains("evil"), "{seen}");
        // nginx logs the request after it has sent the answer.
        let logged = (0..200).any(|_| {
            let found = nginx
                .access_log()
                .contains("\"HEAD /files/abc HTTP/1.1\" 204");
            if !found {
                std::thread::sleep(Duration::from_millis(10));
            }
            found
        });
        assert!(logged, "{}", nginx.access_log());
    }
}
