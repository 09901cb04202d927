//! JSONL files read in blocks of lines that are checked on worker threads.
//!
//! A reader thread reads the file (decompressing `.gz` on the way) in blocks of
//! [`BLOCK_SIZE`] bytes cut after their last newline; two workers check the lines of each block
//! (valid UTF-8, valid JSON) and turn a block into a few segments: runs of good lines (one
//! [`Item::RawJsonLines`] each), array lines (an [`Item::RawJson`] each: a list of items) and
//! bad lines. The iterator hands the segments out in file order and gives bad lines their line
//! number in the file, so the errors are the ones reading line by line gives. Channels are
//! bounded: a few blocks are in flight at most.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use dlt_core::error::{Error, Result};
use dlt_core::resource::Item;

/// Bytes read per block (a block grows past this to hold a longer line).
pub const BLOCK_SIZE: usize = 4 << 20;
/// Threads checking blocks.
const WORKERS: usize = 2;
/// Blocks whose results wait in order for the iterator (bounds the blocks in flight).
const IN_FLIGHT: usize = 4;

/// What a block holds, in order.
#[derive(Debug)]
enum Seg {
    /// Good lines, each ending in `\n`.
    Lines(String, usize),
    /// A line that is a JSON array (a list of items).
    Single(String),
    /// A line that is not JSON: its number in the block (from 1) and serde_json's message.
    BadJson(u64, String),
    /// A line that is not UTF-8.
    BadUtf8,
    /// Reading the file failed.
    Io(io::Error),
}

/// The checked segments of one block and the number of newlines in it.
type BlockResult = (Vec<Seg>, u64);

/// Check the lines of one block; `buf` holds whole lines (the last may lack its newline).
fn check_block(buf: Vec<u8>) -> BlockResult {
    let newlines = memchr::memchr_iter(b'\n', &buf).count() as u64;
    match String::from_utf8(buf) {
        Ok(text) => (check_text(text), newlines),
        Err(e) => (check_bytes(e.as_bytes()), newlines),
    }
}

/// Segments of a block of valid UTF-8. While every line so far is already in its final form
/// (trimmed, ends in `\n`, not an array) the block itself becomes the segment, without a copy.
fn check_text(text: String) -> Vec<Seg> {
    let mut segs = vec![];
    let mut b = Builder::default();
    // `Some(n)`: the first `n` bytes of `text` are good lines in final form, and nothing else
    // was found yet
    let mut verbatim: Option<usize> = Some(0);
    let mut verbatim_lines = 0usize;
    let mut pos = 0usize;
    let mut lineno = 0u64;
    while pos < text.len() {
        lineno += 1;
        let (raw, next, terminated) = match memchr::memchr(b'\n', &text.as_bytes()[pos..]) {
            Some(i) => (&text[pos..pos + i], pos + i + 1, true),
            None => (&text[pos..], text.len(), false),
        };
        pos = next;
        // as `BufRead::lines`: without the `\n` and a `\r` before it
        let (line, had_cr) = match raw.strip_suffix('\r') {
            Some(l) if terminated => (l, true),
            _ => (raw, false),
        };
        let t = line.trim();
        // Ok(false): a blank line, skipped
        let ok = if t.is_empty() {
            Ok(false)
        } else {
            serde_json::from_str::<serde::de::IgnoredAny>(line).map(|_| true).map_err(|e| e.to_string())
        };
        let in_final_form =
            matches!(ok, Ok(true)) && terminated && !had_cr && t.len() == line.len() && !t.starts_with('[');
        if let Some(end) = verbatim {
            if in_final_form {
                verbatim = Some(end + raw.len() + 1);
                verbatim_lines += 1;
                continue;
            }
            b.text.push_str(&text[..end]);
            b.lines = verbatim_lines;
            verbatim = None;
        }
        match ok {
            Ok(false) => {} // blank
            Ok(true) if t.starts_with('[') => {
                b.flush(&mut segs);
                segs.push(Seg::Single(t.to_string()));
            }
            Ok(true) => b.push(t),
            Err(msg) => {
                b.flush(&mut segs);
                segs.push(Seg::BadJson(lineno, msg));
            }
        }
    }
    match verbatim {
        Some(end) if end > 0 => {
            debug_assert_eq!(end, text.len());
            segs.push(Seg::Lines(text, verbatim_lines));
        }
        Some(_) => {}
        None => b.flush(&mut segs),
    }
    segs
}

