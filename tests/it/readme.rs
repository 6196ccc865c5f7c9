//! The README, run: its first command (`serve --dev --demo`) shows what it says, and every
//! `console` block's commands give the outputs printed under them, against a fresh server
//! started as the tour starts it. In expected output, `[..]` stands for any text within a
//! line and a line `...` for any lines (none included).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use numguard_testkit::process::{Served, bin};

/// One `$ command` of a console block, with the output printed under it.
#[derive(Debug)]
struct Step {
    /// Line number in README.md, for messages.
    line: usize,
    command: String,
    expected: Vec<String>,
}

/// Every `$ command` of every console block, in order. A command goes on over lines that
/// end in `\` and over a here-document's lines up to its terminator.
fn steps(readme: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut lines = readme.lines().enumerate();
    let mut in_block = false;
    while let Some((n, line)) = lines.next() {
        if !in_block {
            in_block = line == "```console";
            continue;
        }
        if line == "```" {
            in_block = false;
            continue;
        }
        let Some(command) = line.strip_prefix("$ ") else {
            let step = steps.last_mut().expect("output before any command");
            step.expected.push(line.to_string());
            continue;
        };
        let mut command = command.to_string();
        while command.ends_with('\\') {
            let (_, next) = lines.next().expect("a continued command");
            command.push('\n');
            command.push_str(next);
        }
        if let Some(terminator) = heredoc_terminator(&command) {
            for (_, next) in lines.by_ref() {
                command.push('\n');
                command.push_str(next);
                if next == terminator {
                    break;
                }
            }
        }
        steps.push(Step {
            line: n + 1,
            command,
            expected: Vec::new(),
        });
    }
    steps
}

/// `WORD` of `<<WORD` or `<<'WORD'`.
fn heredoc_terminator(command: &str) -> Option<String> {
    let rest = command.split_once("<<")?.1.trim_start();
    let word: String = rest
        .trim_start_matches('\'')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!word.is_empty()).then_some(word)
}

/// Whether one line matches its pattern, where `[..]` is any text.
fn line_matches(pattern: &str, line: &str) -> bool {
    let mut parts = pattern.split("[..]");
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = line.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// Whether the output matches the expected lines, where a line `...` is any lines.
fn output_matches(expected: &[String], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first == "..." => {
            (0..=actual.len()).any(|skip| output_matches(rest, &actual[skip..]))
        }
        Some((first, rest)) => actual
            .split_first()
            .is_some_and(|(line, more)| line_matches(first, line) && output_matches(rest, more)),
    }
}

#[test]
fn wildcards_match_as_documented() {
    assert!(line_matches("a [..] c", "a b c"));
    assert!(line_matches("[..]", ""));
    assert!(line_matches("x: [..] .. [..]", "x: 1 .. 2"));
    assert!(!line_matches("a [..] c", "a b d"));
    assert!(!line_matches("abc", "abcd"));
    let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(output_matches(
        &lines(&["a", "...", "d"]),
        &["a", "b", "c", "d"]
    ));
    assert!(output_matches(&lines(&["a", "...", "b"]), &["a", "b"]));
    assert!(!output_matches(&lines(&["a", "...", "d"]), &["a", "b"]));
    assert!(!output_matches(&lines(&["a"]), &["a", "b"]));
}

