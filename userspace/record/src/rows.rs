//! Result rows for the recorder, in two shapes: the owned `Vec<Vec<Option<String>>>` of
//! [`crate::Rows`] and [`crate::ResponseSummary`], and a flat [`RowBuf`] that the daemon fills
//! from the wire with no allocation per row or cell (one text buffer and two offset lists,
//! reused from statement to statement). [`RowsRef`] views either; the row cap and the JSON
//! writer work on the view.

/// Rows as one text buffer and cell/row offsets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RowBuf {
    text: String,
    /// End of each cell in `text`, with [`NULL`] set for SQL NULL.
    cells: Vec<u32>,
    /// End of each row in `cells`.
    rows: Vec<u32>,
}

const NULL: u32 = 1 << 31;

impl RowBuf {
    /// Rows held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Bytes of cell text held.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// Drops the rows, keeping the buffers.
    pub fn clear(&mut self) {
        self.text.clear();
        self.cells.clear();
        self.rows.clear();
    }

    /// Whether one more cell of `extra` bytes still fits the offsets (2 GiB of text); a
    /// caller past that records the rows it has and starts again.
    pub fn fits(&self, extra: usize) -> bool {
        self.text.len().saturating_add(extra) < NULL as usize
    }

    fn end_cell(&mut self, null: bool) {
        // Callers check `fits` first; saturate rather than wrap if one did not.
        let end = u32::try_from(self.text.len())
            .unwrap_or(NULL - 1)
            .min(NULL - 1);
        self.cells.push(if null { end | NULL } else { end });
    }

    /// Appends a text cell.
    pub fn push_str(&mut self, s: &str) {
        self.text.push_str(s);
        self.end_cell(false);
    }

    /// Appends a text cell from wire bytes, invalid UTF-8 replaced by U+FFFD (as
    /// `String::from_utf8_lossy` does).
    pub fn push_lossy(&mut self, b: &[u8]) {
        match std::str::from_utf8(b) {
            Ok(s) => self.text.push_str(s),
            Err(_) => self.text.push_str(&String::from_utf8_lossy(b)),
        }
        self.end_cell(false);
    }

    /// Appends a binary cell as bytea hex text (`\x0a1b…`).
    pub fn push_hex(&mut self, b: &[u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        self.text.reserve(2 + b.len() * 2);
        self.text.push_str("\\x");
        for &x in b {
            self.text.push(char::from(DIGITS[usize::from(x >> 4)]));
            self.text.push(char::from(DIGITS[usize::from(x & 15)]));
        }
        self.end_cell(false);
    }

    /// Appends a NULL cell.
    pub fn push_null(&mut self) {
        self.end_cell(true);
    }

    /// Ends the row whose cells were pushed since the last `end_row`.
    pub fn end_row(&mut self) {
        self.rows
            .push(u32::try_from(self.cells.len()).unwrap_or(u32::MAX));
    }

    fn cell_range(&self, row: usize) -> std::ops::Range<usize> {
        let start = row.checked_sub(1).map_or(0, |r| self.rows[r] as usize);
        start..self.rows[row] as usize
    }

    fn text_start(&self, cell: usize) -> usize {
        cell.checked_sub(1)
            .map_or(0, |c| (self.cells[c] & !NULL) as usize)
    }

    /// Cells in row `row`.
    ///
    /// # Panics
    /// If `row >= self.len()`.
    pub fn row_cells(&self, row: usize) -> usize {
        self.cell_range(row).len()
    }

    /// The cells of row `row` (`None` = NULL).
    ///
    /// # Panics
    /// If `row >= self.len()`.
    pub fn row(&self, row: usize) -> impl Iterator<Item = Option<&str>> + '_ {
        self.cell_range(row).map(|c| {
            let (start, end) = (self.text_start(c), self.cells[c]);
            (end & NULL == 0).then(|| &self.text[start..(end & !NULL) as usize])
        })
    }

