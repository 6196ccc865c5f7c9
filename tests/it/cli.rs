//! The real `numguard` binary: `serve` in a child process and the client commands
//! against it.

use std::process::{Command, Output};

use numguard_testkit::process::{Served, bin, ok, refused_some, stderr, stdout};
use numguard_testkit::{Backend, TestDb};

use chrono::{SecondsFormat, Utc};
use serde_json::Value;

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["check", "--help"],
        vec!["audit", "--help"],
        vec!["import", "--help"],
        vec!["import", "ranges", "--help"],
        vec!["import", "events", "--help"],
        vec!["sources", "--help"],
        vec!["sources", "add", "--help"],
        vec!["sources", "list", "--help"],
        vec!["sources", "update", "--help"],
        vec!["sources", "heartbeat", "--help"],
        vec!["carriers", "--help"],
        vec!["carriers", "list", "--help"],
        vec!["carriers", "show", "--help"],
        vec!["carriers", "add", "--help"],
        vec!["carriers", "alias", "--help"],
        vec!["keys", "--help"],
        vec!["keys", "create", "--help"],
        vec!["keys", "list", "--help"],
        vec!["keys", "revoke", "--help"],
        vec!["keys", "tenant", "--help"],
        vec!["access-log", "--help"],
        vec!["watch", "import", "--help"],
        vec!["watch", "list", "--help"],
        vec!["alerts", "tail", "--help"],
        vec!["upstreams", "--help"],
        vec!["upstreams", "add", "--help"],
        vec!["upstreams", "list", "--help"],
        vec!["upstreams", "remove", "--help"],
    ] {
        let o = ok(Command::new(bin()).args(&args).output().unwrap());
        assert!(stdout(&o).contains("Usage"), "{args:?}");
    }
    let serve = stdout(&ok(Command::new(bin())
        .args(["serve", "--help"])
        .output()
        .unwrap()));
    assert!(
        serve.contains("NUMGUARD_DATABASE_URL"),
        "env vars are documented"
    );
}

#[test]
fn a_tour_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(&format!("sqlite://{}", dir.path().join("ng.db").display()));

    ok(served.run(&[
        "sources",
        "add",
        "jp-feed",
        "--tracking-since",
        "2025-01-01",
        "--covers",
        "81",
    ]));
    let list = ok(served.run(&["sources", "list", "--json"]));
    let list: Value = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(list[0]["name"], "jp-feed");
    assert_eq!(list[0]["covers"][0], "81");

    let recent =
        (Utc::now() - chrono::Duration::hours(5)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let csv = dir.path().join("events.csv");
    std::fs::write(
        &csv,
        format!(
            "source_event_id,phone_number,kind,occurred_at,from_carrier,to_carrier\n\
             e1,+819012345678,PORT,2026-01-05T00:00:00Z,KDDI,NTT Docomo\n\
             e2,+819012345678,SIM_SWAP,{recent},,\n\
             e3,+819012345678,TELEPORT,2026-01-05T00:00:00Z,,\n\
             e4,+819012345678,SIM_SWAP,yesterday,,\n\
             e5,garbage,SIM_SWAP,2026-01-05T00:00:00Z,,\n\
             e6,+819012345678,PORT,2026-01-06T00:00:00Z,,\n"
        ),
    )
    .unwrap();
    let import = refused_some(served.run(&[
        "import",
        "events",
        csv.to_str().unwrap(),
        "--source",
        "jp-feed",
    ]));
    let (out, err) = (stdout(&import), stderr(&import));
    assert!(
        out.contains("6 events read; 2 accepted, 0 duplicates, 4 rejected"),
        "{out}"
    );
    for line in [
        "line 4:",
        "line 5:",
        "line 6: phone_number",
        "line 7: to_carrier",
    ] {
        assert!(err.contains(line), "missing {line:?} in {err}");
    }
    // Re-importing the same file adds nothing.
    let again = refused_some(served.run(&[
        "import",
        "events",
        csv.to_str().unwrap(),
        "--source",
        "jp-feed",
    ]));
    assert!(
        stdout(&again).contains("0 accepted, 2 duplicates"),
        "{}",
        stdout(&again)
    );

    let jsonl = dir.path().join("events.jsonl");
    std::fs::write(
        &jsonl,
        "{\"source_event_id\":\"j1\",\"phone_number\":\"+818012345678\",\"kind\":\"DISCONNECT\",\"occurred_at\":\"2026-02-01T00:00:00Z\"}\n\
         \n\
         {not json}\n",
    )
    .unwrap();
    let import = refused_some(served.run(&[
        "import",
        "events",
        jsonl.to_str().unwrap(),
        "--source",
        "jp-feed",
    ]));
    assert!(
        stdout(&import).contains("2 events read; 1 accepted"),
        "{}",
        stdout(&import)
    );
    assert!(stderr(&import).contains("line 3:"));

    let check = ok(served.run(&["check", "090-1234-5678", "--region", "JP", "--json"]));
    let r: Value = serde_json::from_str(&stdout(&check)).unwrap();
    assert_eq!(r["phone_number"], "+819012345678");
    assert_eq!(r["verdict"], "STEP_UP");
    assert_eq!(r["sim_swap"], "SWAPPED");
    assert_eq!(r["current_carrier"]["name"], "NTT docomo");
    assert_eq!(r["port_count"], 1);
    assert_eq!(r["reasons"][0]["code"], "SIM_SWAPPED");
    assert_eq!(r["upstream"], serde_json::json!([]));

    let check = ok(served.run(&["check", "+818012345678", "--owner-since", "2026-01-01"]));
    let text = stdout(&check);
    assert!(text.starts_with("+818012345678  BLOCK"), "{text}");
    assert!(text.contains("OWNER_CHANGED"), "{text}");

    let bad = served.run(&["check", "+81901234", "--json"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("phone_number"), "{}", stderr(&bad));

    let ranges = dir.path().join("ranges.txt");
    std::fs::write(
        &ranges,
        "# test ranges\n8190123|Example Mobile\nnot a range\n8190124|Unheard Of Telecom\n",
    )
    .unwrap();
    // A carrier the registry does not know is refused, naming it; the rest is imported.
    let import = refused_some(served.run(&["import", "ranges", ranges.to_str().unwrap()]));
    assert!(
        stdout(&import).contains("0 ranges imported, 1 bad lines, 2 refused by the server"),
        "{}",
        stdout(&import)
    );
    ok(served.run(&[
        "carriers",
        "add",
        "jp-example",
        "--name",
        "Example Mobile",
        "--country-code",
        "81",
        "--mcc-mnc",
        "44099",
    ]));
    let import = refused_some(served.run(&["import", "ranges", ranges.to_str().unwrap()]));
    assert!(
        stdout(&import).contains("1 ranges imported, 1 bad lines, 1 refused by the server"),
        "{}",
        stdout(&import)
    );
    let err = stderr(&import);
    assert!(err.contains("line 3:"), "{err}");
    assert!(
        err.contains("line 4: carrier \"Unheard Of Telecom\" is not a known carrier name"),
        "{err}"
    );
    // Aliases join spellings: the feed's name now means the same carrier.
    ok(served.run(&["carriers", "alias", "jp-example", "Unheard Of Telecom"]));
    let shown = stdout(&ok(served.run(&[
        "carriers",
        "show",
        "jp-example",
        "--json",
    ])));
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["aliases"][0], "Unheard Of Telecom");
    assert_eq!(shown["mcc_mnc"][0], "44099");
    let import = refused_some(served.run(&["import", "ranges", ranges.to_str().unwrap()]));
    assert!(
        stdout(&import).contains("2 ranges imported"),
        "{}",
        stdout(&import)
    );
    let listed = stdout(&ok(served.run(&[
        "carriers",
        "list",
        "--country-code",
        "81",
    ])));
    assert!(
        listed.contains("jp-docomo: NTT docomo (+81), MCC-MNC 44010"),
        "{listed}"
    );
    let check = ok(served.run(&["check", "+819012345678", "--json"]));
    let r: Value = serde_json::from_str(&stdout(&check)).unwrap();
    assert_eq!(r["original_carrier"]["name"], "Example Mobile");
    assert_eq!(r["original_carrier"]["id"], "jp-example");

    // Phone numbers are personal data: the server's debug log never shows one in full.
    let log = served.stop();
    assert!(
        log.contains("ingest stream done"),
        "the log was captured: {log}"
    );
    assert!(log.contains("shutdown requested"));
    for number in ["819012345678", "818012345678", "09012345678", "8190123"] {
        assert!(!log.contains(number), "{number} appears in the log:\n{log}");
    }
}