/// Segments of a block with bytes that are not UTF-8: line by line, a line that is not UTF-8
/// is an error of its own (as `BufRead::lines` gives it).
fn check_bytes(buf: &[u8]) -> Vec<Seg> {
    let mut segs = vec![];
    let mut b = Builder::default();
    let mut lineno = 0u64;
    for raw in buf.split_inclusive(|&c| c == b'\n') {
        lineno += 1;
        let raw = raw.strip_suffix(b"\n").map(|l| l.strip_suffix(b"\r").unwrap_or(l)).unwrap_or(raw);
        let Ok(line) = std::str::from_utf8(raw) else {
            b.flush(&mut segs);
            segs.push(Seg::BadUtf8);
            continue;
        };
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        match serde_json::from_str::<serde::de::IgnoredAny>(line) {
            Ok(_) if t.starts_with('[') => {
                b.flush(&mut segs);
                segs.push(Seg::Single(t.to_string()));
            }
            Ok(_) => b.push(t),
            Err(e) => {
                b.flush(&mut segs);
                segs.push(Seg::BadJson(lineno, e.to_string()));
            }
        }
    }
    b.flush(&mut segs);
    segs
}

/// Good lines copied into a run of their own.
#[derive(Default)]
struct Builder {
    text: String,
    lines: usize,
}

impl Builder {
    fn push(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
        self.lines += 1;
    }

    fn flush(&mut self, segs: &mut Vec<Seg>) {
        if self.lines > 0 {
            segs.push(Seg::Lines(std::mem::take(&mut self.text), std::mem::take(&mut self.lines)));
        }
    }
}

/// Read the next block: `size` bytes (fewer at the end of the input) cut after the last
/// newline; what follows it is kept in `carry` for the next block (a line longer than a block
/// makes the block longer). `None` at the end.
fn read_block(r: &mut dyn Read, carry: &mut Vec<u8>, size: usize) -> io::Result<Option<Vec<u8>>> {
    // room for a whole block up front: growing on the way would copy it several times
    let mut buf = Vec::with_capacity(size.max(carry.len()) + (64 << 10));
    buf.extend_from_slice(carry);
    carry.clear();
    let mut scanned = 0;
    let mut target = size.max(buf.len() + 1);
    loop {
        let want = target - buf.len();
        let got = Read::take(&mut *r, want as u64).read_to_end(&mut buf)?;
        if got < want {
            // the end of the input
            return Ok((!buf.is_empty()).then_some(buf));
        }
        if let Some(i) = memchr::memrchr(b'\n', &buf[scanned..]) {
            let cut = scanned + i + 1;
            carry.extend_from_slice(&buf[cut..]);
            buf.truncate(cut);
            return Ok(Some(buf));
        }
        scanned = buf.len();
        target = buf.len() + size;
    }
}

/// Items of one JSONL file, in file order.
pub struct JsonlItems {
    path: PathBuf,
    source: Source,
    /// Segments of the current block not handed out yet.
    pending: VecDeque<Seg>,
    /// Lines before the current block.
    base: u64,
    /// Newlines of the current block (added to `base` when the next block starts).
    block_lines: u64,
}

enum Source {
    /// Results of blocks in file order, each from its worker.
    Threads(Receiver<Receiver<BlockResult>>),
    /// A small file, checked at once.
    Done,
}

