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