#[test]
fn client_commands_fail_clearly_without_a_server() {
    let o = Command::new(bin())
        .args(["check", "+819012345678", "--server", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot reach numguard"),
        "{}",
        stderr(&o)
    );
}

/// A served binary on a fresh SQLite file in `dir`, with source `feed` covering +81
/// since 2025-01-01.
fn served_with_feed(dir: &std::path::Path) -> Served {
    let served = Served::start(&format!("sqlite://{}", dir.join("ng.db").display()));
    served.add_feed("81");
    served
}

/// Runs `numguard args` against `served` with `input` on stdin.
fn run_with_stdin(served: &Served, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(args)
        .env("NUMGUARD_SERVER", &served.url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `-` is stdin for every file a command reads and stdout for the audit report.
#[test]
fn a_dash_means_stdin_or_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let served = served_with_feed(dir.path());
    for (args, input, said) in [
        (
            &["import", "events", "-", "--source", "feed"][..],
            "source_event_id,phone_number,kind,occurred_at\ne1,+819012345678,DISCONNECT,2026-01-05T00:00:00Z\n",
            "1 accepted",
        ),
        (
            &["watch", "import", "-"],
            "customer_ref,phone_number,owner_since\nc1,+819012345678,2025-06-01\n",
            "1 entries watched",
        ),
        (
            &["import", "ranges", "-"],
            "8190555|NTT docomo\n",
            "1 ranges imported",
        ),
    ] {
        let done = ok(run_with_stdin(&served, args, input));
        assert!(stdout(&done).contains(said), "{args:?}: {}", stdout(&done));
    }
    let audit = ok(run_with_stdin(
        &served,
        &["audit", "--input", "-", "--output", "-"],
        "customer_ref,phone_number,owner_since\nc1,+819012345678,2025-06-01\n",
    ));
    let report = stdout(&audit);
    assert!(
        report.starts_with("line,customer_ref,"),
        "the report on stdout: {report}"
    );
    assert!(
        report.contains("c1,") && report.contains("BLOCK"),
        "{report}"
    );
    assert!(
        stderr(&audit).contains("- -> - in") && !report.contains("rows/s"),
        "the summary on stderr: {}",
        stderr(&audit)
    );
    served.stop();
}

/// Shell completions that bash accepts and that offer the subcommands, and a man page.
#[test]
fn completions_and_a_man_page_are_generated() {
    let bash = stdout(&ok(Command::new(bin())
        .args(["completions", "bash"])
        .output()
        .unwrap()));
    assert!(bash.contains("complete -F _numguard"), "{bash}");
    for command in ["serve", "check", "audit", "keys", "completions"] {
        assert!(bash.contains(command), "{command} is not offered");
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("numguard.bash");
    std::fs::write(&script, &bash).unwrap();
    ok(Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap());
    for shell in ["zsh", "fish"] {
        let o = ok(Command::new(bin())
            .args(["completions", shell])
            .output()
            .unwrap());
        assert!(stdout(&o).contains("numguard"), "{shell}");
    }
    let man = stdout(&ok(Command::new(bin()).arg("man").output().unwrap()));
    assert!(man.contains(".TH numguard 1"), "{man}");
    assert!(man.contains("serve"), "{man}");
}

/// A PostgreSQL database that does not exist is named once, with the command that makes
/// it.
#[test]
fn a_missing_postgres_database_is_named_with_the_command_that_makes_it() {
    let name = format!("numguard_missing_{:08x}", rand::random::<u32>());
    let url =
        numguard_testkit::db::with_database(&numguard_testkit::db::postgres_admin_url(), &name);
    let o = Command::new(bin())
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .env("NUMGUARD_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.matches("does not exist").count(), 1, "{err}");
    assert!(
        err.contains("createdb -h ") && err.contains(&format!(" {name}")),
        "{err}"
    );
}

/// `--version` names the commit the binary was built from, and its date.
#[test]
fn the_version_names_its_commit() {
    let printed = stdout(&ok(Command::new(bin()).arg("--version").output().unwrap()));
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let head = String::from_utf8(head.stdout).unwrap();
    assert!(
        printed.starts_with(&format!("numguard {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{printed}"
    );
    // Built from this checkout (the commit it had when built; tests build after it).
    assert!(printed.contains(head.trim()), "{printed} vs HEAD {head}");
}

/// `keys` and `access-log` work on an existing database only: run elsewhere, they say
/// which file they looked for instead of creating an empty one and finding no keys.
#[test]
fn database_commands_refuse_a_database_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["keys", "list"],
        vec!["keys", "create", "--tenant", "acme", "--scopes", "check"],
        vec!["access-log", "+819012345678"],
    ] {
        let o = Command::new(bin())
            .args(&args)
            .current_dir(dir.path())
            .env_remove("NUMGUARD_DATABASE_URL")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stdout(&o));
        let err = stderr(&o);
        assert!(
            err.contains("no database at numguard.db") && err.contains("--database-url"),
            "{args:?}: {err}"
        );
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "{args:?} created a file"
        );
    }
    // Asked to, `keys create` makes the database for the first key.
    let made = ok(Command::new(bin())
        .args([
            "keys", "create", "--tenant", "acme", "--scopes", "check", "--init",
        ])
        .current_dir(dir.path())
        .env_remove("NUMGUARD_DATABASE_URL")
        .output()
        .unwrap());
    assert!(
        stdout(&made)
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("ng_")
    );
    assert!(
        stderr(&made).contains("database: numguard.db"),
        "{}",
        stderr(&made)
    );
    let listed = ok(Command::new(bin())
        .args(["keys", "list"])
        .current_dir(dir.path())
        .env_remove("NUMGUARD_DATABASE_URL")
        .output()
        .unwrap());
    assert!(stdout(&listed).contains("acme"), "{}", stdout(&listed));
}

#[test]
fn first_start_prints_one_key_and_keys_are_managed_on_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("ng.db").display());
    let served = Served::start_with(&db, &[]);
    // The key is printed right before the server listens; the reader thread may lag.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while served.stdout().len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let printed = served.stdout();
    assert!(
        printed[0].starts_with("First start: created an API key"),
        "{printed:?}"
    );
    let first_key = printed[1].clone();
    assert!(first_key.starts_with("ng_"));

    let anonymous = served.run(&["check", "+819012345678"]);
    assert!(!anonymous.status.success());
    assert!(
        stderr(&anonymous).contains("Unauthenticated") || stderr(&anonymous).contains("API key"),
        "{}",
        stderr(&anonymous)
    );
    ok(served.run(&["check", "+819012345678", "--api-key", &first_key]));

    // An operator makes a check-only key for a tenant, directly on the database.
    let created = ok(Command::new(bin())
        .args([
            "keys",
            "create",
            "--tenant",
            "acme",
            "--scopes",
            "check",
            "--json",
            "--database-url",
            &db,
        ])
        .output()
        .unwrap());
    let created: Value = serde_json::from_str(stdout(&created).trim()).unwrap();
    let acme_key = created["key"].as_str().unwrap().to_string();
    ok(served.run(&["check", "+819012345678", "--api-key", &acme_key]));
    let denied = served.run(&["sources", "list", "--api-key", &acme_key]);
    assert!(
        stderr(&denied).contains("PermissionDenied") || stderr(&denied).contains("scope"),
        "{}",
        stderr(&denied)
    );

    let listed = ok(Command::new(bin())
        .args(["keys", "list", "--json", "--database-url", &db])
        .output()
        .unwrap());
    let listed: Value = serde_json::from_str(&stdout(&listed)).unwrap();
    let tenants: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, vec!["acme", "default"]);
    assert!(
        !stdout(&ok(Command::new(bin())
            .args(["keys", "list", "--database-url", &db])
            .output()
            .unwrap()))
        .contains(&acme_key[20..]),
        "list never shows secrets"
    );

    // Who checked the number: both tenants.
    let log = served.stop();
    assert!(
        !log.contains(&first_key) && !log.contains(&acme_key),
        "keys never reach the log"
    );
    let who = ok(Command::new(bin())
        .args([
            "access-log",
            "090-1234-5678",
            "--region",
            "JP",
            "--json",
            "--database-url",
            &db,
        ])
        .env("NUMGUARD_KEY_FILE", numguard_testkit::test_key_file())
        .output()
        .unwrap());
    let who: Value = serde_json::from_str(&stdout(&who)).unwrap();
    let mut tenants: Vec<&str> = who
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tenant"].as_str().unwrap())
        .collect();
    tenants.sort();
    assert_eq!(tenants, vec!["acme", "default"]);

    // A second start prints no key.
    let again = Served::start_with(&db, &[]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(again.stdout().is_empty());
    again.stop();
}

