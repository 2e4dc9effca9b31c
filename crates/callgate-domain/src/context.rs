//! Size and shape limits for caller-supplied JSON objects (SPEC §2.1): `initial_context` is at
//! most 64 KiB serialised and 16 levels deep, `metadata` at most 16 KiB.
//!
//! The limits exist because both objects are stored with every run and copied into every
//! webhook; they are checked on the parsed value so the rule does not depend on how the client
//! formatted its JSON.

use crate::object_text::{Scan, scan};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

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
    match value {
        Value::Object(map) => check_map(map, max_bytes, max_depth),
        _ => Err(ContextError::NotObject),
    }
}

fn check_map(
    map: &Map<String, Value>,
    max_bytes: usize,
    max_depth: usize,
) -> Result<(), ContextError> {
    if object_len(map, max_depth)? > max_bytes {
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

/// A run's `initial_context`: the object, or the JSON text the caller sent for it, or both.
///
/// A trigger's context is usually only stored and read for a few template variables, so when
/// it comes as text ([`Self::from_text`]) the object is not built unless something needs all
/// of it: the limits are checked on the text, [`Self::get`] parses one member, and the store
/// writes the text as sent. Any change through [`Self::map_mut`] drops the text.
#[derive(Debug, Clone, Default)]
pub struct InitialContext {
    /// The object, when it came as one or has been changed.
    map: Option<Map<String, Value>>,
    /// The object parsed from `sent` on first use, when it came as text only.
    parsed: OnceLock<Map<String, Value>>,
    /// JSON text that parses to exactly the object, while it does.
    sent: Option<Sent>,
}

#[derive(Debug, Clone)]
struct Sent {
    text: Arc<str>,
    /// What one pass over the text found; `None` when the text came with its object.
    scan: Option<Scan>,
}

/// How much longer than its text an object's compact JSON can be, for a text that [`scan`]
/// accepted: white space, duplicate names and escapes only shorten it, and a number without
/// an exponent grows by at most two bytes (`100000000000000000000` is written
/// `100000000000000000000.0`, `-0` is written `-0.0`), so at most twofold; three for margin.
const TEXT_GROWTH: usize = 3;

impl InitialContext {
    /// A context with no text of its own: it is serialised when stored.
    pub fn new(map: Map<String, Value>) -> Self {
        Self {
            map: Some(map),
            parsed: OnceLock::new(),
            sent: None,
        }
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
            map: Some(map),
            parsed: OnceLock::new(),
            sent: Some(Sent {
                text: text.into(),
                scan: None,
            }),
        }
    }

    /// The context of `text`, the JSON text of an object that serde_json's skipping parse
    /// (`RawValue`) has accepted, without parsing it into values; `None` when that parse could
    /// still fail on it (see [`scan`]), and the caller must parse it to report why.
    pub fn from_text(text: &str) -> Option<Self> {
        let scan = scan(text)?;
        Some(Self {
            map: None,
            parsed: OnceLock::new(),
            sent: Some(Sent {
                text: text.into(),
                scan: Some(scan),
            }),
        })
    }

    /// The object, parsed from the sent text on first use.
    pub fn map(&self) -> &Map<String, Value> {
        match &self.map {
            Some(m) => m,
            None => self.parsed.get_or_init(|| self.parse_sent()),
        }
    }

    /// The sent text's object. `from_text` accepted only text whose parse cannot fail.
    fn parse_sent(&self) -> Map<String, Value> {
        self.sent
            .as_ref()
            .and_then(|s| serde_json::from_str(&s.text).ok())
            .unwrap_or_default()
    }

    /// The object if it has been built.
    fn built(&self) -> Option<&Map<String, Value>> {
        self.map.as_ref().or_else(|| self.parsed.get())
    }

    /// The object, for a change; the sent text no longer describes it.
    pub fn map_mut(&mut self) -> &mut Map<String, Value> {
        if self.map.is_none() {
            let parsed = self.parsed.take().unwrap_or_else(|| self.parse_sent());
            self.map = Some(parsed);
        }
        self.sent = None;
        self.map.get_or_insert_with(Map::new)
    }

    /// The top-level member `name`: borrowed from the object once built, else parsed alone
    /// from the sent text.
    pub fn get(&self, name: &str) -> Option<Cow<'_, Value>> {
        if let Some(map) = self.built() {
            return map.get(name).map(Cow::Borrowed);
        }
        let member = self.sent.as_ref().and_then(|s| {
            let members = s.scan.as_ref()?.members.as_ref()?;
            // serde_json keeps the last of equal names.
            let m = members
                .iter()
                .rev()
                .find(|m| s.text.get(m.key.clone()) == Some(name));
            Some(m.and_then(|m| {
                let value = s.text.get(m.value.clone())?;
                serde_json::from_str::<Value>(value).ok()
            }))
        });
        match member {
            Some(found) => found.map(Cow::Owned),
            None => self.map().get(name).map(Cow::Borrowed),
        }
    }

    /// Checks the limits of [`check_object`]. While the object is not built, the sent text can
    /// only say yes: it nests at least as deep as its object and is at least half as long
    /// (a repeated name drops a value, perhaps a deep one), so a text within the limits stands
    /// for an object within them, and anything else is settled on the object.
    pub fn check(&self, max_bytes: usize, max_depth: usize) -> Result<(), ContextError> {
        if self.built().is_none()
            && let Some(Sent {
                text,
                scan: Some(scan),
            }) = &self.sent
            && text.len().saturating_mul(TEXT_GROWTH) <= max_bytes
            && scan.depth <= max_depth
        {
            return Ok(());
        }
        check_map(self.map(), max_bytes, max_depth)
    }

    /// [`Self::check`] with the `initial_context` limits.
    pub fn check_initial_context(&self) -> Result<(), ContextError> {
        self.check(MAX_CONTEXT_BYTES, MAX_CONTEXT_DEPTH)
    }

    /// The context as JSON text: the caller's, shared, or the object serialised. Either parses
    /// to the same object.
    pub fn text(&self) -> Arc<str> {
        match &self.sent {
            Some(s) => s.text.clone(),
            None => crate::json_text::map_text(self.map()).into(),
        }
    }

    pub fn into_map(mut self) -> Map<String, Value> {
        match self.map.take() {
            Some(m) => m,
            None => self.parsed.take().unwrap_or_else(|| self.parse_sent()),
        }
    }
}