    /// Bytes of cell text in row `row` (what the row cap counts).
    fn row_bytes(&self, row: usize) -> u64 {
        let cells = self.cell_range(row);
        if cells.is_empty() {
            return 0;
        }
        let end = (self.cells[cells.end - 1] & !NULL) as usize;
        (end - self.text_start(cells.start)) as u64
    }

    /// The rows in the owned shape.
    pub fn to_rows(&self) -> Vec<Vec<Option<String>>> {
        (0..self.len())
            .map(|r| self.row(r).map(|c| c.map(str::to_owned)).collect())
            .collect()
    }
}

/// Rows, borrowed in either shape.
#[derive(Clone, Copy, Debug)]
pub enum RowsRef<'a> {
    /// Owned rows.
    Cells(&'a [Vec<Option<String>>]),
    /// The first `rows` rows of a [`RowBuf`].
    Buf {
        /// The buffer.
        buf: &'a RowBuf,
        /// Rows of it in view.
        rows: usize,
    },
}

impl Default for RowsRef<'_> {
    fn default() -> Self {
        Self::Cells(&[])
    }
}

impl<'a> RowsRef<'a> {
    /// All rows of `buf`.
    pub fn buf(buf: &'a RowBuf) -> Self {
        Self::Buf {
            buf,
            rows: buf.len(),
        }
    }

    /// Rows in view.
    pub fn len(&self) -> usize {
        match self {
            Self::Cells(c) => c.len(),
            Self::Buf { rows, .. } => *rows,
        }
    }

    /// No rows in view.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first `n` rows.
    pub(crate) fn first(self, n: usize) -> Self {
        match self {
            Self::Cells(c) => Self::Cells(&c[..n.min(c.len())]),
            Self::Buf { buf, rows } => Self::Buf {
                buf,
                rows: n.min(rows),
            },
        }
    }

    /// Bytes of cell text in row `i` (what the row cap counts).
    pub(crate) fn row_bytes(&self, i: usize) -> u64 {
        match self {
            Self::Cells(c) => c[i]
                .iter()
                .map(|c| c.as_ref().map_or(0, |s| s.len() as u64))
                .sum(),
            Self::Buf { buf, .. } => buf.row_bytes(i),
        }
    }

    /// The rows in the owned shape.
    pub fn to_vec(&self) -> Vec<Vec<Option<String>>> {
        match self {
            Self::Cells(c) => c.to_vec(),
            Self::Buf { buf, rows } => {
                let mut v = buf.to_rows();
                v.truncate(*rows);
                v
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (RowBuf, Vec<Vec<Option<String>>>) {
        let owned = vec![
            vec![Some("1".to_owned()), None, Some(String::new())],
            vec![],
            vec![None],
            vec![Some("é\u{fffd}".to_owned()), Some("\\x00ff".to_owned())],
        ];
        let mut b = RowBuf::default();
        b.push_str("1");
        b.push_null();
        b.push_lossy(b"");
        b.end_row();
        b.end_row();
        b.push_null();
        b.end_row();
        b.push_lossy(b"\xc3\xa9\xff");
        b.push_hex(&[0, 255]);
        b.end_row();
        (b, owned)
    }

    #[test]
    fn flat_rows_read_back_as_the_owned_shape() {
        let (b, owned) = sample();
        assert_eq!(b.len(), 4);
        assert_eq!(b.to_rows(), owned);
        let view = RowsRef::buf(&b);
        let cells = RowsRef::Cells(&owned);
        for i in 0..4 {
            assert_eq!(view.row_bytes(i), cells.row_bytes(i), "row {i}");
        }
        assert_eq!(view.first(2).to_vec(), owned[..2].to_vec());
        assert_eq!(view.to_vec(), owned);
    }

    #[test]
    fn cleared_buffers_start_over() {
        let (mut b, _) = sample();
        b.clear();
        assert!(b.is_empty() && b.text_len() == 0);
        b.push_str("x");
        b.end_row();
        assert_eq!(b.to_rows(), vec![vec![Some("x".to_owned())]]);
    }
}
