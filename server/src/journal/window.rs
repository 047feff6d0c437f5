//! A read window over one segment file: the recovery scan and the readers walk records through
//! it, so a segment is read in large sequential chunks and a record never needs its own read.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use super::format::{self, Parsed, RECORD_HEADER_LEN};

pub(crate) struct Window {
    buf: Vec<u8>,
    /// The size `buf` returns to after holding a record bigger than it.
    capacity: usize,
    /// File offset of `buf[0]`.
    start: u64,
    filled: usize,
}

/// What the window found at an offset.
pub(crate) enum Step {
    /// A whole, checksummed record of this many bytes.
    Record(format::Head),
    /// No byte at all: the offset is the end of what may be read.
    End,
    /// Some bytes, but not a whole record before the limit.
    Incomplete,
    Invalid(&'static str),
}

impl Window {
    pub fn new(capacity: usize) -> Window {
        Window {
            buf: vec![0; capacity],
            capacity,
            start: 0,
            filled: 0,
        }
    }

    /// Forgets the buffered bytes (another file, or the file changed under them).
    pub fn reset(&mut self) {
        self.start = 0;
        self.filled = 0;
    }

    /// The bytes from `offset` on, at least `want` of them if the file has them before `limit`.
    pub fn bytes(
        &mut self,
        file: &mut File,
        offset: u64,
        want: usize,
        limit: u64,
    ) -> io::Result<&mut [u8]> {
        let end = self.start + self.filled as u64;
        if offset < self.start || offset + want as u64 > end {
            if want > self.buf.len() {
                self.buf.resize(want.next_power_of_two(), 0);
            } else if want <= self.capacity && self.buf.len() > self.capacity {
                // One huge row must not pin its buffer for the reader's lifetime.
                self.buf.truncate(self.capacity);
                self.buf.shrink_to_fit();
            }
            let room = self.buf.len().min(limit.saturating_sub(offset) as usize);
            file.seek(SeekFrom::Start(offset))?;
            let mut filled = 0;
            while filled < room {
                match file.read(&mut self.buf[filled..room]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.start = offset;
            self.filled = filled;
        }
        let from = (offset - self.start) as usize;
        Ok(&mut self.buf[from..self.filled])
    }

    /// Parses the record at `offset`, reading at most up to `limit`.
    pub fn step(&mut self, file: &mut File, offset: u64, limit: u64) -> io::Result<Step> {
        let head = self.bytes(file, offset, RECORD_HEADER_LEN, limit)?;
        if head.is_empty() {
            return Ok(Step::End);
        }
        if head.len() < RECORD_HEADER_LEN {
            return Ok(Step::Incomplete);
        }
        let payload_len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        if payload_len > format::MAX_PAYLOAD {
            return Ok(Step::Invalid("record length out of range"));
        }
        let whole = self.bytes(file, offset, RECORD_HEADER_LEN + payload_len, limit)?;
        Ok(match format::parse(whole) {
            Parsed::Record(h) => Step::Record(h),
            Parsed::Incomplete => Step::Incomplete,
            Parsed::Invalid(reason) => Step::Invalid(reason),
        })
    }

    /// The payload of the record `step` just returned at `offset`.
    pub fn payload(&mut self, offset: u64, head: &format::Head) -> &mut [u8] {
        let from = (offset - self.start) as usize + RECORD_HEADER_LEN;
        &mut self.buf[from..from + head.payload_len]
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::journal::format::{encode_head, KIND_CHANGE};
    use crate::vocab::{Lsn, Pos};

    #[test]
    fn walks_records_bigger_than_the_window_and_stops_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w");
        let mut f = File::create(&path).unwrap();
        let payloads: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 7 * i as usize]).collect();
        for (i, p) in payloads.iter().enumerate() {
            let pos = Pos::new(Lsn(1), i as u32 + 1);
            f.write_all(&encode_head(KIND_CHANGE, pos, Lsn(0), 0, p))
                .unwrap();
            f.write_all(p).unwrap();
        }
        let len = f.metadata().unwrap().len();
        let mut f = File::open(&path).unwrap();
        let mut w = Window::new(64);
        let mut offset = 0;
        for p in &payloads {
            let Step::Record(h) = w.step(&mut f, offset, len).unwrap() else {
                panic!("record expected at {offset}")
            };
            assert_eq!(w.payload(offset, &h), &p[..]);
            offset += h.record_len() as u64;
        }
        assert!(matches!(w.step(&mut f, offset, len).unwrap(), Step::End));
        // Stopping short of the limit: inside a header, then inside record 5's payload.
        assert!(matches!(w.step(&mut f, 0, 20).unwrap(), Step::Incomplete));
        let at = (0..5).map(|i| 37 + 7 * i).sum::<u64>();
        assert!(matches!(
            w.step(&mut f, at, at + 40).unwrap(),
            Step::Incomplete
        ));
    }
}