#[test]
fn dev_mode_only_listens_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(bin())
        .args(["serve", "--dev", "--listen", "0.0.0.0:0"])
        .env(
            "NUMGUARD_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("ng.db").display()),
        )
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("loopback"), "{}", stderr(&o));
}

/// The SQLite database holds watchlists, sink tokens and the access log's pepper: it and
/// its -wal and -shm files are created for the server's user alone, and a database file
/// that others can read is named in a warning at start.
#[cfg(unix)]
#[test]
fn the_database_files_are_private_and_a_shared_one_is_named() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ng.db");
    let served = Served::start(&format!("sqlite://{}", db.display()));
    ok(served.run(&["check", "+819012345678"]));
    for name in ["ng.db", "ng.db-wal", "ng.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{name} has mode {:o}", mode & 0o777);
    }
    served.stop();

    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let again = Served::start(&format!("sqlite://{}", db.display()));
    again.wait_for_log("the database file is readable by other users");
    ok(again.run(&["check", "+819012345678"])); // serving, so SIGTERM is handled
    again.stop();

    // With --group-readable the server's group may read the files too, and only a file
    // that others can read is named.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ng.db");
    let url = format!("sqlite://{}", db.display());
    let grouped = Served::start_with(&url, &["--dev", "--group-readable"]);
    ok(grouped.run(&["check", "+819012345678"]));
    for name in ["ng.db", "ng.db-wal", "ng.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0o040, "{name} has mode {:o}", mode & 0o777);
    }
    let log = grouped.stop();
    assert!(!log.contains("readable by other users"), "{log}");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let again = Served::start_with(&url, &["--dev", "--group-readable"]);
    again.wait_for_log("the database file is readable by other users");
    ok(again.run(&["check", "+819012345678"]));
    again.stop();
}