impl JsonlItems {
    /// Read `reader` (the contents of `path`) in blocks of `block_size` bytes. A file of known
    /// `size` below one block is checked on the calling thread.
    pub fn new(path: &Path, mut reader: Box<dyn Read + Send>, size: Option<u64>, block_size: usize) -> Self {
        let block_size = block_size.max(1);
        let mut it = JsonlItems {
            path: path.to_path_buf(),
            source: Source::Done,
            pending: VecDeque::new(),
            base: 0,
            block_lines: 0,
        };
        if size.is_some_and(|s| s < block_size as u64) {
            let mut buf = vec![];
            match reader.read_to_end(&mut buf) {
                Ok(_) => {
                    let (segs, n) = check_block(buf);
                    it.pending = segs.into();
                    it.block_lines = n;
                }
                Err(e) => it.pending.push_back(Seg::Io(e)),
            }
            return it;
        }
        let (order_tx, order_rx) = sync_channel::<Receiver<BlockResult>>(IN_FLIGHT);
        let (work_tx, work_rx) = sync_channel::<(Vec<u8>, SyncSender<BlockResult>)>(1);
        let work_rx = Arc::new(Mutex::new(work_rx));
        for _ in 0..WORKERS {
            let work_rx = work_rx.clone();
            let spawned = std::thread::Builder::new().name("dlt-jsonl-check".into()).spawn(move || {
                loop {
                    let job = work_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((buf, done)) = job else { break };
                    // the iterator may be gone (dropped after an error): nothing to tell then
                    let _ = done.send(check_block(buf));
                }
            });
            if let Err(e) = spawned {
                it.pending.push_back(Seg::Io(e));
                return it;
            }
        }
        let spawned = std::thread::Builder::new().name("dlt-jsonl-read".into()).spawn(move || {
            let mut carry = vec![];
            loop {
                let block = match read_block(&mut *reader, &mut carry, block_size) {
                    Ok(Some(buf)) => Ok(buf),
                    Ok(None) => break,
                    Err(e) => Err(e),
                };
                let (done_tx, done_rx) = sync_channel(1);
                if order_tx.send(done_rx).is_err() {
                    break; // the iterator was dropped
                }
                match block {
                    Ok(buf) => {
                        if work_tx.send((buf, done_tx)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = done_tx.send((vec![Seg::Io(e)], 0));
                        break;
                    }
                }
            }
        });
        match spawned {
            Ok(_) => it.source = Source::Threads(order_rx),
            Err(e) => it.pending.push_back(Seg::Io(e)),
        }
        it
    }

    fn next_block(&mut self) -> bool {
        let Source::Threads(order) = &self.source else { return false };
        let Ok(done) = order.recv() else {
            self.source = Source::Done;
            return false;
        };
        match done.recv() {
            Ok((segs, n)) => {
                self.base += self.block_lines;
                self.block_lines = n;
                self.pending = segs.into();
                true
            }
            // a worker died with the block
            Err(_) => {
                self.pending.push_back(Seg::Io(io::Error::other("a thread checking the file stopped")));
                true
            }
        }
    }
}

impl Iterator for JsonlItems {
    type Item = Result<Item>;
    fn next(&mut self) -> Option<Result<Item>> {
        loop {
            if let Some(seg) = self.pending.pop_front() {
                return Some(match seg {
                    Seg::Lines(text, lines) => Ok(Item::RawJsonLines { text, lines }),
                    Seg::Single(s) => Ok(Item::RawJson(s)),
                    Seg::BadJson(n, msg) => Err(Error::BadInput {
                        location: format!("{}:{}", self.path.display(), self.base + n),
                        message: format!("malformed JSON: {msg}"),
                    }),
                    Seg::BadUtf8 => Err(Error::io(
                        &self.path,
                        io::Error::new(io::ErrorKind::InvalidData, "stream did not contain valid UTF-8"),
                    )),
                    Seg::Io(e) => {
                        // a read error ends the file
                        self.source = Source::Done;
                        Err(Error::io(&self.path, e))
                    }
                });
            }
            if !self.next_block() {
                return None;
            }
        }
    }
}
