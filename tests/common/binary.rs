//! The real `numguard` binary as a server process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_numguard");

pub struct Served {
    child: Child,
    pub url: String,
    log: Arc<Mutex<Vec<String>>>,
    stdout: Arc<Mutex<Vec<String>>>,
}

/// A server left running by a failing test would outlive it; kill it instead.
impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Served {
    /// Starts `numguard serve --dev` on an ephemeral port over `database_url`.
    pub fn start(database_url: &str) -> Served {
        Served::start_with(database_url, &["--dev"])
    }

    /// Starts `numguard serve <args>` on an ephemeral port over `database_url` and reads the
    /// bound address from its log.
    pub fn start_with(database_url: &str, args: &[&str]) -> Served {
        Served::start_with_env(database_url, args, &[])
    }

    pub fn start_with_env(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Served {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .env("NUMGUARD_DATABASE_URL", database_url)
            .env("NUMGUARD_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let out_lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let out_sink = stdout.clone();
        std::thread::spawn(move || {
            for line in out_lines.map_while(Result::ok) {
                out_sink.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let addr = loop {
            let line = lines
                .next()
                .expect("serve exited before listening")
                .expect("read log");
            log.lock().unwrap().push(line.clone());
            if let Some(rest) = line.split("addr=").nth(1) {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
            }
        };
        // Keep reading the log so the child never blocks on a full pipe.
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Served {
            child,
            url: format!("http://{addr}"),
            log,
            stdout,
        }
    }

    /// What the server printed on stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("NUMGUARD_SERVER", &self.url)
            .output()
            .expect("run numguard")
    }

    /// SIGKILL: no graceful anything.
    pub fn kill_hard(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGHUP: the server re-reads its providers file.
    pub fn hang_up(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        assert!(status.success());
    }

    /// Waits until the log has a line containing `text`.
    pub fn wait_for_log(&self, text: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !self.log().contains(text) {
            assert!(
                std::time::Instant::now() < deadline,
                "no {text:?} in the log: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, and the server exits cleanly; returns its whole log.
    pub fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "serve exited with {status}");
                std::thread::sleep(Duration::from_millis(100)); // the reader drains the pipe
                return self.log.lock().unwrap().join("\n");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("serve did not stop on SIGTERM");
    }
}