/// Writes everything in the WAL into the main file, so that damage there is damage to the
/// data.
async fn checkpoint(url: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

/// The pages SQLite keeps `name` (a table or index) on.
async fn pages_of(url: &str, name: &str) -> Vec<i64> {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
    let pages = sqlx::query_scalar("SELECT pageno FROM dbstat WHERE name = ? ORDER BY pageno")
        .bind(name)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    pages
}

/// Overwrites 4 KiB pages (numbered from 1) of the file with junk.
fn damage_pages(db: &std::path::Path, pages: &[i64]) {
    let mut bytes = std::fs::read(db).unwrap();
    for &page in pages {
        let at = usize::try_from(page - 1).unwrap() * 4096;
        bytes[at..at + 4096].fill(0x5a);
    }
    std::fs::write(db, &bytes).unwrap();
}

/// Runs `numguard serve` over `url` until it exits (it should refuse to start).
fn refused_serve(url: &str, extra: &[&str]) -> String {
    let refused = Command::new(bin())
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("NUMGUARD_DATABASE_URL", url)
        .env("NUMGUARD_KEY_FILE", numguard_testkit::test_key_file())
        .output()
        .unwrap();
    assert!(!refused.status.success(), "{extra:?} served");
    stderr(&refused)
}

/// A SQLite file damaged where the start reads nothing (an index of the events) is served
/// from at once, and the integrity check in the background finds the damage: from then on
/// checks answer UNAVAILABLE and the server says why. Checked before serving
/// (`--integrity-check-before-serving`), the same file refuses to start; skipped, the
/// damage shows only where a read meets it, a check's history read among them.
#[tokio::test]
async fn a_damaged_database_file_is_found_after_or_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ng.db");
    let url = format!("sqlite://{}", db.display());
    let served = served_with_feed(dir.path());
    // Enough events that their time index spans many pages.
    let mut events = String::from("source_event_id,phone_number,kind,occurred_at\n");
    for i in 0..20_000 {
        events.push_str(&format!(
            "e{i},+8190{:08},SIM_SWAP,2026-01-05T00:00:00Z\n",
            10_000_000 + i
        ));
    }
    let file = dir.path().join("events.csv");
    std::fs::write(&file, events).unwrap();
    ok(served.run(&[
        "import",
        "events",
        file.to_str().unwrap(),
        "--source",
        "feed",
    ]));
    served.stop();
    checkpoint(&url).await;
    let index = pages_of(&url, "events_by_time").await;
    assert!(index.len() > 20, "the index has {} pages", index.len());
    damage_pages(&db, &index[index.len() / 2..index.len() / 2 + 4]);

    let served = Served::start(&url);
    served.wait_for_log("the database file's integrity check failed");
    assert!(
        served.log().contains("in database main"),
        "{}",
        served.log()
    );
    let refused = served.run(&["check", "+819012345678"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("unavailable"),
        "{}",
        stderr(&refused)
    );
    served.stop();

    let refused = refused_serve(&url, &["--integrity-check-before-serving"]);
    assert!(
        refused.contains("damaged") && refused.contains("in database main"),
        "{refused}"
    );

    // Skipped, nothing reads the damaged index, so checks are answered.
    let skipped = Served::start_with(&url, &["--dev", "--skip-integrity-check"]);
    ok(skipped.run(&["check", "+819012345678"]));
    let log = skipped.stop();
    assert!(!log.contains("integrity check"), "the check ran: {log}");

    // Damage in the index a check reads its history through is met by the check itself
    // (SQLite history reads go around sqlx, and are classed the same way).
    damage_pages(&db, &pages_of(&url, "events_by_number").await);
    let skipped = Served::start_with(&url, &["--dev", "--skip-integrity-check"]);
    let refused = skipped.run(&["check", "+819010010000"]);
    assert!(
        stderr(&refused).contains("unavailable"),
        "{}",
        stderr(&refused)
    );
    skipped.wait_for_log("malformed");
    skipped.stop();
}

/// Damage where the start reads (the shipped ranges) refuses the start even with the
/// integrity check skipped, naming what SQLite found.
#[tokio::test]
async fn a_damaged_database_file_is_refused_where_the_start_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ng.db");
    let url = format!("sqlite://{}", db.display());
    let served = Served::start(&url);
    ok(served.run(&["check", "+819012345678"]));
    served.stop();
    checkpoint(&url).await;
    let ranges = pages_of(&url, "carrier_ranges").await;
    assert!(ranges.len() > 8, "the ranges fill {} pages", ranges.len());
    damage_pages(&db, &ranges[ranges.len() / 2..ranges.len() / 2 + 8]);

    let skipped = refused_serve(&url, &["--skip-integrity-check"]);
    assert!(skipped.contains("malformed"), "{skipped}");
    assert!(
        !skipped.contains("in database main"),
        "the check ran: {skipped}"
    );
}

