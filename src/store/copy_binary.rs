//! Rows in PostgreSQL's binary `COPY` format (the `COPY` page of PostgreSQL's manual,
//! "Binary Format"), for bulk loads that skip parsing text and arrays.

/// `PGCOPY\n\377\r\n\0`, then no flags and no header extension.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// A buffer of rows for one `COPY ... FROM STDIN (FORMAT binary)`.
pub(super) struct CopyRows {
    bytes: Vec<u8>,
}

impl CopyRows {
    /// An empty buffer sized for `rows` rows of about `row_bytes` each.
    pub(super) fn with_capacity(rows: usize, row_bytes: usize) -> CopyRows {
        let mut bytes = Vec::with_capacity(HEADER.len() + rows * row_bytes + 2);
        bytes.extend_from_slice(HEADER);
        CopyRows { bytes }
    }

    /// Starts a row of `fields` fields; each is then written with [`CopyRows::text`] or
    /// [`CopyRows::bigint`], in the table's column order.
    pub(super) fn row(&mut self, fields: i16) {
        self.bytes.extend_from_slice(&fields.to_be_bytes());
    }

    /// A `text` field (its binary form is the UTF-8 bytes); `None` is NULL.
    pub(super) fn text(&mut self, value: Option<&str>) {
        match value {
            Some(s) => {
                // A text value is at most 1 GB, so its length fits.
                let len = i32::try_from(s.len()).unwrap_or(i32::MAX);
                self.bytes.extend_from_slice(&len.to_be_bytes());
                self.bytes.extend_from_slice(s.as_bytes());
            }
            None => self.bytes.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }

    /// A `bigint` field.
    pub(super) fn bigint(&mut self, value: i64) {
        self.bytes.extend_from_slice(&8i32.to_be_bytes());
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    /// The whole message: the rows and the end marker.
    pub(super) fn finish(mut self) -> Vec<u8> {
        self.bytes.extend_from_slice(&(-1i16).to_be_bytes());
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_framed_as_postgresql_reads_them() {
        let mut rows = CopyRows::with_capacity(1, 16);
        rows.row(3);
        rows.text(Some("ab"));
        rows.text(None);
        rows.bigint(-2);
        let bytes = rows.finish();
        let mut expected = b"PGCOPY\n\xff\r\n\0".to_vec();
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]); // flags, extension length
        expected.extend_from_slice(&[0, 3]); // three fields
        expected.extend_from_slice(&[0, 0, 0, 2, b'a', b'b']);
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // NULL
        expected.extend_from_slice(&[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
        expected.extend_from_slice(&[0xff, 0xff]); // the end
        assert_eq!(bytes, expected);
    }
}
