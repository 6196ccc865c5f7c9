//! Progress bars for long work; drawn only on a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `total` units (bytes or items) labelled `what`; hidden when stderr is not a
/// terminal, so logs and CI output stay clean.
pub fn bar(total: u64, what: &str, bytes: bool) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let counter = if bytes {
        "{bytes}/{total_bytes}"
    } else {
        "{human_pos}/{human_len}"
    };
    let template = format!("{what} [{{bar:40}}] {counter} ({{per_sec}}, eta {{eta}})");
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::new(total).with_style(style)
}

/// A bar over the bytes of an input file that shows rows done and rows per second (set by
/// [`count_row`]) and the time left; hidden when stderr is not a terminal.
pub fn rows_bar(total_bytes: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let template = format!("{what} [{{bar:40}}] {{percent}}% {{msg}} (eta {{eta}})");
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::new(total_bytes).with_style(style)
}

/// Notes that `rows` rows are done; the message is redrawn every few thousand rows.
pub fn count_row(bar: &ProgressBar, rows: u64, started: std::time::Instant) {
    if rows.is_multiple_of(4096) && !bar.is_hidden() {
        let rate = rows as f64 / started.elapsed().as_secs_f64().max(1e-3);
        bar.set_message(format!("{rows} rows, {rate:.0} rows/s"));
    }
}