/// `serve` with its settings in layers: the file, then the environment, then flags.
#[test]
fn settings_come_from_a_file_then_the_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("numguard.toml");
    std::fs::write(
        &file,
        "[engine]\ncache_capacity = 7\ndate_zone = \"+09:00\"\n\n[limits]\nmax_in_flight = 10\nrate_limit = 5.0\n",
    )
    .unwrap();
    let printed = stdout(&ok(Command::new(bin())
        .args(["serve", "--print-config", "--max-in-flight", "30"])
        .env("NUMGUARD_CONFIG", &file)
        .env("NUMGUARD_MAX_IN_FLIGHT", "20")
        .env("NUMGUARD_RATE_LIMIT", "6")
        .output()
        .unwrap()));
    let settings: toml::Table = printed.parse().expect("--print-config prints TOML");
    let engine = &settings["engine"];
    assert_eq!(
        engine["cache_capacity"].as_integer(),
        Some(7),
        "from the file"
    );
    assert_eq!(
        engine["date_zone"].as_str(),
        Some("+09:00"),
        "from the file"
    );
    let limits = &settings["limits"];
    assert_eq!(
        limits["rate_limit"].as_float(),
        Some(6.0),
        "the environment over the file"
    );
    assert_eq!(
        limits["max_in_flight"].as_integer(),
        Some(30),
        "a flag over both"
    );
    assert_eq!(
        settings["server"]["listen"].as_str(),
        Some("127.0.0.1:50051"),
        "a default where nobody said otherwise"
    );
    // What was printed is a settings file that reads back the same.
    let again = dir.path().join("printed.toml");
    std::fs::write(&again, &printed).unwrap();
    let reread = stdout(&ok(Command::new(bin())
        .args(["serve", "--print-config", "--config"])
        .arg(&again)
        .output()
        .unwrap()));
    assert_eq!(reread, printed);

    // Boolean variables read the usual spellings; anything else is refused by name.
    for (value, dev) in [
        ("1", true),
        ("yes", true),
        ("on", true),
        ("0", false),
        ("no", false),
    ] {
        let printed = stdout(&ok(Command::new(bin())
            .args(["serve", "--print-config", "--config", "/dev/null"])
            .env("NUMGUARD_DEV", value)
            .env("NUMGUARD_GROUP_READABLE", value)
            .output()
            .unwrap()));
        let settings: toml::Table = printed.parse().unwrap();
        assert_eq!(settings["server"]["dev"].as_bool(), Some(dev), "{value}");
        assert_eq!(
            settings["database"]["group_readable"].as_bool(),
            Some(dev),
            "{value}"
        );
    }
    let refused = Command::new(bin())
        .args(["serve", "--print-config", "--config", "/dev/null"])
        .env("NUMGUARD_DEV", "maybe")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("NUMGUARD_DEV") || stderr(&refused).contains("--dev"));

    // A misspelt key, a bad value in the environment and a zero flag are refused, by name.
    std::fs::write(&file, "[limits]\nmax_in_fligth = 10\n").unwrap();
    for (extra, env, expected) in [
        (vec![], None, "max_in_fligth"),
        (
            vec!["--config", "/dev/null"],
            Some(("NUMGUARD_RATE_BURST", "0.5")),
            "limits.rate_burst must be at least 1",
        ),
        (
            vec!["--config", "/dev/null", "--max-in-flight", "0"],
            None,
            "limits.max_in_flight must be at least 1",
        ),
        (
            vec!["--config", "/dev/null", "--ingest-batch-size", "0"],
            None,
            "engine.ingest_batch_size",
        ),
    ] {
        let mut command = Command::new(bin());
        command
            .args(["serve", "--print-config"])
            .args(&extra)
            .env("NUMGUARD_CONFIG", &file);
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        let o = command.output().unwrap();
        assert!(!o.status.success(), "{extra:?} was accepted");
        assert!(stderr(&o).contains(expected), "{extra:?}: {}", stderr(&o));
    }
}

