//! Input files read line by line, for event, watch and audit imports: every line is one
//! record or one refusal with its number, so a bad line never takes the next ones with it.
//! A line or field past its limit is refused (and a line past it is never held in memory
//! whole), and a quote left open at the end of a line is reported there, instead of
//! joining the following lines into one field as a CSV reader would. (No field numguard
//! takes may hold a line break, so nothing valid spans lines.)

use std::io::{self, BufRead};

/// Longest line read; a longer one is refused and skipped.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Longest field; every field numguard takes is far shorter.
pub const MAX_FIELD_BYTES: usize = 1024;

/// The lines of an input, numbered from 1, blank ones skipped.
pub struct Lines<R> {
    input: R,
    number: u64,
    bytes_read: u64,
    line: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    pub fn new(input: R) -> Self {
        Lines {
            input,
            number: 0,
            bytes_read: 0,
            line: Vec::new(),
        }
    }

    /// Bytes read so far, for progress.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The next line that is not blank, with its number: its text without the line break,
    /// or why it is refused. `None` at the end of the input.
    pub fn next_line(&mut self) -> io::Result<Option<(u64, Result<&str, String>)>> {
        loop {
            let Some(too_long) = self.read_raw()? else {
                return Ok(None);
            };
            self.number += 1;
            if too_long {
                let refusal = format!("the line is longer than {MAX_LINE_BYTES} bytes");
                return Ok(Some((self.number, Err(refusal))));
            }
            if let Err(e) = std::str::from_utf8(&self.line) {
                let refusal = format!("the line is not UTF-8 (byte {})", e.valid_up_to() + 1);
                return Ok(Some((self.number, Err(refusal))));
            }
            if !self.line.iter().all(u8::is_ascii_whitespace) {
                break;
            }
        }
        // Checked above; the text is returned from outside the loop for the borrow checker.
        let text = std::str::from_utf8(&self.line).unwrap_or_default();
        Ok(Some((self.number, Ok(text.trim_end_matches(['\n', '\r'])))))
    }

    /// Reads one line into `self.line`, keeping at most [`MAX_LINE_BYTES`] of it; `None`
    /// at the end of the input, else whether the line was longer.
    fn read_raw(&mut self) -> io::Result<Option<bool>> {
        self.line.clear();
        let (mut read_any, mut too_long) = (false, false);
        loop {
            let available = match self.input.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok(read_any.then_some(too_long));
            }
            read_any = true;
            let (taken, ended) = match available.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            if self.line.len() + taken > MAX_LINE_BYTES + 2 {
                too_long = true;
            }
            if !too_long {
                self.line.extend_from_slice(&available[..taken]);
            }
            self.input.consume(taken);
            self.bytes_read += taken as u64;
            if ended {
                let body = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
                let body = body.strip_suffix(b"\r").unwrap_or(body);
                return Ok(Some(too_long || body.len() > MAX_LINE_BYTES));
            }
        }
    }
}

/// Splits CSV lines into trimmed fields, one line at a time. Made once per input and
/// reused: building the CSV state machine costs far more than splitting a line (built per
/// line, it was most of an audit client's CPU).
pub struct CsvLines {
    parser: csv_core::Reader,
    fields: Vec<u8>,
    ends: Vec<usize>,
}

impl Default for CsvLines {
    fn default() -> Self {
        CsvLines {
            parser: csv_core::Reader::new(),
            fields: Vec::new(),
            ends: Vec::new(),
        }
    }
}

impl CsvLines {
    /// One line's fields, trimmed; `headers` name the columns in refusals.
    pub fn record(
        &mut self,
        line: &str,
        headers: Option<&csv::StringRecord>,
    ) -> Result<csv::StringRecord, String> {
        if line.bytes().filter(|b| *b == b'"').count() % 2 == 1 {
            return Err("a quote is not closed on this line".to_string());
        }
        // A field is never longer than the line, nor are there more fields than bytes + 1.
        self.fields.resize(line.len(), 0);
        self.ends.resize(line.len() + 1, 0);
        self.parser.reset();
        let (mut input, mut written, mut ended) = (line.as_bytes(), 0, 0);
        loop {
            let (result, read, wrote, ends) = self.parser.read_record(
                input,
                &mut self.fields[written..],
                &mut self.ends[ended..],
            );
            input = &input[read..];
            written += wrote;
            ended += ends;
            match result {
                // The empty input that follows the line ends its last field.
                csv_core::ReadRecordResult::InputEmpty => {}
                csv_core::ReadRecordResult::Record | csv_core::ReadRecordResult::End => break,
                csv_core::ReadRecordResult::OutputFull
                | csv_core::ReadRecordResult::OutputEndsFull => {
                    return Err("the line could not be split into fields".to_string());
                }
            }
        }
        let mut record = csv::StringRecord::with_capacity(written, ended);
        let mut start = 0;
        for (i, &end) in self.ends[..ended].iter().enumerate() {
            let field = std::str::from_utf8(&self.fields[start..end])
                .map_err(|_| format!("field {} is not UTF-8", i + 1))?
                .trim();
            if field.len() > MAX_FIELD_BYTES {
                let name = headers
                    .and_then(|h| h.get(i))
                    .map_or_else(|| format!("field {}", i + 1), str::to_string);
                return Err(format!("{name} is longer than {MAX_FIELD_BYTES} bytes"));
            }
            record.push_field(field);
            start = end;
        }
        Ok(record)
    }
}

