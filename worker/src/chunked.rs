//! Incremental decoding of `Transfer-Encoding: chunked` request bodies (4.3): extensions ignored,
//! trailers read and discarded, `limit-post` applied to the decoded size as soon as it is exceeded.
//!
//! Pure (bytes in, bytes out), so it is tested split at every byte and fuzzed.

/// Why a chunked body is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// Not valid chunked syntax: 400.
    Malformed,
    /// The decoded size exceeds `limit-post`: 413.
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size.
    Size,
    /// After the size: extensions (or whitespace) up to the line end.
    Extension,
    /// A CR ended the size line; LF expected.
    SizeLf,
    /// Chunk data, `remaining` bytes left.
    Data,
    /// After chunk data: CRLF expected.
    DataCr,
    DataLf,
    /// Start of a trailer line, or of the final empty line.
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    TrailerLf,
    /// A CR started the final empty line; LF expected.
    EndLf,
    Done,
}

/// Longest size line (digits and extensions) and total trailer section accepted.
const MAX_SIZE_LINE: usize = 4096;
const MAX_TRAILERS: usize = 65536;

/// The decoder's state between reads.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    digits: usize,
    remaining: u64,
    line: usize,
    trailers: usize,
    decoded: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: State::Size,
            size: 0,
            digits: 0,
            remaining: 0,
            line: 0,
            trailers: 0,
            decoded: 0,
        }
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder::default()
    }

    /// The final empty line was read: the body is complete.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decoded bytes so far.
    pub fn decoded(&self) -> u64 {
        self.decoded
    }

    /// Decodes `input`, appending chunk data to `out`; returns how many input bytes were consumed
    /// (all of them unless the body ended: what follows belongs to the next request).
    /// `limit` is the maximum decoded size (0 = unlimited).
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: u64,
    ) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Done => break,
                State::Data => {
                    let take = (input.len() - i).min(self.remaining as usize);
                    out.extend_from_slice(&input[i..i + take]);
                    self.remaining -= take as u64;
                    i += take;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        // 15 hex digits is already far beyond any body we accept.
                        if self.digits == 15 {
                            return Err(ChunkError::Malformed);
                        }
                        self.size = self.size * 16 + (b as char).to_digit(16).unwrap_or(0) as u64;
                        self.digits += 1;
                    }
                    b';' | b' ' | b'\t' if self.digits > 0 => self.state = State::Extension,
                    b'\r' if self.digits > 0 => self.state = State::SizeLf,
                    b'\n' if self.digits > 0 => self.end_size_line(limit)?,
                    _ => return Err(ChunkError::Malformed),
                },
                State::Extension => match b {
                    b'\r' => self.state = State::SizeLf,
                    b'\n' => self.end_size_line(limit)?,
                    _ => {
                        self.line += 1;
                        if self.line > MAX_SIZE_LINE || b < 0x09 || b == 0x7f {
                            return Err(ChunkError::Malformed);
                        }
                    }
                },
                State::SizeLf => match b {
                    b'\n' => self.end_size_line(limit)?,
                    _ => return Err(ChunkError::Malformed),
                },
                State::DataCr => match b {
                    b'\r' => self.state = State::DataLf,
                    b'\n' => self.state = State::Size,
                    _ => return Err(ChunkError::Malformed),
                },
                State::DataLf => match b {
                    b'\n' => self.state = State::Size,
                    _ => return Err(ChunkError::Malformed),
                },
                State::TrailerStart => match b {
                    b'\r' => self.state = State::EndLf,
                    b'\n' => self.state = State::Done,
                    _ => {
                        self.count_trailer()?;
                        self.state = State::Trailer;
                    }
                },
                State::Trailer => match b {
                    b'\r' => self.state = State::TrailerLf,
                    b'\n' => self.state = State::TrailerStart,
                    _ => self.count_trailer()?,
                },
                State::TrailerLf => match b {
                    b'\n' => self.state = State::TrailerStart,
                    _ => return Err(ChunkError::Malformed),
                },
                State::EndLf => match b {
                    b'\n' => self.state = State::Done,
                    _ => return Err(ChunkError::Malformed),
                },
            }
            i += 1;
        }
        Ok(i)
    }

    fn end_size_line(&mut self, limit: u64) -> Result<(), ChunkError> {
        let size = self.size;
        self.size = 0;
        self.digits = 0;
        self.line = 0;
        if size == 0 {
            self.state = State::TrailerStart;
            return Ok(());
        }
        self.decoded += size;
        if limit > 0 && self.decoded > limit {
            return Err(ChunkError::TooLarge);
        }
        self.remaining = size;
        self.state = State::Data;
        Ok(())
    }

    fn count_trailer(&mut self) -> Result<(), ChunkError> {
        self.trailers += 1;
        if self.trailers > MAX_TRAILERS {
            return Err(ChunkError::Malformed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes; returns the body and the unconsumed rest.
    fn decode_in_steps(
        input: &[u8],
        step: usize,
        limit: u64,
    ) -> Result<(Vec<u8>, Vec<u8>), ChunkError> {
        let mut decoder = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut pos = 0;
        while !decoder.is_done() {
            assert!(pos < input.len(), "incomplete");
            let end = (pos + step).min(input.len());
            pos += decoder.decode(&input[pos..end], &mut out, limit)?;
        }
        Ok((out, input[pos..].to_vec()))
    }

    #[test]
    fn decodes_at_every_split() {
        let input = b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for step in 1..input.len() {
            let (body, rest) = decode_in_steps(input, step, 0).unwrap();
            assert_eq!(body, b"hello world", "step {step}");
            assert_eq!(rest, b"NEXT", "step {step}");
        }
    }

    #[test]
    fn bare_lf_is_accepted() {
        let (body, rest) = decode_in_steps(b"3\nabc\n0\n\n", 100, 0).unwrap();
        assert_eq!(body, b"abc");
        assert!(rest.is_empty());
    }

    #[test]
    fn limit_applies_to_decoded_size() {
        assert_eq!(
            decode_in_steps(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 100, 10),
            Err(ChunkError::TooLarge)
        );
        assert!(decode_in_steps(b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", 100, 10).is_ok());
    }

    #[test]
    fn malformed_inputs() {
        for input in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"5\rX",
            b"ffffffffffffffff\r\n",
            b"0\r\nTrailer\rX",
        ] {
            let mut decoder = ChunkedDecoder::new();
            assert_eq!(
                decoder.decode(input, &mut Vec::new(), 0),
                Err(ChunkError::Malformed),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