#[test]
fn watching_numbers_and_tailing_alerts_from_the_cli() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let served = served_with_feed(dir.path());
    let csv = dir.path().join("customers.csv");
    std::fs::write(
        &csv,
        "customer_ref,phone_number,owner_since,region\n\
         c-1,+819012345678,2026-01-01,\n\
         c-2,080-1234-5678,2026-01-01T09:00:00+09:00,JP\n\
         c-3,+819011112222,last year,\n\
         c-4,garbage,2026-01-01,\n\
         c-5\n",
    )
    .unwrap();
    let import = refused_some(served.run(&["watch", "import", csv.to_str().unwrap()]));
    assert!(
        stdout(&import).contains("2 entries watched, 3 bad lines"),
        "{}",
        stdout(&import)
    );
    let err = stderr(&import);
    for line in ["line 4: owner_since", "line 5: phone_number", "line 6:"] {
        assert!(err.contains(line), "missing {line:?} in {err}");
    }
    let listed = ok(served.run(&["watch", "list", "--json"]));
    let listed: Value = serde_json::from_str(&stdout(&listed)).unwrap();
    assert_eq!(listed[1]["phone_number"], "+818012345678");
    assert_eq!(listed[0]["owner_since_date"], "2026-01-01");

    let mut tail = Command::new(bin())
        .args([
            "alerts",
            "tail",
            "--json",
            "--from-start",
            "--server",
            &served.url,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(tail.stdout.take().unwrap()).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let events = dir.path().join("events.csv");
    let recent =
        (Utc::now() - chrono::Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    std::fs::write(
        &events,
        format!(
            "source_event_id,phone_number,kind,occurred_at,from_carrier,to_carrier\n\
             e1,+818012345678,PORT,{recent},KDDI,Softbank\n\
             e2,+817012345678,SIM_SWAP,{recent},,\n"
        ),
    )
    .unwrap();
    ok(served.run(&[
        "import",
        "events",
        events.to_str().unwrap(),
        "--source",
        "feed",
    ]));
    let line = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("an alert line");
    let alert: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(alert["customer_refs"][0], "c-2");
    assert_eq!(alert["kind"], "PORT");
    assert_eq!(alert["verdict"], "STEP_UP");
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(1500))
            .is_err(),
        "the unwatched number made no alert"
    );
    let _ = tail.kill();
    let _ = tail.wait();
    served.stop();
}

