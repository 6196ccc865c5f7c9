//! `numguard alerts tail`, the real binary against a real server: it replays from the first
//! alert, reconnects by itself across a server restart and resumes from its cursor file
//! across a restart of the tail, printing every alert once and losing none.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use numguard_testkit::process::{Served, bin, ok, stderr};
use serde_json::Value;

/// Long enough for a reconnect after backoff on a loaded machine.
const WAIT: Duration = Duration::from_secs(30);

/// A running `alerts tail --json`, its stdout and stderr read line by line.
struct Tail {
    child: Child,
    out: Receiver<String>,
    err: Receiver<String>,
}

impl Tail {
    fn start(server: &str, args: &[&str]) -> Tail {
        let mut child = Command::new(bin())
            .args(["alerts", "tail", "--json", "--server", server])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = lines(child.stdout.take().unwrap());
        let err = lines(child.stderr.take().unwrap());
        Tail { child, out, err }
    }

    /// The next alert printed, failing after [`WAIT`].
    fn next_alert(&self) -> Value {
        let line = self
            .out
            .recv_timeout(WAIT)
            .expect("an alert line within the deadline");
        serde_json::from_str(&line).unwrap()
    }

    /// Waits for a stderr line containing `text`.
    fn wait_for_err(&self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .err
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {text:?} on the tail's stderr"));
            if line.contains(text) {
                return line;
            }
        }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(pipe: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A loopback address with a port nothing listens on now.
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

fn import(served: &Served, dir: &Path, name: &str, rows: &[(&str, &str, &str)]) {
    let file = dir.join(format!("{name}.csv"));
    let mut csv = String::from("source_event_id,phone_number,kind,occurred_at\n");
    for (id, number, kind) in rows {
        csv.push_str(&format!("{id},{number},{kind},2026-06-01T00:00:00Z\n"));
    }
    std::fs::write(&file, csv).unwrap();
    let path = file.to_str().unwrap();
    ok(served.run(&["import", "events", path, "--source", "feed"]));
}

fn start(db: &str, listen: &str) -> Served {
    Served::start_listening(db, listen, &["--dev"], &[])
}

#[test]
fn tail_replays_from_the_first_alert_and_loses_nothing_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("ng.db").display());
    let listen = free_address();
    let url = format!("http://{listen}");
    let served = start(&db, &listen);
    served.add_feed("81");
    let watch = dir.path().join("watch.csv");
    std::fs::write(
        &watch,
        "customer_ref,phone_number,owner_since\n\
         c-1,+819012345678,2026-01-01\n\
         c-2,+819087654321,2026-01-01\n",
    )
    .unwrap();
    ok(served.run(&["watch", "import", watch.to_str().unwrap()]));
    import(
        &served,
        dir.path(),
        "a",
        &[("e1", "+819012345678", "SIM_SWAP")],
    );

    // The first alert ever has cursor 1 and is replayed.
    let cursor_file = dir.path().join("tail.cursor");
    let cursor_arg = cursor_file.to_str().unwrap();
    let tail = Tail::start(&url, &["--from-start", "--cursor-file", cursor_arg]);
    let first = tail.next_alert();
    assert_eq!(first["cursor"], 1);
    assert_eq!(first["source_event_id"], "e1");
    assert_eq!(first["kind"], "SIM_SWAP");
    assert_eq!(first["check"]["sim_swap"], "SWAPPED", "{first}");

    // The server goes away; the tail waits and reconnects by itself.
    served.stop();
    tail.wait_for_err("reconnecting");
    let served = start(&db, &listen);
    import(
        &served,
        dir.path(),
        "b",
        &[
            ("e2", "+819087654321", "DISCONNECT"),
            ("e3", "+817012345678", "DISCONNECT"), // not watched: no alert
            ("e4", "+819012345678", "REASSIGN"),
        ],
    );
    let after_restart: Vec<String> = (0..2)
        .map(|_| {
            tail.next_alert()["source_event_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(after_restart, ["e2", "e4"]);
    // The file moves just after the line is printed.
    let deadline = Instant::now() + WAIT;
    while std::fs::read_to_string(&cursor_file).unwrap().trim() != "4" {
        assert!(
            Instant::now() < deadline,
            "the file never held the last printed cursor"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The tail itself restarts: the file wins over --from-start, nothing repeats.
    tail.kill();
    import(
        &served,
        dir.path(),
        "c",
        &[("e5", "+819087654321", "SIM_SWAP")],
    );
    let tail = Tail::start(&url, &["--from-start", "--cursor-file", cursor_arg]);
    tail.wait_for_err("resuming after cursor 4");
    let resumed = tail.next_alert();
    assert_eq!(resumed["source_event_id"], "e5");
    assert_eq!(resumed["cursor"], 5);
    assert!(
        tail.out.recv_timeout(Duration::from_millis(500)).is_err(),
        "nothing after e5"
    );
    tail.kill();

    // A cursor this database never reached is refused, not waited for.
    let o = served.run(&["alerts", "tail", "--resume-after", "4711"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cursor 4711 is past the newest event (5)"),
        "{}",
        stderr(&o)
    );
    served.stop();
}
