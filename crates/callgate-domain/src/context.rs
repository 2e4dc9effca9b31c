//! Size and shape limits for caller-supplied JSON objects (SPEC §2.1): `initial_context` is at
//! most 64 KiB serialised and 16 levels deep, `metadata` at most 16 KiB.
//!
//! The limits exist because both objects are stored with every run and copied into every
//! webhook; they are checked on the parsed value so the rule does not depend on how the client
//! formatted its JSON.

use serde_json::{Map, Value};

/// Largest accepted `initial_context`, in bytes of compact JSON.
pub const MAX_CONTEXT_BYTES: usize = 64 * 1024;
/// Deepest accepted `initial_context`; the object itself is level 1.
pub const MAX_CONTEXT_DEPTH: usize = 16;
/// Largest accepted `metadata`, in bytes of compact JSON.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Depth limit applied to `metadata`. SPEC §2.1 only bounds its size; the same depth as the
/// context keeps webhook consumers safe from pathological nesting.
pub const MAX_METADATA_DEPTH: usize = MAX_CONTEXT_DEPTH;

/// Why an object was refused. Messages have no subject so the caller can name the field:
/// `format!("initial_context {err}")` reads "initial_context must be a JSON object".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// The value is not a JSON object (an array, string, number, … was sent).
    #[error("must be a JSON object")]
    NotObject,
    /// The compact serialisation is longer than `limit` bytes.
    #[error("is larger than {limit} bytes")]
    TooLarge {
        /// The byte limit that was exceeded.
        limit: usize,
    },
    /// Objects or arrays are nested more than `limit` levels deep.
    #[error("is nested deeper than {limit} levels")]
    TooDeep {
        /// The depth limit that was exceeded.
        limit: usize,
    },
}

impl ContextError {
    /// The message with the field name in front, e.g. "metadata is larger than 16384 bytes".
    pub fn message_for(&self, field: &str) -> String {
        format!("{field} {self}")
    }
}

/// Checks that `value` is an object no deeper than `max_depth` whose compact JSON is at most
/// `max_bytes` long. Depth: the object itself is level 1 and every nested object or array adds
/// one level; scalars add none.
pub fn check_object(value: &Value, max_bytes: usize, max_depth: usize) -> Result<(), ContextError> {
    if !value.is_object() {
        return Err(ContextError::NotObject);
    }
    if compact_len(value, max_depth)? > max_bytes {
        return Err(ContextError::TooLarge { limit: max_bytes });
    }
    Ok(())
}

/// [`check_object`] with the `initial_context` limits.
pub fn check_initial_context(value: &Value) -> Result<(), ContextError> {
    check_object(value, MAX_CONTEXT_BYTES, MAX_CONTEXT_DEPTH)
}

/// [`check_object`] with the `metadata` limits.
pub fn check_metadata(value: &Value) -> Result<(), ContextError> {
    check_object(value, MAX_METADATA_BYTES, MAX_METADATA_DEPTH)
}

/// A run's `initial_context`, with the JSON text the caller sent for it for as long as the
/// object is unchanged. Storing that text instead of serialising the object again spares a
/// walk of about a kilobyte on every trigger; any change through [`Self::map_mut`] drops it.
#[derive(Debug, Clone, Default)]
pub struct InitialContext {
    map: Map<String, Value>,
    /// JSON text that parses to exactly `map`, while it does.
    sent: Option<Box<str>>,
}

impl InitialContext {
    /// A context with no text of its own: it is serialised when stored.
    pub fn new(map: Map<String, Value>) -> Self {
        Self { map, sent: None }
    }

    /// `map` together with `text`, the JSON it was parsed from. The caller vouches for that:
    /// the pair comes from one parse of the request body (checked in debug builds).
    pub fn as_sent(map: Map<String, Value>, text: Box<str>) -> Self {
        debug_assert_eq!(
            serde_json::from_str::<Map<String, Value>>(&text)
                .ok()
                .as_ref(),
            Some(&map),
            "the sent text must parse to the context"
        );
        Self {
            map,
            sent: Some(text),
        }
    }