#[tokio::test]
async fn serve_with_rest_listen_answers_camara_requests_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("ng.db").display());
    let served = Served::start_with(&db, &["--dev", "--rest-listen", "127.0.0.1:0"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let rest_addr = loop {
        let log = served.log();
        if let Some(line) = log.lines().find(|l| l.contains("REST facade serving")) {
            let addr = line.split("addr=").nth(1).unwrap_or_default();
            break addr
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no REST listener: {log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let response = reqwest::Client::new()
        .post(format!("http://{rest_addr}/sim-swap/v2/check"))
        .header("x-correlator", "cli-1")
        .json(&serde_json::json!({ "phoneNumber": "+819012345678" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-correlator"], "cli-1");
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    numguard_testkit::camara::assert_camara_answer("POST", "/sim-swap/v2/check", status, &body);
    // A fresh database has ranges but no event source.
    assert_eq!(body["code"], "IDENTIFIER_NOT_FOUND", "{body}");
    let log = served.stop();
    assert!(!log.contains("9012345678"), "the log holds no number");
}

// Two workers: the fake operator must answer while the test blocks on a child process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_are_managed_in_a_file_that_serve_uses_and_audits_count_the_look_ups() {
    let operator = numguard_testkit::operator::Operator::start().await;
    operator.swapped("+819011110001");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upstreams.toml");
    let file_arg = file.to_str().unwrap();
    let upstreams = |args: &[&str]| {
        Command::new(bin())
            .args(["upstreams", "--file", file_arg])
            .args(args)
            .output()
            .unwrap()
    };
    ok(upstreams(&[
        "add",
        "spare",
        "--carrier",
        "Other",
        "--base-url",
        "https://op.example",
        "--token",
        "t0k3n",
    ]));
    let listed = stdout(&ok(upstreams(&["list", "--json"])));
    assert!(listed.contains("\"spare\""), "{listed}");
    assert!(
        !listed.contains(numguard_testkit::operator::CLIENT_SECRET) && !listed.contains("t0k3n")
    );
    ok(upstreams(&["remove", "spare"]));
    assert!(!upstreams(&["remove", "spare"]).status.success());
    let refused = upstreams(&[
        "add",
        "plain",
        "--carrier",
        "X",
        "--base-url",
        "http://op.example",
        "--token",
        "t",
    ]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("base_url"),
        "{}",
        stderr(&refused)
    );

    let db = format!("sqlite://{}", dir.path().join("ng.db").display());
    let served = Served::start_with(&db, &["--dev", "--upstreams-file", file_arg]);
    let ranges = dir.path().join("ranges.txt");
    std::fs::write(&ranges, "81901111|Alpha Mobile\n").unwrap();
    ok(served.run(&[
        "carriers",
        "add",
        "jp-alpha",
        "--name",
        "Alpha Mobile",
        "--country-code",
        "81",
    ]));
    ok(served.run(&["import", "ranges", ranges.to_str().unwrap()]));
    // No provider for Alpha Mobile yet: no look-up.
    let before = ok(served.run(&["check", "+819011110001", "--json"]));
    assert!(stdout(&before).contains("NO_DATA"), "{}", stdout(&before));
    assert_eq!(operator.calls(), 0);
    // Added while the server runs, and applied on SIGHUP.
    ok(upstreams(&[
        "add",
        "alpha-op",
        "--carrier",
        "Alpha Mobile",
        "--base-url",
        &operator.base_url(),
        "--token-url",
        &operator.token_url(),
        "--client-id",
        numguard_testkit::operator::CLIENT_ID,
        "--client-secret",
        numguard_testkit::operator::CLIENT_SECRET,
        "--max-concurrency",
        "2",
    ]));
    served.hang_up();
    served.wait_for_log("providers reloaded");
    let listed = stdout(&ok(upstreams(&["list"])));
    assert!(listed.starts_with("alpha-op\tAlpha Mobile"), "{listed}");
    // Ten rows over four numbers, none covered by a source: four calls, six cache hits.
    let mut list = String::from("customer_ref,phone_number\n");
    for i in 0..10 {
        list.push_str(&format!("c{i},+81901111000{}\n", i % 4));
    }
    let input = dir.path().join("list.csv");
    let report = dir.path().join("report.csv");
    std::fs::write(&input, list).unwrap();
    let run = ok(served.run(&[
        "audit",
        "--input",
        input.to_str().unwrap(),
        "--output",
        report.to_str().unwrap(),
        "--json",
    ]));
    let summary: Value = serde_json::from_str(stdout(&run).trim()).unwrap();
    assert_eq!(summary["upstream"]["calls"], 4, "{summary}");
    assert_eq!(summary["upstream"]["cache_hits"], 6, "{summary}");
    assert_eq!(summary["upstream"]["failures"], 0, "{summary}");
    assert_eq!(
        summary["verdicts"]["STEP_UP"], 3,
        "c1, c5, c9: swapped per the operator"
    );
    assert_eq!(operator.calls(), 4);
    let report = std::fs::read_to_string(&report).unwrap();
    assert!(report.contains("UPSTREAM"), "{report}");
    served.stop();
}

/// The README's operator examples through the CLI, on both backends: a porting database, a
/// carrier's feed, a disconnect database and a daily file, and their freshness.
#[test]
fn scoped_sources_and_freshness_through_the_cli() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let db = runtime.block_on(TestDb::new(backend));
        scoped_sources_and_freshness(&db.url);
    }
}

fn json_of(o: Output) -> Value {
    serde_json::from_str(&stdout(&ok(o))).unwrap()
}

fn scoped_sources_and_freshness(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(url);
    let add = |args: &[&str]| {
        let mut all = vec!["sources", "add"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--tracking-since", "2025-01-01"]);
        ok(served.run(&all))
    };
    add(&["mnp-db", "--scope", "81::PORT"]);
    add(&[
        "docomo-feed",
        "--scope",
        "81:株式会社ＮＴＴドコモ:SIM_SWAP,DISCONNECT,REASSIGN,DEVICE_SWAP",
        "--max-lag",
        "3s",
    ]);
    add(&["fcc-rnd", "--scope", "1::DISCONNECT"]);
    let listed = stdout(&ok(served.run(&["sources", "list"])));
    assert!(
        listed.contains("docomo-feed: tracking since 2025-01-01T00:00:00Z; sees 81 (jp-docomo; SIM_SWAP,DISCONNECT,REASSIGN,DEVICE_SWAP); live (max lag 3s), never heard from"),
        "{listed}"
    );
    for name in ["mnp-db", "docomo-feed", "fcc-rnd"] {
        let beat = stdout(&ok(served.run(&["sources", "heartbeat", name])));
        assert!(beat.contains("fresh"), "{beat}");
    }

    // docomo's subscriber is answered; SoftBank's is UNKNOWN, and the gap says why.
    let docomo = json_of(served.run(&["check", "+817010012345", "--json"]));
    assert_eq!(docomo["sim_swap"], "NOT_SWAPPED", "{docomo}");
    assert_eq!(docomo["coverage"][0]["sources"][0], "docomo-feed");
    assert_eq!(docomo["current_carrier"]["id"], "jp-docomo");
    let softbank = stdout(&ok(served.run(&["check", "+817011012345"])));
    assert!(softbank.contains("sim swap:      UNKNOWN"), "{softbank}");
    assert!(
        softbank.contains(
            "gap: sim_swap: no source reports SIM_SWAP or REASSIGN for subscribers of SoftBank (jp-softbank)"
        ),
        "{softbank}"
    );
    assert!(
        softbank.contains("SoftBank [jp-softbank] (original)"),
        "{softbank}"
    );

    // A disconnect database: ownership, never SIM swap.
    let us = json_of(served.run(&[
        "check",
        "+12015550123",
        "--owner-since",
        "2026-01-01",
        "--json",
    ]));
    assert_eq!(us["ownership"], "UNCHANGED", "{us}");
    assert_eq!(us["sim_swap"], "UNKNOWN", "{us}");

    // Ported from docomo to SoftBank a month ago: docomo's feed sees it only until then.
    let month_ago =
        (Utc::now() - chrono::Duration::days(30)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let ports = dir.path().join("ports.csv");
    std::fs::write(
        &ports,
        format!(
            "source_event_id,phone_number,kind,occurred_at,from_carrier,to_carrier\n\
             p1,+817010012345,PORT,{month_ago},NTT Docomo,ソフトバンク株式会社\n"
        ),
    )
    .unwrap();
    ok(served.run(&[
        "import",
        "events",
        ports.to_str().unwrap(),
        "--source",
        "mnp-db",
    ]));
    let ported =
        json_of(served.run(&["check", "+817010012345", "--max-age-hours", "24", "--json"]));
    assert_eq!(ported["sim_swap"], "UNKNOWN", "{ported}");
    assert_eq!(ported["current_carrier"]["id"], "jp-softbank");

    // docomo's feed falls silent: stale after its max lag, logged once, back with a heartbeat.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let listed = stdout(&ok(served.run(&["sources", "list"])));
        if listed.contains("docomo-feed") && listed.contains("live, STALE (max lag 3s)") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never stale: {listed}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let stale = stdout(&ok(served.run(&["check", "+817010099999"])));
    assert!(stale.contains("FEED_STALE"), "{stale}");
    served.wait_for_log("source went stale");
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    let warned = served
        .log()
        .lines()
        .filter(|l| l.contains("source went stale") && l.contains("docomo-feed"))
        .count();
    assert_eq!(warned, 1, "logged once");
    ok(served.run(&["sources", "heartbeat", "docomo-feed"]));
    let fresh = json_of(served.run(&["check", "+817010099999", "--json"]));
    assert_eq!(fresh["sim_swap"], "NOT_SWAPPED", "{fresh}");

    // A daily file: bounded by the cut-off its import declares.
    add(&["daily", "--scope", "8190:KDDI", "--files"]);
    let cut_off =
        (Utc::now() - chrono::Duration::hours(6)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let three_days_ago =
        (Utc::now() - chrono::Duration::days(3)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let daily = dir.path().join("daily.csv");
    std::fs::write(
        &daily,
        format!(
            "source_event_id,phone_number,kind,occurred_at,from_carrier,to_carrier\n\
             s1,+819012345678,SIM_SWAP,{three_days_ago},,\n"
        ),
    )
    .unwrap();
    let import = stdout(&ok(served.run(&[
        "import",
        "events",
        daily.to_str().unwrap(),
        "--source",
        "daily",
        "--complete-until",
        &cut_off,
    ])));
    assert!(import.contains("fed by files, complete until"), "{import}");
    let kddi = json_of(served.run(&["check", "+819012345678", "--max-age-hours", "24", "--json"]));
    assert_eq!(kddi["reasons"][0]["code"], "FEED_STALE", "{kddi}");
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "source_event_id,phone_number,kind,occurred_at,from_carrier,to_carrier\n\
         s2,garbage,SIM_SWAP,2026-01-01T00:00:00Z,,\n",
    )
    .unwrap();
    let refused = served.run(&[
        "import",
        "events",
        bad.to_str().unwrap(),
        "--source",
        "daily",
        "--complete-until",
        &Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
    ]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("was not declared complete"),
        "{}",
        stderr(&refused)
    );
    served.stop();
}

/// Writes `lines` with a header: a good row, a 5 MB field, a quote left open, a 2 KB
/// field, bytes that are not UTF-8, and a good row, each built by `row` from its text.
fn hostile_file(path: &std::path::Path, header: &str, row: impl Fn(&str, &str) -> String) {
    let mut text = format!("{header}\n").into_bytes();
    text.extend(row("good-1", "+819012345678").into_bytes());
    text.extend(row("huge", &"9".repeat(5 * 1024 * 1024)).into_bytes());
    text.extend(row("\"open-quote", "+819012345678").into_bytes());
    text.extend(row("long", &"9".repeat(2048)).into_bytes());
    text.extend(
        row("bad-\u{FFFD}", "+819012345678")
            .into_bytes()
            .iter()
            .map(|b| match b {
                // The replacement character's first byte alone is not UTF-8.
                0xEF => 0xFF,
                b => *b,
            }),
    );
    text.extend(row("good-2", "+819087654321").into_bytes());
    std::fs::write(path, text).unwrap();
}

/// The refusals expected of [`hostile_file`], by line.
fn assert_hostile_lines_refused(err: &str, number_field: &str) {
    for expected in [
        "line 3: the line is longer than 16384 bytes".to_string(),
        "line 4: a quote is not closed on this line".to_string(),
        format!("line 5: {number_field} is longer than 1024 bytes"),
        "line 6: the line is not UTF-8".to_string(),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in {err}");
    }
}

/// Event (CSV and JSON Lines), watch and audit imports read their files line by line: an
/// over-long line or field, a quote left open and bytes that are not UTF-8 are each
/// refused with their line number, and the good lines around them are all kept.
#[test]
fn imports_refuse_bad_lines_by_number_and_keep_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let served = served_with_feed(dir.path());
    let events = dir.path().join("events.csv");
    hostile_file(
        &events,
        "source_event_id,phone_number,kind,occurred_at",
        |id, number| format!("{id},{number},SIM_SWAP,2026-01-05T00:00:00Z\n"),
    );
    let import = refused_some(served.run(&[
        "import",
        "events",
        events.to_str().unwrap(),
        "--source",
        "feed",
    ]));
    assert!(
        stdout(&import).contains("6 events read; 2 accepted"),
        "{}\n{}",
        stdout(&import),
        stderr(&import)
    );
    assert_hostile_lines_refused(&stderr(&import), "phone_number");

    let jsonl = dir.path().join("events.jsonl");
    hostile_file(&jsonl, "", |id, number| {
        let id = id.replace('"', "\\\"");
        format!(
            "{{\"source_event_id\":\"j-{id}\",\"phone_number\":\"{number}\",\"kind\":\"DISCONNECT\",\
             \"occurred_at\":\"2026-01-06T00:00:00Z\"}}\n"
        )
    });
    let import = refused_some(served.run(&[
        "import",
        "events",
        jsonl.to_str().unwrap(),
        "--source",
        "feed",
    ]));
    let err = stderr(&import);
    assert!(
        stdout(&import).contains("6 events read; 3 accepted"),
        "the open quote is escaped in JSON: {}\n{err}",
        stdout(&import)
    );
    assert!(
        err.contains("line 3: the line is longer than 16384 bytes"),
        "{err}"
    );
    assert!(
        err.contains("line 5: phone_number is longer than 1024 bytes"),
        "{err}"
    );
    assert!(err.contains("line 6: the line is not UTF-8"), "{err}");

    let watch = dir.path().join("watch.csv");
    hostile_file(
        &watch,
        "customer_ref,phone_number,owner_since",
        |id, number| format!("{id},{number},2026-01-01\n"),
    );
    let import = refused_some(served.run(&["watch", "import", watch.to_str().unwrap()]));
    assert!(
        stdout(&import).contains("2 entries watched, 4 bad lines"),
        "{}\n{}",
        stdout(&import),
        stderr(&import)
    );
    assert_hostile_lines_refused(&stderr(&import), "phone_number");

    let list = dir.path().join("list.csv");
    let report = dir.path().join("report.csv");
    hostile_file(&list, "customer_ref,phone_number", |id, number| {
        format!("{id},{number}\n")
    });
    let run = refused_some(served.run(&[
        "audit",
        "--input",
        list.to_str().unwrap(),
        "--output",
        report.to_str().unwrap(),
        "--json",
    ]));
    let summary: Value = serde_json::from_str(stdout(&run).trim()).unwrap();
    assert_eq!(summary["rows"], 6, "{summary}");
    assert_eq!(summary["rejected"], 4, "{summary}");
    let report = std::fs::read_to_string(&report).unwrap();
    assert_hostile_lines_refused(&report, "phone_number");
    assert!(
        report.contains("good-1") && report.contains("good-2"),
        "{report}"
    );
    served.stop();
}