impl PartialEq for InitialContext {
    fn eq(&self, other: &Self) -> bool {
        self.map() == other.map()
    }
}

/// The length of `value` as compact JSON (what serde_json writes), counted without writing it
/// (every accepted trigger is measured, and serialising to count cost as much as the
/// serialisation the store makes later), or `TooDeep` past `max_depth` (the value itself is
/// level 1, every nested object or array adds one, scalars add none). One walk with an
/// explicit stack: a value built in code is not capped by serde_json's recursion limit, and
/// cannot overflow this.
#[cfg(test)]
fn compact_len(value: &Value, max_depth: usize) -> Result<usize, ContextError> {
    walk_len(vec![(value, 1)], max_depth)
}

/// [`compact_len`] of an object held as a map.
fn object_len(map: &Map<String, Value>, max_depth: usize) -> Result<usize, ContextError> {
    if max_depth < 1 {
        return Err(ContextError::TooDeep { limit: max_depth });
    }
    let nested = walk_len(map.values().map(|c| (c, 2)).collect(), max_depth)?;
    Ok(nested.saturating_add(object_own_len(map)))
}

/// Braces, one colon per member, the commas between members, and the keys.
fn object_own_len(map: &Map<String, Value>) -> usize {
    let keys: usize = map.keys().map(|k| string_len(k)).sum();
    2 + map.len() + map.len().saturating_sub(1) + keys
}

/// The summed lengths of the values on `stack` (each with its depth) and everything inside.
fn walk_len(mut stack: Vec<(&Value, usize)>, max_depth: usize) -> Result<usize, ContextError> {
    let mut len = 0usize;
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
                object_own_len(map)
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

    /// Texts the skipping parse accepts and `scan` keeps: nesting, escapes in values, repeated
    /// names, the numbers that grow most when written back.
    const KEPT_TEXTS: &[&str] = &[
        r#"{}"#,
        r#" { "name" : "Jane", "n": 2.50, "t": true, "f": false, "z": null } "#,
        r#"{"a":{"b":{"c":[1,{"d":"}"}]}},"a":"second","s":"q\"uote\\ \n \/"}"#,
        r#"{"n":[-0,-0,-0,-0],"big":[100000000000000000000,100000000000000000000]}"#,
        r#"{"visits":[{"date":"2025-01-10","reason":"checkup"}],"tags":["a","b"],"é":"ü"}"#,
    ];

    #[test]
    fn a_context_kept_as_text_answers_as_its_object() {
        for text in KEPT_TEXTS {
            let ctx = InitialContext::from_text(text).unwrap();
            let map: Map<String, Value> = serde_json::from_str(text).unwrap();
            let value = Value::Object(map.clone());
            // Members read one by one, before anything builds the object.
            for name in map.keys().map(String::as_str).chain(["missing", "b", "c"]) {
                assert_eq!(ctx.get(name).as_deref(), map.get(name), "{text} {name}");
            }
            // The limits, on the text, as on the object.
            let compact = serde_json::to_vec(&value).unwrap().len();
            assert!(compact <= 2 * text.len(), "{text}: the text bound");
            for max_bytes in [compact - 1, compact, text.len() * 3, 64 * 1024] {
                for max_depth in [1, 2, 3, 4, 16] {
                    let fresh = InitialContext::from_text(text).unwrap();
                    assert_eq!(
                        fresh.check(max_bytes, max_depth),
                        check_object(&value, max_bytes, max_depth),
                        "{text} {max_bytes} {max_depth}"
                    );
                }
            }
            assert_eq!(&*ctx.text(), *text, "stored as sent");
            assert_eq!(ctx.map(), &map);
            assert_eq!(ctx.clone().into_map(), map);
            assert_eq!(ctx, InitialContext::new(map.clone()));
        }
    }

    #[test]
    fn a_change_drops_the_sent_text() {
        let mut ctx = InitialContext::from_text(r#"{ "a" : 1 }"#).unwrap();
        assert_eq!(&*ctx.text(), r#"{ "a" : 1 }"#);
        ctx.map_mut().insert("b".into(), json!("x"));
        assert_eq!(&*ctx.text(), r#"{"a":1,"b":"x"}"#);
        assert_eq!(ctx.get("b").as_deref(), Some(&json!("x")));
        // Text the scan cannot vouch for is left to a parse.
        assert!(InitialContext::from_text(r#"{"a":"\u00e9"}"#).is_none());
        assert!(InitialContext::from_text("[1]").is_none());
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
