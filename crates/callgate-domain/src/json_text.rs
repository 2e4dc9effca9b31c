//! Compact JSON text of a [`Value`], byte for byte what `serde_json::to_string` writes.
//!
//! Every accepted trigger stores its context (about a kilobyte of caller text) as JSON, and
//! serde_json looks up every byte of every string in its escape table. Almost no text needs an
//! escape, so each string is checked eight bytes at a time and, when clean, copied whole.
//! Numbers, `true`, `false` and `null` are written as serde_json writes them.

use serde_json::{Map, Value};
use std::fmt::Write;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Whether one of the eight bytes of `word` is a control character, `"` or `\`: the bytes
/// JSON escapes. Exact for "some byte", which is all the callers ask.
fn word_needs_escape(word: u64) -> bool {
    // The high bit of a byte is set where the byte is below `n` (n ≤ 128): exact for "some
    // byte", as borrows only run on from a byte that was below. No branches: all three tests.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x;
    let control = below(word, 0x20);
    let quote = below(word ^ (ONES * u64::from(b'"')), 1);
    let backslash = below(word ^ (ONES * u64::from(b'\\')), 1);
    (control | quote | backslash) & HIGH != 0
}

/// Whether some byte of `bytes` needs an escape in JSON. Eight bytes at a time, the last few
/// padded with spaces: most strings are short, and most need none.
pub(crate) fn needs_escape(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if word_needs_escape(u64::from_le_bytes(word)) {
            return true;
        }
    }
    let rest = chunks.remainder();
    let mut word = [b' '; 8];
    word[..rest.len()].copy_from_slice(rest);
    word_needs_escape(u64::from_le_bytes(word))
}

/// The escape serde_json writes for `byte`, if it needs one (`None` for every other byte,
/// including every byte of a multi-byte character).
fn short_escape(byte: u8) -> Option<&'static str> {
    Some(match byte {
        b'"' => "\\\"",
        b'\\' => "\\\\",
        0x08 => "\\b",
        0x09 => "\\t",
        0x0A => "\\n",
        0x0C => "\\f",
        0x0D => "\\r",
        _ => return None,
    })
}

/// Appends `s` as a JSON string, quotes included, exactly as serde_json writes it.
pub fn push_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push('"');
    if !needs_escape(s.as_bytes()) {
        out.push_str(s);
        out.push('"');
        return;
    }
    // `s[start..i]` needs no escape and is not written yet.
    let mut start = 0;
    for (i, &byte) in s.as_bytes().iter().enumerate() {
        if byte >= 0x20 && byte != b'"' && byte != b'\\' {
            continue;
        }
        // Escaped bytes are ASCII, so `i` is a character boundary.
        out.push_str(&s[start..i]);
        match short_escape(byte) {
            Some(esc) => out.push_str(esc),
            None => {
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0xF)]));
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        // serde_json displays a number exactly as it serialises it; writing to a String
        // cannot fail.
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => push_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_map(out, map),
    }
}

fn write_map(out: &mut String, map: &Map<String, Value>) {
    write_object(out, map.iter().map(|(k, v)| (k.as_str(), v)));
}

/// Appends the JSON object of `entries`, in their order.
pub(crate) fn write_object<'a>(
    out: &mut String,
    entries: impl IntoIterator<Item = (&'a str, &'a Value)>,
) {
    out.push('{');
    for (i, (key, item)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_string(out, key);
        out.push(':');
        write_value(out, item);
    }
    out.push('}');
}

/// `serde_json::to_string(value)`, faster for text-heavy values.
pub fn value_text(value: &Value) -> String {
    let mut out = String::with_capacity(256);
    write_value(&mut out, value);
    out
}

/// `serde_json::to_string(map)`, faster for text-heavy objects.
pub fn map_text(map: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(256);
    write_map(&mut out, map);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn every_byte_that_needs_an_escape_at_every_position_matches_serde_json() {
        let specials: Vec<char> = (0u8..0x20)
            .map(char::from)
            .chain(['"', '\\', '\u{7f}', 'é', '€', '😀'])
            .collect();
        for c in specials {
            for len in 0..20 {
                for pos in 0..=len {
                    let mut s: String = "abcdefghijklmnopqrstuvwxyz".chars().take(len).collect();
                    s.insert(pos.min(s.len()), c);
                    let v = Value::String(s);
                    assert_eq!(value_text(&v), serde_json::to_string(&v).unwrap(), "{v:?}");
                }
            }
        }
    }

    #[test]
    fn objects_arrays_numbers_and_keys_match_serde_json() {
        let v = json!({
            "name": "Ann \"the\" caller\n",
            "k\u{1}ey": [1, -2, 3.5, 1e300, -0.0, 18446744073709551615u64, null, true, false],
            "nested": {"deep": {"deeper": ["x", {"": ""}]}, "empty": {}, "none": []},
            "unicode": "日本語 — ok",
        });
        assert_eq!(value_text(&v), serde_json::to_string(&v).unwrap());
        let Value::Object(map) = v else {
            unreachable!()
        };
        assert_eq!(map_text(&map), serde_json::to_string(&map).unwrap());
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            any::<String>().prop_map(Value::String),
            "[ -~\\n\\t\"\\\\\\x00-\\x1f]{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((any::<String>(), inner), 0..8)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_value_is_written_as_serde_json_writes_it(v in any_value()) {
            prop_assert_eq!(value_text(&v), serde_json::to_string(&v).unwrap());
        }
    }
}
