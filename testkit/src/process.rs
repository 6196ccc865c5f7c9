//! The real `numguard` binary as a server process, and as a command.

use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The CPU that servers started from here are held to, once a bench has asked
/// ([`crate::bench::Load::pin`]).
static SERVER_CPU: OnceLock<usize> = OnceLock::new();

/// Holds every server started after this call to `cpu` (with `taskset`, which execs the
/// server, so its pid stays the server's).
pub fn hold_servers_to(cpu: usize) {
    let _ = SERVER_CPU.set(cpu);
}

fn server_command() -> Command {
    match SERVER_CPU.get() {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpu.to_string()).arg(bin());
            command
        }
        None => Command::new(bin()),
    }
}

/// The `numguard` binary cargo built for the running test or bench: it sits in the profile
/// directory (`target/<profile>/`) above the `deps/` directory holding this executable.
/// `NUMGUARD_SERVER_BIN` names another binary instead (to compare builds in one bench).
pub fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // A bench compares server builds by pointing this at another build's binary.
        if let Some(other) = std::env::var_os("NUMGUARD_SERVER_BIN") {
            return PathBuf::from(other);
        }
        let exe = std::env::current_exe().expect("the test executable's path");
        let profile = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test executable lies in target/<profile>/deps");
        let bin = profile.join(format!("numguard{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.exists(),
            "{} is missing: cargo builds it before integration tests and benches",
            bin.display()
        );
        bin
    })
}

pub struct Served {
    child: Child,
    /// The gRPC address, `http://host:port`.
    pub url: String,
    /// The REST facade's base URL, when started with `--rest-listen`.
    pub rest_url: Option<String>,
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

/// Reads log lines (keeping them) until one gives the address a listener bound.
fn next_addr(lines: &mut Lines<BufReader<ChildStderr>>, log: &Mutex<Vec<String>>) -> String {
    loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .expect("read log");
        log.lock().unwrap().push(line.clone());
        if let Some(rest) = line.split("addr=").nth(1) {
            return rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
        // The same line from `--log-format json`.
        if let Some(rest) = line.split("\"addr\":\"").nth(1) {
            return rest.split('"').next().unwrap_or_default().to_string();
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

    /// The same with extra environment; `NUMGUARD_LOG` defaults to `debug`, so tests can
    /// read what the server logged.
    pub fn start_with_env(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Served {
        Served::start_listening(database_url, "127.0.0.1:0", args, env)
    }

    /// The same on a given gRPC address (to restart a server where its clients look).
    pub fn start_listening(
        database_url: &str,
        listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Served {
        let mut child = server_command()
            // Tests' sinks and operators are loopback servers they start.
            .args(["serve", "--listen", listen, "--allow-loopback-sinks"])
            .args(args)
            .env("NUMGUARD_LOG", "debug")
            .env("NUMGUARD_KEY_FILE", crate::fixtures::test_key_file())
            .envs(env.iter().copied())
            .env("NUMGUARD_DATABASE_URL", database_url)
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
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        // gRPC's address is logged first, then the REST facade's.
        let addr = next_addr(&mut lines, &log);
        let rest_url = args
            .contains(&"--rest-listen")
            .then(|| format!("http://{}", next_addr(&mut lines, &log)));
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
            rest_url,
            log,
            stdout,
        }
    }

    /// Registers source `feed`, covering `prefix` since 2025-01-01, through the CLI.
    pub fn add_feed(&self, prefix: &str) {
        self.add_feed_with(prefix, &[]);
    }

    /// The same with more `sources add` options (e.g. `--max-lag 1h`).
    pub fn add_feed_with(&self, prefix: &str, options: &[&str]) {
        let mut args = vec![
            "sources",
            "add",
            "feed",
            "--tracking-since",
            "2025-01-01",
            "--covers",
            prefix,
        ];
        args.extend_from_slice(options);
        ok(self.run(&args));
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server printed on stdout so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(bin())
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

/// A command's standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A command's standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts that a command succeeded, showing what it printed if not.
pub fn ok(o: Output) -> Output {
    assert!(o.status.success(), "failed: {}\n{}", stdout(&o), stderr(&o));
    o
}

/// Asserts that a command finished but refused some of its input: exit code 3.
pub fn refused_some(o: Output) -> Output {
    assert_eq!(
        o.status.code(),
        Some(3),
        "expected exit code 3 (some input refused): {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}
