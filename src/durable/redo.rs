//! The redo log: every write to the database, in order, in files of our own, so that a forced
//! write costs one `pwrite` + `fdatasync` instead of a sled flush.
//!
//! Two files, `redo-0` and `redo-1`, are filled with zeros when first made, so that appending
//! frames never changes a file's size and `fdatasync` has no metadata to write. One is current;
//! at a checkpoint (sled flushed, so every frame so far is in sled) writing moves to the other,
//! which is overwritten from its start.
//!
//! ```text
//! file:  magic "VRDO" | version u32 LE | first lsn u64 LE | zeros to HEADER_LEN | frame…
//! frame: payload length u32 LE | CRC-32 of (lsn ++ payload) u32 LE | lsn u64 LE | payload
//! payload: op… where op = kind u8 (1 insert, 2 remove) | tree name length u8 | tree name
//!          | key length u32 LE | key | (insert only) value length u32 LE | value
//! ```
//!
//! A file's frames carry consecutive lsns from its header's first lsn; reading stops at the first
//! frame that is torn, fails its checksum or breaks the sequence (what a file held before it was
//! reused has older lsns), so a torn tail is never replayed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::StorageError;

const MAGIC: &[u8; 4] = b"VRDO";
const VERSION: u32 = 1;
/// The header takes a whole block, so frames never share a block with it.
const HEADER_LEN: u64 = 4096;
/// Each file's preallocated size. Writing past it still works (the file grows), but a checkpoint
/// is due long before: see [`RedoLog::wants_checkpoint`].
const FILE_LEN: u64 = 4 << 20;

/// One write to a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Insert {
        tree: Arc<str>,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Remove {
        tree: Arc<str>,
        key: Vec<u8>,
    },
}

impl Op {
    /// The name of the tree written.
    pub fn tree(&self) -> &str {
        let (Op::Insert { tree, .. } | Op::Remove { tree, .. }) = self;
        tree
    }
}

/// A batch of writes applied together, with its place in the sequence.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub lsn: u64,
    pub ops: Vec<Op>,
}

/// Appends `op` to a frame payload.
pub fn encode_op(payload: &mut Vec<u8>, op: &Op) {
    let (kind, tree, key, value) = match op {
        Op::Insert { tree, key, value } => (1u8, tree, key, Some(value)),
        Op::Remove { tree, key } => (2u8, tree, key, None),
    };
    payload.push(kind);
    payload.push(tree.len() as u8);
    payload.extend_from_slice(tree.as_bytes());
    for bytes in std::iter::once(key).chain(value) {
        payload.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        payload.extend_from_slice(bytes);
    }
}

/// Appends a frame of `payload` (encoded ops) with sequence number `lsn` to `out`.
pub fn encode_frame(out: &mut Vec<u8>, lsn: u64, payload: &[u8]) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&lsn.to_le_bytes());
    crc.update(payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Reads bytes off the front of a slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let len = self.u32()? as usize;
        Some(self.take(len)?.to_vec())
    }
}

fn decode_ops(payload: &[u8]) -> Option<Vec<Op>> {
    let mut r = Reader(payload);
    let mut ops = Vec::new();
    while !r.0.is_empty() {
        let kind = r.u8()?;
        let name_len = r.u8()? as usize;
        let tree = Arc::from(std::str::from_utf8(r.take(name_len)?).ok()?);
        let key = r.bytes()?;
        ops.push(match kind {
            1 => Op::Insert {
                tree,
                key,
                value: r.bytes()?,
            },
            2 => Op::Remove { tree, key },
            _ => return None,
        });
    }
    Some(ops)
}

/// The frames of one file's contents, up to the first that is torn, corrupt or out of sequence.
fn decode_file(contents: &[u8]) -> Vec<Frame> {
    let mut r = Reader(contents);
    let valid = r.take(4) == Some(MAGIC.as_slice()) && r.u32() == Some(VERSION);
    let (true, Some(mut lsn)) = (valid, r.u64()) else {
        return Vec::new();
    };
    let mut r = Reader(contents.get(HEADER_LEN as usize..).unwrap_or_default());
    let mut frames = Vec::new();
    while let Some(frame) = (|| {
        let len = r.u32()? as usize;
        let crc = r.u32()?;
        let lsn_bytes = r.take(8)?;
        let payload = r.take(len)?;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(lsn_bytes);
        hasher.update(payload);
        let frame_lsn = u64::from_le_bytes(lsn_bytes.try_into().ok()?);
        (hasher.finalize() == crc && frame_lsn == lsn).then_some(())?;
        Some(Frame {
            lsn,
            ops: decode_ops(payload)?,
        })
    })() {
        frames.push(frame);
        lsn += 1;
    }
    frames
}

/// The two redo files and where the next frame goes.
pub struct RedoLog {
    files: [File; 2],
    current: usize,
    offset: u64,
}

impl RedoLog {
    /// Opens (making them if needed) the redo files in `dir`; returns the log and every frame
    /// they hold, in lsn order. Writing starts only after [`RedoLog::restart`].
    pub fn open(dir: &Path) -> Result<(Self, Vec<Frame>), StorageError> {
        let open = |i: usize| open_file(&dir.join(format!("redo-{i}")));
        let files = [open(0)?, open(1)?];
        let mut frames: Vec<Frame> = Vec::new();
        let mut by_file = [read_all(&files[0])?, read_all(&files[1])?];
        by_file.sort_by_key(|frames| frames.first().map(|f| f.lsn));
        for file_frames in by_file {
            frames.extend(file_frames);
        }
        let log = RedoLog {
            files,
            current: 0,
            offset: HEADER_LEN,
        };
        Ok((log, frames))
    }

