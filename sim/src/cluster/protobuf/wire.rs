//! The protobuf wire format, read field by field without a schema. prost's own reader
//! (`prost::encoding`) is hidden from its public API, so this one is kept here; it is the
//! whole of the format: varints, 64- and 32-bit words and length-delimited bytes.

/// A field's value as the wire carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum WireError {
    #[error("unexpected end of data")]
    Truncated,
    #[error("varint longer than 10 bytes")]
    LongVarint,
    #[error("unsupported wire type {0}")]
    WireType(u64),
    #[error("field number 0")]
    ZeroTag,
}

/// Reads `(field number, value)` pairs from a message's bytes.
pub(super) struct Fields<'a> {
    rest: &'a [u8],
}

pub(super) fn fields(bytes: &[u8]) -> Fields<'_> {
    Fields { rest: bytes }
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for (i, byte) in self.rest.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.rest = &self.rest[i + 1..];
                return Ok(value);
            }
        }
        Err(if self.rest.len() < 10 { WireError::Truncated } else { WireError::LongVarint })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn next_field(&mut self) -> Result<(u32, Wire<'a>), WireError> {
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| WireError::LongVarint)?;
        if tag == 0 {
            return Err(WireError::ZeroTag);
        }
        let value = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| WireError::Truncated)?)),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| WireError::Truncated)?;
                Wire::Bytes(self.take(len)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| WireError::Truncated)?)),
            other => return Err(WireError::WireType(other)),
        };
        Ok((tag, value))
    }

    /// The varints of a packed repeated field.
    pub fn packed(bytes: &'a [u8]) -> Result<Vec<u64>, WireError> {
        let mut reader = Fields { rest: bytes };
        let mut out = Vec::new();
        while !reader.rest.is_empty() {
            out.push(reader.varint()?);
        }
        Ok(out)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Wire<'a>), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let next = self.next_field();
        if next.is_err() {
            self.rest = &[];
        }
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_wire_type_and_refuses_truncation() {
        // field 1 varint 300, field 2 bytes "hi", field 3 fixed64 1, field 4 fixed32 2
        let bytes = [0x08, 0xac, 0x02, 0x12, 2, b'h', b'i', 0x19, 1, 0, 0, 0, 0, 0, 0, 0, 0x25, 2, 0, 0, 0];
        let read: Vec<_> = fields(&bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            read,
            [(1, Wire::Varint(300)), (2, Wire::Bytes(b"hi")), (3, Wire::Fixed64(1)), (4, Wire::Fixed32(2))]
        );
        assert_eq!(fields(&[0x12, 5, b'a']).next(), Some(Err(WireError::Truncated)));
        assert_eq!(fields(&[0x0b]).next(), Some(Err(WireError::WireType(3))));
        assert_eq!(fields(&[0x08, 0xff]).next(), Some(Err(WireError::Truncated)));
        assert_eq!(
            fields(&[0x08; 1].iter().chain(&[0xff; 11]).copied().collect::<Vec<_>>()).next(),
            Some(Err(WireError::LongVarint))
        );
        assert_eq!(Fields::packed(&[1, 0xac, 0x02]).unwrap(), [1, 300]);
    }
}
