//! AMF0 for RTMP commands and data messages: decoding into rml_amf0's value type, and encoding
//! of the server's own messages.
//!
//! rml_amf0 decodes nested objects by recursion with no depth limit, so a few kilobytes of
//! nested object markers from a hostile client overflow the stack and abort the whole process.
//! This decoder bounds nesting and never pre-allocates from a length field.
//!
//! The server's answers (`_result`, `onStatus`, ...) are encoded from borrowed [`Out`] values
//! straight into the message body: building them as rml_amf0 values took a map and a string
//! allocation per field, and rml_rtmp's message serialization another copy, for every command
//! of every join. A value that is already an rml_amf0 value (a publisher's metadata) is
//! encoded through [`Out::Value`].

use std::collections::HashMap;

use rml_amf0::Amf0Value;

// Type markers (AMF0 specification, section 2.1).
const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0A;
const LONG_STRING: u8 = 0x0C;

/// A value of one of the server's own messages, borrowed.
#[derive(Debug, Clone, Copy)]
pub enum Out<'a> {
    /// A number.
    Number(f64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(&'a str),
    /// `null`.
    Null,
    /// `undefined`.
    Undefined,
    /// An anonymous object, its properties in this order.
    Object(&'a [(&'a str, Out<'a>)]),
    /// An rml_amf0 value (decoded from a client, so at most [`MAX_DEPTH`] deep).
    Value(&'a Amf0Value),
}

/// Appends the AMF0 encoding of `values`.
pub fn encode(out: &mut Vec<u8>, values: &[Out<'_>]) {
    for value in values {
        encode_out(out, value);
    }
}

fn encode_out(out: &mut Vec<u8>, value: &Out<'_>) {
    match *value {
        Out::Number(n) => encode_number(out, n),
        Out::Bool(b) => out.extend_from_slice(&[BOOLEAN, u8::from(b)]),
        Out::Str(s) => encode_string(out, s),
        Out::Null => out.push(NULL),
        Out::Undefined => out.push(UNDEFINED),
        Out::Object(props) => encode_object(out, props.iter().copied()),
        Out::Value(value) => encode_value(out, value),
    }
}

fn encode_value(out: &mut Vec<u8>, value: &Amf0Value) {
    match value {
        Amf0Value::Number(n) => encode_number(out, *n),
        Amf0Value::Boolean(b) => encode_out(out, &Out::Bool(*b)),
        Amf0Value::Utf8String(s) => encode_string(out, s),
        Amf0Value::Null => out.push(NULL),
        Amf0Value::Undefined => out.push(UNDEFINED),
        Amf0Value::Object(props) => {
            encode_object(out, props.iter().map(|(k, v)| (k.as_str(), Out::Value(v))))
        }
        Amf0Value::StrictArray(items) => {
            out.push(STRICT_ARRAY);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for item in items {
                encode_value(out, item);
            }
        }
    }
}

fn encode_object<'a>(out: &mut Vec<u8>, props: impl Iterator<Item = (&'a str, Out<'a>)>) {
    out.push(OBJECT);
    for (key, value) in props {
        encode_key(out, key);
        encode_out(out, &value);
    }
    out.extend_from_slice(&[0, 0, OBJECT_END]);
}

fn encode_number(out: &mut Vec<u8>, n: f64) {
    out.push(NUMBER);
    out.extend_from_slice(&n.to_be_bytes());
}

/// A string value: the long form past 65535 bytes.
fn encode_string(out: &mut Vec<u8>, s: &str) {
    match u16::try_from(s.len()) {
        Ok(len) => {
            out.push(STRING);
            out.extend_from_slice(&len.to_be_bytes());
        }
        Err(_) => {
            out.push(LONG_STRING);
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(s.as_bytes());
}

/// A property name (decoded ones are at most 65535 bytes; ours are short).
fn encode_key(out: &mut Vec<u8>, key: &str) {
    let key = &key.as_bytes()[..key.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(key);
}

/// Deepest nesting of objects and arrays accepted.
pub const MAX_DEPTH: usize = 16;

/// A malformed AMF0 value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmfError {
    /// The value ended before its declared length.
    #[error("AMF0 value truncated at byte {0}")]
    Truncated(usize),
    /// A type marker this decoder does not know.
    #[error("unknown AMF0 marker {marker:#04x} at byte {offset}")]
    UnknownMarker {
        /// The marker byte.
        marker: u8,
        /// Where it was.
        offset: usize,
    },
    /// Objects or arrays nested deeper than [`MAX_DEPTH`].
    #[error("AMF0 nesting deeper than {MAX_DEPTH} at byte {0}")]
    TooDeep(usize),
    /// A string that is not UTF-8.
    #[error("AMF0 string at byte {0} is not UTF-8")]
    BadUtf8(usize),
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AmfError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(AmfError::Truncated(self.pos))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, AmfError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, AmfError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, AmfError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64, AmfError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    fn string(&mut self, len: usize) -> Result<String, AmfError> {
        let at = self.pos;
        let b = self.take(len)?;
        String::from_utf8(b.to_vec()).map_err(|_| AmfError::BadUtf8(at))
    }

    /// Object properties up to the end marker (an empty name followed by 0x09).
    fn properties(&mut self, depth: usize) -> Result<HashMap<String, Amf0Value>, AmfError> {
        let mut props = HashMap::new();
        loop {
            let len = usize::from(self.u16()?);
            if len == 0 {
                if self.pos >= self.bytes.len() {
                    // Some encoders omit the end marker at the very end of the message.
                    return Ok(props);
                }
                let at = self.pos;
                let marker = self.u8()?;
                if marker == 0x09 {
                    return Ok(props);
                }
                // An empty property name with a value: keep it under "".
                self.pos = at;
                let value = self.value(depth)?;
                props.insert(String::new(), value);
                continue;
            }
            let name = self.string(len)?;
            let value = self.value(depth)?;
            props.insert(name, value);
        }
    }

    fn value(&mut self, depth: usize) -> Result<Amf0Value, AmfError> {
        let at = self.pos;
        let marker = self.u8()?;
        Ok(match marker {
            0x00 => Amf0Value::Number(self.f64()?),
            0x01 => Amf0Value::Boolean(self.u8()? != 0),
            0x02 => {
                let len = usize::from(self.u16()?);
                Amf0Value::Utf8String(self.string(len)?)
            }
            0x03 | 0x08 | 0x10 => {
                if depth >= MAX_DEPTH {
                    return Err(AmfError::TooDeep(at));
                }
                if marker == 0x08 {
                    self.u32()?; // ECMA array count: not trusted, the end marker decides
                }
                if marker == 0x10 {
                    let len = usize::from(self.u16()?);
                    self.take(len)?; // typed object class name
                }
                Amf0Value::Object(self.properties(depth + 1)?)
            }
            0x05 => Amf0Value::Null,
            0x06 => Amf0Value::Undefined,
            0x07 => {
                self.u16()?; // reference: we keep no table; treat as undefined
                Amf0Value::Undefined
            }
            0x0A => {
                if depth >= MAX_DEPTH {
                    return Err(AmfError::TooDeep(at));
                }
                let count = self.u32()?;
                let mut items = Vec::new();
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Amf0Value::StrictArray(items)
            }
            0x0B => {
                let ms = self.f64()?;
                self.u16()?; // time zone, unused
                Amf0Value::Number(ms)
            }
            0x0C | 0x0F => {
                let len = self.u32()? as usize;
                Amf0Value::Utf8String(self.string(len)?)
            }
            0x0D => Amf0Value::Undefined, // unsupported
            _ => return Err(AmfError::UnknownMarker { marker, offset: at }),
        })
    }
}

/// Decodes every value in `bytes`.
pub fn decode_all(bytes: &[u8]) -> Result<Vec<Amf0Value>, AmfError> {
    let mut r = Reader { bytes, pos: 0 };
    let mut out = Vec::new();
    while r.pos < bytes.len() {
        out.push(r.value(0)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`encode`] writes, rml_amf0's decoder (and ours) reads back as the same values,
    /// and its bytes are rml_amf0's own encoding wherever the property order is fixed.
    #[test]
    fn encodes_what_rml_amf0_and_ours_decode() {
        let mut meta = HashMap::new();
        meta.insert("width".to_string(), Amf0Value::Number(1280.0));
        meta.insert("encoder".to_string(), Amf0Value::Utf8String("x".into()));
        meta.insert(
            "list".to_string(),
            Amf0Value::StrictArray(vec![Amf0Value::Null, Amf0Value::Boolean(true)]),
        );
        let meta = Amf0Value::Object(meta);
        let status = [
            ("level", Out::Str("status")),
            ("code", Out::Str("NetStream.Play.Start")),
        ];
        let mut bytes = Vec::new();
        encode(
            &mut bytes,
            &[
                Out::Str("onStatus"),
                Out::Number(0.0),
                Out::Null,
                Out::Object(&status),
                Out::Undefined,
                Out::Bool(false),
                Out::Value(&meta),
            ],
        );
        let expected = vec![
            Amf0Value::Utf8String("onStatus".into()),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
            Amf0Value::Object(HashMap::from([
                ("level".to_string(), Amf0Value::Utf8String("status".into())),
                (
                    "code".to_string(),
                    Amf0Value::Utf8String("NetStream.Play.Start".into()),
                ),
            ])),
            Amf0Value::Undefined,
            Amf0Value::Boolean(false),
            meta.clone(),
        ];
        let mut cursor = std::io::Cursor::new(bytes.clone());
        assert_eq!(
            rml_amf0::deserialize(&mut cursor).expect("rml_amf0 reads it"),
            expected
        );
        assert_eq!(decode_all(&bytes).expect("ours reads it"), expected);
        // Without objects (whose order rml_amf0 takes from a map), byte for byte the same.
        let plain = [
            Out::Str("_result"),
            Out::Number(2.0),
            Out::Null,
            Out::Number(1.0),
        ];
        let mut ours = Vec::new();
        encode(&mut ours, &plain);
        let theirs = rml_amf0::serialize(&vec![
            Amf0Value::Utf8String("_result".into()),
            Amf0Value::Number(2.0),
            Amf0Value::Null,
            Amf0Value::Number(1.0),
        ])
        .expect("rml_amf0 encodes it");
        assert_eq!(ours, theirs);
    }

    /// A string past 65535 bytes takes the long form, which both decoders read.
    #[test]
    fn long_strings_take_the_long_form() {
        let long = "a".repeat(70_000);
        let mut bytes = Vec::new();
        encode(&mut bytes, &[Out::Str(&long)]);
        assert_eq!(bytes[0], LONG_STRING);
        assert_eq!(
            decode_all(&bytes).expect("decodes"),
            vec![Amf0Value::Utf8String(long)]
        );
    }

    #[test]
    fn decodes_what_rml_amf0_encodes() {
        let mut obj = HashMap::new();
        obj.insert("app".to_string(), Amf0Value::Utf8String("live".into()));
        obj.insert(
            "tcUrl".to_string(),
            Amf0Value::Utf8String("rtmp://h/live".into()),
        );
        obj.insert("fpad".to_string(), Amf0Value::Boolean(false));
        let values = vec![
            Amf0Value::Utf8String("connect".into()),
            Amf0Value::Number(1.0),
            Amf0Value::Object(obj),
            Amf0Value::Null,
            Amf0Value::StrictArray(vec![Amf0Value::Number(2.5)]),
        ];
        let bytes = rml_amf0::serialize(&values).expect("encodes");
        assert_eq!(decode_all(&bytes).expect("decodes"), values);
    }

    #[test]
    fn ecma_array_as_ffmpeg_sends_metadata() {
        // "onMetaData", ECMA array {width: 640}
        let mut b = vec![0x02, 0, 10];
        b.extend_from_slice(b"onMetaData");
        b.extend_from_slice(&[0x08, 0, 0, 0, 1, 0, 5]);
        b.extend_from_slice(b"width");
        b.push(0x00);
        b.extend_from_slice(&640f64.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0x09]);
        let v = decode_all(&b).expect("decodes");
        let Amf0Value::Object(props) = &v[1] else {
            panic!("not an object: {v:?}")
        };
        assert_eq!(props.get("width"), Some(&Amf0Value::Number(640.0)));
    }

    #[test]
    fn deep_nesting_is_refused_without_recursing_forever() {
        let mut b = Vec::new();
        for _ in 0..100_000 {
            b.extend_from_slice(&[0x03, 0, 1, b'a']);
        }
        assert!(matches!(decode_all(&b), Err(AmfError::TooDeep(_))));
        let arrays = [0x0Au8, 0, 0, 0, 1].repeat(100_000);
        assert!(matches!(decode_all(&arrays), Err(AmfError::TooDeep(_))));
    }

    #[test]
    fn lengths_larger_than_the_message_are_errors() {
        assert!(matches!(
            decode_all(&[0x0C, 0xFF, 0xFF, 0xFF, 0xFF, b'a']),
            Err(AmfError::Truncated(_))
        ));
        assert!(matches!(
            decode_all(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(AmfError::Truncated(_))
        ));
        assert!(matches!(
            decode_all(&[0x02, 0x00]),
            Err(AmfError::Truncated(_))
        ));
        assert!(matches!(
            decode_all(&[0x42]),
            Err(AmfError::UnknownMarker { marker: 0x42, .. })
        ));
    }
}