/// The first non-blank line as a CSV header.
pub fn csv_header<R: BufRead>(lines: &mut Lines<R>) -> anyhow::Result<csv::StringRecord> {
    match lines.next_line()? {
        None => anyhow::bail!("the file is empty: it needs a CSV header line"),
        Some((number, Err(reason))) => anyhow::bail!("line {number} (the CSV header): {reason}"),
        Some((number, Ok(text))) => CsvLines::default()
            .record(text, None)
            .map_err(|e| anyhow::anyhow!("line {number} (the CSV header): {e}")),
    }
}

/// Refuses a JSON field past [`MAX_FIELD_BYTES`], naming it.
pub fn check_field(name: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_FIELD_BYTES {
        return Err(format!("{name} is longer than {MAX_FIELD_BYTES} bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &[u8]) -> Vec<(u64, Result<String, String>)> {
        let mut lines = Lines::new(io::BufReader::with_capacity(7, text));
        let mut out = Vec::new();
        while let Some((n, line)) = lines.next_line().unwrap() {
            out.push((n, line.map(str::to_string)));
        }
        assert_eq!(lines.bytes_read(), text.len() as u64);
        out
    }

    #[test]
    fn lines_are_numbered_blank_ones_skipped_and_breaks_removed() {
        let got = all(b"h\r\na\n\n  \nb");
        assert_eq!(
            got,
            vec![
                (1, Ok("h".to_string())),
                (2, Ok("a".to_string())),
                (5, Ok("b".to_string()))
            ]
        );
    }

    #[test]
    fn an_over_long_line_is_refused_and_the_next_one_read() {
        let mut text = b"h\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', 5 * 1024 * 1024));
        text.extend_from_slice(b"\nnext\n");
        let got = all(&text);
        assert_eq!(got[1].0, 2);
        assert!(
            got[1]
                .1
                .as_ref()
                .unwrap_err()
                .contains("longer than 16384 bytes")
        );
        assert_eq!(got[2], (3, Ok("next".to_string())));
        let exact = format!("{}\n", "y".repeat(MAX_LINE_BYTES));
        assert!(
            all(exact.as_bytes())[0].1.is_ok(),
            "a line of the limit is read"
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused_by_line() {
        let got = all(b"ok\nbad \xff line\nok\n");
        assert!(
            got[1]
                .1
                .as_ref()
                .unwrap_err()
                .contains("not UTF-8 (byte 5)")
        );
        assert_eq!(got[2], (3, Ok("ok".to_string())));
    }

    #[test]
    fn a_quote_left_open_is_refused_on_its_line_and_never_joins_the_next() {
        let mut csv = CsvLines::default();
        let headers = csv.record("customer_ref,phone_number", None).unwrap();
        assert!(
            csv.record("\"c1,+819012345678", Some(&headers))
                .unwrap_err()
                .contains("quote is not closed")
        );
        let record = csv
            .record("\"c, \"\"2\"\"\", +819012345678 ", Some(&headers))
            .unwrap();
        assert_eq!(&record[0], "c, \"2\"");
        assert_eq!(&record[1], "+819012345678");
        let long = format!("c1,{}", "9".repeat(MAX_FIELD_BYTES + 1));
        assert_eq!(
            csv.record(&long, Some(&headers)).unwrap_err(),
            "phone_number is longer than 1024 bytes"
        );
    }

    proptest::proptest! {
        /// One reused splitter reads every line as the csv crate reads that line alone.
        #[test]
        fn the_reused_splitter_agrees_with_a_csv_reader_per_line(
            lines in proptest::collection::vec("[a-c\", \u{e9}\t]{0,12}", 1..8)
        ) {
            let mut csv = CsvLines::default();
            for line in lines.iter().filter(|l| l.bytes().filter(|b| *b == b'"').count() % 2 == 0) {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .trim(csv::Trim::All)
                    .from_reader(line.as_bytes());
                let mut expected = csv::StringRecord::new();
                reader.read_record(&mut expected).unwrap();
                let got = csv.record(line, None).unwrap();
                proptest::prop_assert_eq!(got.iter().collect::<Vec<_>>(), expected.iter().collect::<Vec<_>>());
            }
        }

        /// Any bytes: every line is numbered once, read or refused, and nothing is lost.
        #[test]
        fn any_input_is_read_line_by_line(text in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let got = all(&text);
            let numbers: Vec<u64> = got.iter().map(|(n, _)| *n).collect();
            proptest::prop_assert!(numbers.windows(2).all(|w| w[0] < w[1]));
            let breaks = text.iter().filter(|b| **b == b'\n').count() as u64;
            proptest::prop_assert!(numbers.last().is_none_or(|n| *n <= breaks + 1));
        }
    }
}
