//! Little-endian primitives over a byte buffer: a bounds-checked reader for
//! untrusted input and the matching writer.
//!
//! Every read names the field it reads, so a malformed frame is reported as
//! "client_name ran past the end of the frame", not as an offset.

use crate::codec::{DecodeError, EncodeError};
use crate::limits::MAX_FRAME_LEN;

/// Cursor over the body of one frame. Never reads past `buf`, never panics.
pub(crate) struct Reader<'a> {
    /// Bytes not yet consumed; shrinks from the front.
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// Bytes left in the body.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::ShortBody { field });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.array(field).map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        self.array(field).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.array(field).map(u64::from_le_bytes)
    }

    /// A bool is one byte, 0 or 1; anything else is malformed rather than
    /// "truthy", so that every frame has one meaning.
    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::BadBool { field, value }),
        }
    }

    /// A short string: u16 byte length, then UTF-8. The allocation is at most
    /// the bytes present in the frame.
    pub(crate) fn name(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let len = usize::from(self.u16(field)?);
        self.utf8(len, field)
    }

    /// A free-text string: u32 byte length, then UTF-8.
    pub(crate) fn text(&mut self, field: &'static str) -> Result<String, DecodeError> {
        // A length beyond the frame fails in `take`; the cast cannot truncate
        // a length that could pass it because frames are at most 64 KiB.
        let len = usize::try_from(self.u32(field)?).unwrap_or(usize::MAX);
        self.utf8(len, field)
    }

    fn utf8(&mut self, len: usize, field: &'static str) -> Result<String, DecodeError> {
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::BadUtf8 { field })
    }

    /// Ends decoding: a body with bytes left over is malformed, since accepting
    /// it would give two encodings to one message.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }
}

/// Appends little-endian values to a frame under construction.
pub(crate) struct Writer<'a> {
    out: &'a mut Vec<u8>,
    /// Length of `out` when this writer started; earlier bytes are not ours.
    start: usize,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        let start = out.len();
        Writer { out, start }
    }

    /// Bytes appended through this writer so far.
    pub(crate) fn written(&self) -> usize {
        self.out.len() - self.start
    }

    pub(crate) fn u8(&mut self, value: u8) {
        self.out.push(value);
    }

    pub(crate) fn u16(&mut self, value: u16) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn u32(&mut self, value: u32) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn u64(&mut self, value: u64) {
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn bool(&mut self, value: bool) {
        self.u8(u8::from(value));
    }

    /// Writes a short string. Callers check the field's own limit first; the
    /// u16 bound here only guards the encoding itself.
    pub(crate) fn name(&mut self, value: &str) -> Result<(), EncodeError> {
        let len = u16::try_from(value.len())
            .map_err(|_| EncodeError::FrameTooLarge { len: value.len() })?;
        self.u16(len);
        self.out.extend_from_slice(value.as_bytes());
        Ok(())
    }

    /// Writes a free-text string. A string longer than a whole frame is
    /// refused before it is copied.
    pub(crate) fn text(&mut self, value: &str) -> Result<(), EncodeError> {
        if value.len() > MAX_FRAME_LEN {
            return Err(EncodeError::FrameTooLarge { len: value.len() });
        }
        // Cannot fail: MAX_FRAME_LEN fits in u32.
        let len = u32::try_from(value.len())
            .map_err(|_| EncodeError::FrameTooLarge { len: value.len() })?;
        self.u32(len);
        self.out.extend_from_slice(value.as_bytes());
        Ok(())
    }
}