    pub fn map(&self) -> &Map<String, Value> {
        &self.map
    }

    /// The object, for a change; the sent text no longer describes it.
    pub fn map_mut(&mut self) -> &mut Map<String, Value> {
        self.sent = None;
        &mut self.map
    }

    /// The context as JSON text: the caller's (moved out, not copied, so the next call
    /// serialises) or `serde_json::to_string` of the object. Either parses to the same object.
    pub fn take_text(&mut self) -> String {
        match self.sent.take() {
            Some(text) => text.into(),
            None => crate::json_text::map_text(&self.map),
        }
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.map
    }
}

/// The length of `value` as compact JSON (what serde_json writes), counted without writing it
/// (every accepted trigger is measured, and serialising to count cost as much as the
/// serialisation the store makes later), or `TooDeep` past `max_depth` (the value itself is
/// level 1, every nested object or array adds one, scalars add none). One walk with an
/// explicit stack: a value built in code is not capped by serde_json's recursion limit, and
/// cannot overflow this.
fn compact_len(value: &Value, max_depth: usize) -> Result<usize, ContextError> {
    let mut len = 0usize;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 1)];
    while let Some((v, depth)) = stack.pop() {
        let own = match v {
            Value::Null | Value::Bool(true) => 4,
            Value::Bool(false) => 5,
            Value::Number(n) => number_len(n),
            Value::String(s) => string_len(s),
            Value::Array(_) | Value::Object(_) if depth > max_depth => {
                return Err(ContextError::TooDeep { limit: max_depth });
            }
            Value::Array(items) => {
                stack.extend(items.iter().map(|c| (c, depth + 1)));
                2 + items.len().saturating_sub(1)
            }
            Value::Object(map) => {
                stack.extend(map.values().map(|c| (c, depth + 1)));
                // Braces, one colon per member and the commas between members.
                let keys: usize = map.keys().map(|k| string_len(k)).sum();
                2 + map.len() + map.len().saturating_sub(1) + keys
            }
        };
        len = len.saturating_add(own);
    }
    Ok(len)
}

/// A JSON string with its quotes and serde_json's escapes: two characters for `"`, `\\` and
/// the control characters with a short form, six (`\u00XX`) for the other control characters.
/// Scanned eight bytes at a time first: almost no text needs an escape, and a byte-by-byte count
/// cost as much as writing the text.
fn string_len(s: &str) -> usize {
    fn escapes(bytes: &[u8]) -> usize {
        bytes
            .iter()
            .map(|b| match b {
                b'"' | b'\\' | 0x08 | 0x09 | 0x0A | 0x0C | 0x0D => 1,
                0x00..=0x1F => 5,
                _ => 0,
            })
            .sum()
    }
    if !crate::json_text::needs_escape(s.as_bytes()) {
        return s.len() + 2;
    }
    s.len() + 2 + escapes(s.as_bytes())
}

