//! A `redis-server` of one test alone, on a free loopback port (never the shared one on
//! 6379): nothing kept on disk, stopped with the value. Tests use it to stop, restart
//! and pause (SIGSTOP) Redis under a running gateway or backend.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct OwnRedis {
    child: Option<Child>,
    port: u16,
}

impl OwnRedis {
    /// Starts one and waits until it answers `PING`; panics when it cannot.
    pub fn start() -> Self {
        Self::try_start().expect("redis-server (Debian package redis-server) did not start")
    }

    /// [`OwnRedis::start`], or `None` when `redis-server` is missing or does not answer
    /// (benchmarks skip Redis then).
    pub fn try_start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let mut r = Self { child: None, port };
        r.spawn().then_some(r)
    }

    /// Starts it again on the same port after [`OwnRedis::stop`]; panics when it cannot.
    pub fn restart(&mut self) {
        assert!(self.spawn(), "redis-server did not restart");
    }

    fn spawn(&mut self) -> bool {
        let Ok(child) = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        else {
            return false;
        };
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while !self.cmd("PING").starts_with("+PONG") {
            if Instant::now() > end {
                self.stop();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (its data is gone).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            self.signal("-CONT");
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        assert!(self.signal("-STOP"), "cannot pause redis-server");
    }

    /// Undoes [`OwnRedis::pause`].
    pub fn resume(&self) {
        assert!(self.signal("-CONT"), "cannot resume redis-server");
    }

    fn signal(&self, sig: &str) -> bool {
        self.child.as_ref().is_some_and(|c| {
            Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status()
                .is_ok_and(|s| s.success())
        })
    }

    /// Sends one inline command and returns the raw reply ("" when nothing answers
    /// within 500 ms).
    pub fn cmd(&self, cmd: &str) -> String {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(format!("{cmd}\r\n").as_bytes()).is_err() {
            return String::new();
        }
        let mut b = vec![0u8; 4096];
        let n = s.read(&mut b).unwrap_or(0);
        String::from_utf8_lossy(&b[..n]).into_owned()
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}
