//! Input line numbers of CSV records, for error messages and reports.
//!
//! The csv crate dates a record from where its reading began, which is before any blank
//! lines it skipped. So the line is counted back from where the record ended instead:
//! minus the newlines inside its fields, and minus its own line break if the reader has
//! consumed it (a `\r\n` break ends the record at the `\r`; the last line may have none).

use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard};

/// The latest chunk the CSV reader took from the input, and where it starts. A record
/// ends in the chunk the reader took last, since it reads on only when it needs more.
#[derive(Debug, Default)]
struct LastChunk {
    start: u64,
    bytes: Vec<u8>,
}

/// The input as the CSV reader reads it, keeping its latest chunk.
pub struct Tracked<R> {
    inner: R,
    last: Arc<Mutex<LastChunk>>,
}

fn lock(last: &Mutex<LastChunk>) -> MutexGuard<'_, LastChunk> {
    // Only plain data is behind the lock; a panic elsewhere leaves it usable.
    last.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            let mut last = lock(&self.last);
            last.start += last.bytes.len() as u64;
            last.bytes.clear();
            last.bytes.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

/// Tells the line each record starts on.
#[derive(Debug, Clone)]
pub struct CsvLines {
    last: Arc<Mutex<LastChunk>>,
}

/// Wraps an input for a CSV reader; the `CsvLines` then numbers its records.
pub fn track<R: Read>(input: R) -> (Tracked<R>, CsvLines) {
    let last = Arc::new(Mutex::new(LastChunk::default()));
    (
        Tracked {
            inner: input,
            last: last.clone(),
        },
        CsvLines { last },
    )
}

impl CsvLines {
    /// The line on which `record`, just read by `reader`, starts (the header is line 1).
    pub fn start_line<R: Read>(
        &self,
        reader: &csv::Reader<Tracked<R>>,
        record: &csv::StringRecord,
    ) -> u64 {
        let end = reader.position();
        let inside: u64 = record
            .iter()
            .map(|f| f.bytes().filter(|b| *b == b'\n').count() as u64)
            .sum();
        let ended_by_newline = {
            let last = lock(&self.last);
            end.byte()
                .checked_sub(1 + last.start)
                .and_then(|i| last.bytes.get(i as usize))
                == Some(&b'\n')
        };
        end.line()
            .saturating_sub(inside + u64::from(ended_by_newline))
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<u64> {
        let (input, lines) = track(text.as_bytes());
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
        let mut record = csv::StringRecord::new();
        let mut out = Vec::new();
        while reader.read_record(&mut record).unwrap() {
            out.push(lines.start_line(&reader, &record));
        }
        out
    }

    #[test]
    fn blank_lines_quoted_newlines_and_a_missing_final_newline() {
        assert_eq!(lines("h\na\n\n\nb\n"), vec![2, 5]);
        assert_eq!(lines("h\na\n\nb"), vec![2, 4]);
        assert_eq!(lines("h,x\n\"a\nb\",1\nc,2\r\n\r\nd,3\r\n"), vec![2, 4, 6]);
    }

    proptest::proptest! {
        /// Rows (some quoted across lines) between runs of blank lines, with either line
        /// break and with or without a final one: every row gets the line it starts on.
        #[test]
        fn any_layout_numbers_rows_by_their_first_line(
            rows in proptest::collection::vec((0usize..3, proptest::bool::ANY, "[a-z]{1,5}"), 1..30),
            crlf in proptest::bool::ANY,
            final_break in proptest::bool::ANY,
        ) {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut text = format!("h,x{nl}");
            let mut line = 2u64;
            let mut expected = Vec::new();
            for (i, (blanks, quoted, word)) in rows.iter().enumerate() {
                for _ in 0..*blanks {
                    text.push_str(nl);
                    line += 1;
                }
                expected.push(line);
                if *quoted {
                    text.push_str(&format!("\"{word}\n{word}\",1"));
                    line += 2;
                } else {
                    text.push_str(&format!("{word},1"));
                    line += 1;
                }
                if i + 1 < rows.len() || final_break {
                    text.push_str(nl);
                }
            }
            proptest::prop_assert_eq!(lines(&text), expected);
        }
    }
}