/// serde_json displays a number exactly as it serialises it.
fn number_len(n: &serde_json::Number) -> usize {
    struct Count(usize);
    impl std::fmt::Write for Count {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0 += s.len();
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = std::fmt::write(&mut c, format_args!("{n}"));
    c.0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        // `levels` objects inside each other, the outermost included.
        let mut v = json!({});
        for _ in 1..levels {
            v = json!({ "a": v });
        }
        v
    }

    #[test]
    fn only_objects_are_accepted() {
        for v in [json!([]), json!("x"), json!(1), json!(null), json!(true)] {
            assert_eq!(check_initial_context(&v), Err(ContextError::NotObject));
        }
        assert_eq!(check_initial_context(&json!({})), Ok(()));
    }

    #[test]
    fn sixteen_levels_pass_and_seventeen_fail() {
        assert_eq!(check_initial_context(&nested(16)), Ok(()));
        assert_eq!(
            check_initial_context(&nested(17)),
            Err(ContextError::TooDeep { limit: 16 })
        );
    }

    #[test]
    fn arrays_count_as_levels_and_scalars_do_not() {
        assert_eq!(check_object(&json!({"a": [1, "x"]}), 1000, 2), Ok(()));
        assert_eq!(
            check_object(&json!({"a": [[1]]}), 1000, 2),
            Err(ContextError::TooDeep { limit: 2 })
        );
    }

    #[test]
    fn size_is_measured_as_compact_json() {
        let v = json!({"k": "x".repeat(10)}); // {"k":"xxxxxxxxxx"} = 18 bytes
        assert_eq!(serde_json::to_vec(&v).unwrap().len(), 18);
        assert_eq!(check_object(&v, 18, 16), Ok(()));
        assert_eq!(
            check_object(&v, 17, 16),
            Err(ContextError::TooLarge { limit: 17 })
        );
    }

    #[test]
    fn counted_size_is_the_serialised_size() {
        let values = [
            json!({}),
            json!([]),
            json!({"a": null, "b": true, "c": false, "d": [], "e": {}}),
            json!({"quote\"key": "back\\slash", "ctl": "\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f}\u{7f}"}),
            json!({"unicode": "héllo wörld ✓ 😀", "emoji_key_😀": 1}),
            json!({"n": [0, -1, 18446744073709551615u64, -9223372036854775808i64, 1.5, -0.0, 1e300, 2.5e-8, 0.1, 123456789.125]}),
            json!({"deep": [[{"x": [1, {"y": "z"}]}], [], [null]], "tail": "t"}),
            json!({"visits": [{"date": "2026-11-23", "notes": "line\nbreak"}, {"date": "2026-11-24"}]}),
            // Escapes at every position of an eight-byte word, and bytes just above the
            // control range and with the high bit set next to them.
            json!({"s": "abcdefg\"abcdef\\abcde\u{1}abcd\nabc\u{1f}ab\"\"a  !!#[]]\u{7f}é\u{80}ÿ\u{0}"}),
            json!({"exactly_eight": "abcdefgh", "sixteen": "abcdefghabcdefg\"", "tail\t": "x"}),
        ];
        for v in values {
            let expected = serde_json::to_vec(&v).unwrap().len();
            assert_eq!(compact_len(&v, 16), Ok(expected), "{v}");
        }
    }

    #[test]
    fn metadata_limit_is_16_kib() {
        let ok = json!({"k": "x".repeat(16 * 1024 - 8)});
        assert_eq!(check_metadata(&ok), Ok(()));
        let big = json!({"k": "x".repeat(16 * 1024)});
        assert_eq!(
            check_metadata(&big),
            Err(ContextError::TooLarge { limit: 16384 })
        );
        assert_eq!(check_initial_context(&big), Ok(()));
    }

    #[test]
    fn very_deep_values_built_in_code_do_not_overflow_the_stack() {
        // Built with constructors, not `json!`, which would re-serialise `v` at every step.
        let mut v = json!(1);
        for _ in 0..100_000 {
            v = Value::Array(vec![v]);
        }
        let mut outer = serde_json::Map::new();
        outer.insert("a".to_owned(), v);
        let v = Value::Object(outer);
        assert_eq!(
            check_initial_context(&v),
            Err(ContextError::TooDeep { limit: 16 })
        );
        // Dropping such a value recurses inside serde_json; leak it to keep the test about us.
        std::mem::forget(v);
    }

    #[test]
    fn messages_name_the_field() {
        assert_eq!(
            ContextError::NotObject.message_for("initial_context"),
            "initial_context must be a JSON object"
        );
        assert_eq!(
            ContextError::TooDeep { limit: 16 }.message_for("initial_context"),
            "initial_context is nested deeper than 16 levels"
        );
    }
}
