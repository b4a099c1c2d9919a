//! Avro object container files (`.avro`), as `replay` reads them: the header's writer
//! schema is resolved once against cs-pulse's reader schema, then every record of every
//! block is decoded with that plan. Codecs: null and deflate.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use apache_avro::{Codec, Schema};

use super::plan::{zigzag, Cursor, Decoded, Plan};
use super::reader;
use crate::model::Input;
use crate::model::Rejection;

/// A container file that cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// Reading the file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file is not a container cs-pulse can read, or its schema is incompatible.
    #[error("{0}")]
    Format(String),
}

/// An open container file.
pub struct Container {
    file: BufReader<File>,
    plan: Plan,
    sync: [u8; 16],
    codec: Codec,
    block: Vec<u8>,
    pos: usize,
    left_in_block: i64,
    /// Records read so far (1-based number of the last one).
    pub record_no: u64,
}

fn read_long(r: &mut impl Read) -> Result<Option<i64>, ContainerError> {
    let mut n: u64 = 0;
    let mut shift = 0;
    let mut byte = [0u8; 1];
    loop {
        if r.read(&mut byte)? == 0 {
            return if shift == 0 {
                Ok(None)
            } else {
                Err(ContainerError::Format("the file ends inside a number".into()))
            };
        }
        n |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            return Ok(Some(zigzag(n)));
        }
        shift += 7;
        if shift > 63 {
            return Err(ContainerError::Format("a number runs over 10 bytes".into()));
        }
    }
}

fn need_long(r: &mut impl Read) -> Result<i64, ContainerError> {
    read_long(r)?.ok_or_else(|| ContainerError::Format("the file ends early".into()))
}

fn read_bytes(r: &mut impl Read) -> Result<Vec<u8>, ContainerError> {
    let len = need_long(r)?;
    let len = usize::try_from(len).map_err(|_| ContainerError::Format(format!("negative length {len}")))?;
    if len > 64 << 20 {
        return Err(ContainerError::Format(format!("a header value of {len} bytes")));
    }
    let mut v = vec![0u8; len];
    r.read_exact(&mut v)?;
    Ok(v)
}

impl Container {
    /// Opens `path` and resolves its writer schema against `input`'s reader schema.
    pub fn open(path: &Path, input: Input) -> Result<Self, ContainerError> {
        let mut file = BufReader::new(File::open(path)?);
        let mut magic = [0u8; 4];
        file.read_exact(&mut magic)
            .map_err(|_| ContainerError::Format("too short for an Avro object container file".into()))?;
        if &magic != b"Obj\x01" {
            return Err(ContainerError::Format("not an Avro object container file (no `Obj 1` header)".into()));
        }
        let (mut schema_text, mut codec_name) = (None, String::from("null"));
        loop {
            let mut count = need_long(&mut file)?;
            if count == 0 {
                break;
            }
            if count < 0 {
                count = -count;
                need_long(&mut file)?;
            }
            for _ in 0..count {
                let key = String::from_utf8_lossy(&read_bytes(&mut file)?).into_owned();
                let value = read_bytes(&mut file)?;
                match key.as_str() {
                    "avro.schema" => schema_text = Some(String::from_utf8_lossy(&value).into_owned()),
                    "avro.codec" => codec_name = String::from_utf8_lossy(&value).into_owned(),
                    _ => {}
                }
            }
        }
        let mut sync = [0u8; 16];
        file.read_exact(&mut sync)?;
        let codec = match codec_name.as_str() {
            "null" | "" => Codec::Null,
            "deflate" => Codec::Deflate(Default::default()),
            other => {
                return Err(ContainerError::Format(format!("codec '{other}' is not supported; use null or deflate")))
            }
        };
        let text = schema_text.ok_or_else(|| ContainerError::Format("the header has no avro.schema".into()))?;
        let writer = Schema::parse_str(&text)
            .map_err(|e| ContainerError::Format(format!("the header's schema does not parse: {e}")))?;
        let plan = Plan::compile(&writer, &reader(input).spec).map_err(|e| {
            ContainerError::Format(format!("its schema cannot be read as {}: {e}", super::schema_of(input).1))
        })?;
        Ok(Self { file, plan, sync, codec, block: Vec::new(), pos: 0, left_in_block: 0, record_no: 0 })
    }

    /// Loads the next block; false at the end of the file.
    fn next_block(&mut self) -> Result<bool, ContainerError> {
        let Some(count) = read_long(&mut self.file)? else { return Ok(false) };
        let size = need_long(&mut self.file)?;
        let size = usize::try_from(size).map_err(|_| ContainerError::Format(format!("block size {size}")))?;
        self.block.resize(size, 0);
        self.file.read_exact(&mut self.block)?;
        let mut sync = [0u8; 16];
        self.file.read_exact(&mut sync)?;
        if sync != self.sync {
            return Err(ContainerError::Format(format!(
                "block before record {} has a wrong sync marker",
                self.record_no
            )));
        }
        self.codec
            .decompress(&mut self.block)
            .map_err(|e| ContainerError::Format(format!("block before record {}: {e}", self.record_no + 1)))?;
        self.pos = 0;
        self.left_in_block = count.max(0);
        Ok(true)
    }

    /// Decodes the next record and hands it to `f`. `None` at the end of the file. A
    /// record whose bytes do not decode fails, and so does the rest of its block (their
    /// boundaries are lost); reading goes on with the next block.
    pub fn next_with<T>(
        &mut self,
        f: impl FnOnce(&Decoded<'_>) -> Result<T, Rejection>,
    ) -> Result<Option<Result<T, Rejection>>, ContainerError> {
        while self.left_in_block == 0 {
            if !self.next_block()? {
                return Ok(None);
            }
        }
        self.left_in_block -= 1;
        self.record_no += 1;
        let mut cur = Cursor { buf: &self.block, pos: self.pos };
        let decoded = self.plan.decode_next(&mut cur);
        self.pos = cur.pos;
        match decoded {
            Ok(rec) => Ok(Some(f(&rec))),
            Err(e) => {
                let skipped = self.left_in_block;
                self.left_in_block = 0;
                Ok(Some(Err(Rejection::new(
                    e.reason,
                    format!("{}; the {skipped} records after it in its block are skipped", e.detail),
                ))))
            }
        }
    }
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container").field("record_no", &self.record_no).finish()
    }
}