    /// Switches writing to the other file, whose first frame will have `first_lsn`. Everything
    /// in the current file must already be in sled, durably.
    pub fn restart(&mut self, first_lsn: u64) -> Result<(), StorageError> {
        self.current = 1 - self.current;
        let mut header = Vec::with_capacity(16);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&first_lsn.to_le_bytes());
        // Made durable by the next sync, together with the first frames: until then a crash
        // leaves the old header, whose frames are older than the checkpoint, so nothing is lost.
        self.files[self.current]
            .write_all_at(&header, 0)
            .map_err(|e| io_error("write the redo log header", e))?;
        self.offset = HEADER_LEN;
        Ok(())
    }

    /// Appends encoded frames (not yet durable).
    pub fn append(&mut self, frames: &[u8]) -> Result<(), StorageError> {
        self.files[self.current]
            .write_all_at(frames, self.offset)
            .map_err(|e| io_error("append to the redo log", e))?;
        self.offset += frames.len() as u64;
        Ok(())
    }

    /// Makes everything appended durable.
    pub fn sync(&self) -> Result<(), StorageError> {
        self.files[self.current]
            .sync_data()
            .map_err(|e| io_error("fdatasync the redo log", e))
    }

    /// Whether the current file is filling up, so a checkpoint should come soon.
    pub fn wants_checkpoint(&self) -> bool {
        self.offset > FILE_LEN / 2
    }
}

fn io_error(what: &str, e: std::io::Error) -> StorageError {
    StorageError(format!("cannot {what}: {e}"))
}

/// Opens a redo file, first making it full of zeros (and durable, name included) if it is new.
fn open_file(path: &Path) -> Result<File, StorageError> {
    let context = |e: std::io::Error| StorageError(format!("cannot open {}: {e}", path.display()));
    if let Ok(file) = OpenOptions::new().read(true).write(true).open(path) {
        return Ok(file);
    }
    let partial = path.with_extension("new");
    let mut file = File::create(&partial).map_err(context)?;
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..FILE_LEN / zeros.len() as u64 {
        file.write_all(&zeros).map_err(context)?;
    }
    file.sync_all().map_err(context)?;
    std::fs::rename(&partial, path).map_err(context)?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(context)?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(context)
}

fn read_all(file: &File) -> Result<Vec<Frame>, StorageError> {
    let len = file
        .metadata()
        .map_err(|e| io_error("read the redo log", e))?
        .len();
    let mut contents = vec![0; len as usize];
    file.read_exact_at(&mut contents, 0)
        .map_err(|e| io_error("read the redo log", e))?;
    Ok(decode_file(&contents))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(tree: &str, key: &[u8], value: &[u8]) -> Op {
        Op::Insert {
            tree: tree.into(),
            key: key.into(),
            value: value.into(),
        }
    }

    fn frame_bytes(lsn: u64, ops: &[Op]) -> Vec<u8> {
        let mut payload = Vec::new();
        for op in ops {
            encode_op(&mut payload, op);
        }
        let mut out = Vec::new();
        encode_frame(&mut out, lsn, &payload);
        out
    }

    #[test]
    fn frames_written_are_read_back_in_order_across_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, frames) = RedoLog::open(dir.path()).unwrap();
        assert!(frames.is_empty());
        let a = insert("t", b"k", b"v");
        let b = Op::Remove {
            tree: "other".into(),
            key: b"k2".to_vec(),
        };
        log.restart(1).unwrap();
        log.append(&frame_bytes(1, std::slice::from_ref(&a)))
            .unwrap();
        log.restart(2).unwrap();
        log.append(&frame_bytes(2, &[a.clone(), b.clone()]))
            .unwrap();
        log.append(&frame_bytes(3, std::slice::from_ref(&b)))
            .unwrap();
        log.sync().unwrap();
        drop(log);
        let (_, frames) = RedoLog::open(dir.path()).unwrap();
        assert_eq!(
            frames,
            vec![
                Frame {
                    lsn: 1,
                    ops: vec![a.clone()]
                },
                Frame {
                    lsn: 2,
                    ops: vec![a, b.clone()]
                },
                Frame {
                    lsn: 3,
                    ops: vec![b]
                },
            ]
        );
    }

    #[test]
    fn reading_stops_at_a_torn_frame_or_a_frame_out_of_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = RedoLog::open(dir.path()).unwrap();
        log.restart(10).unwrap();
        let op = insert("t", b"key", b"value");
        log.append(&frame_bytes(10, std::slice::from_ref(&op)))
            .unwrap();
        // A stale frame from an earlier use of the file: older lsn.
        log.append(&frame_bytes(4, std::slice::from_ref(&op)))
            .unwrap();
        drop(log);
        let (mut log, frames) = RedoLog::open(dir.path()).unwrap();
        assert_eq!(frames.iter().map(|f| f.lsn).collect::<Vec<_>>(), [10]);

        // The same file, reused: a frame torn mid-payload ends it.
        log.current = 0;
        log.restart(20).unwrap();
        let mut torn = frame_bytes(20, std::slice::from_ref(&op));
        let cut = torn.len() - 3;
        torn[cut] ^= 0xff;
        log.append(&torn).unwrap();
        drop(log);
        let (_, frames) = RedoLog::open(dir.path()).unwrap();
        assert!(frames.is_empty(), "{frames:?}");
    }

    #[test]
    fn new_files_are_preallocated_so_appends_do_not_grow_them() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = RedoLog::open(dir.path()).unwrap();
        log.restart(1).unwrap();
        log.append(&frame_bytes(1, &[insert("t", b"k", b"v")]))
            .unwrap();
        for i in 0..2 {
            let len = std::fs::metadata(dir.path().join(format!("redo-{i}")))
                .unwrap()
                .len();
            assert_eq!(len, FILE_LEN);
        }
    }
}