#[test]
fn every_console_block_of_the_readme_prints_what_it_shows() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let steps = steps(&readme);
    assert!(steps.len() >= 10, "the README's console blocks: {steps:?}");
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("numguard.db").display());
    // As the tour starts it: keys on, the REST facade on.
    let served = Served::start_with(&db, &["--rest-listen", "127.0.0.1:0"]);
    let key = first_start_key(&served);
    let rest = served.rest_url.clone().unwrap();
    let bin_dir = bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // One shell runs every step, as a reader's terminal would (variables carry over); a
    // marker line after each step gives its exit status and ends its output.
    const MARK: &str = "@@readme-step-done@@";
    let mut script = String::from("exec 2>&1\n");
    for step in &steps {
        // The README's addresses are the defaults; this server's ports are its own.
        let command = step
            .command
            .replace("http://127.0.0.1:8080", &rest)
            .replace("127.0.0.1:50051", served.url.trim_start_matches("http://"));
        script.push_str(&format!("{command}\necho \"{MARK} $?\"\n"));
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir.path())
        .env("PATH", &path)
        .env("NUMGUARD_SERVER", &served.url)
        .env("NUMGUARD_API_KEY", &key)
        .env_remove("NUMGUARD_JSON")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    for step in &steps {
        let mut actual = Vec::new();
        let status = loop {
            let line = lines.next().unwrap_or_else(|| {
                panic!(
                    "README.md line {}: the script ended early:\n{text}",
                    step.line
                )
            });
            match line.strip_prefix(MARK) {
                Some(status) => break status.trim().to_string(),
                None => actual.push(line.trim_end()),
            }
        };
        assert_eq!(
            status,
            "0",
            "README.md line {}: `{}` failed:\n{}",
            step.line,
            step.command,
            actual.join("\n")
        );
        assert!(
            output_matches(&step.expected, &actual),
            "README.md line {}: `{}` printed\n{}\nbut the README shows\n{}",
            step.line,
            step.command,
            actual.join("\n"),
            step.expected.join("\n")
        );
    }
    served.stop();
}

/// The API key a first start prints on stdout.
fn first_start_key(served: &Served) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(key) = served.stdout().into_iter().find(|l| l.starts_with("ng_")) {
            return key;
        }
        assert!(Instant::now() < deadline, "no key printed on first start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The README's first command: a fresh demo database of its own (never the default one),
/// a table whose cases answer as labelled, and a server left running with that data.
#[test]
fn serve_dev_demo_shows_each_case_and_keeps_serving_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin())
        .args(["serve", "--dev", "--demo", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("TMPDIR", dir.path())
        .env_remove("NUMGUARD_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let addr = loop {
        let line = lines.next().expect("the tour's output").unwrap();
        printed.push(line.clone());
        if let Some(rest) = line.strip_prefix("numguard is up on ") {
            break rest.split(':').take(2).collect::<Vec<_>>().join(":");
        }
    };
    for line in lines.by_ref() {
        let line = line.unwrap();
        printed.push(line.clone());
        if line.starts_with("The server keeps running") {
            break;
        }
    }
    let table = printed.join("\n");
    for (case, verdict, reasons) in [
        ("fresh SIM swap", "STEP_UP  SWAPPED", "SIM_SWAPPED"),
        ("old SIM swap", "ALLOW    NOT_SWAPPED  UNCHANGED", "-"),
        ("recent port", "STEP_UP  SWAPPED", "SIM_SWAPPED, PORTED"),
        (
            "recycled number",
            "BLOCK    NOT_SWAPPED  CHANGED",
            "OWNER_CHANGED",
        ),
        ("stale feed", "ALLOW    UNKNOWN", "FEED_STALE"),
        ("uncovered carrier", "ALLOW    UNKNOWN", "NO_DATA"),
    ] {
        let row = printed
            .iter()
            .find(|l| l.starts_with(case))
            .unwrap_or_else(|| panic!("no {case:?} row:\n{table}"));
        assert!(
            row.contains(verdict) && row.ends_with(reasons),
            "{row}\n{table}"
        );
    }
    assert!(
        !dir.path().join("numguard.db").exists(),
        "the demo wrote into the default database"
    );
    assert!(dir.path().join("numguard-demo.db").exists());
    // The server keeps serving the demo data.
    let out = Command::new(bin())
        .args(["check", "+817010012345", "--owner-since", "2025-01-01"])
        .env("NUMGUARD_SERVER", format!("http://{addr}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("+817010012345  BLOCK"), "{text}");
    let _ = child.kill();
    let _ = child.wait();
}
