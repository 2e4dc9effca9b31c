//! Size and shape limits for caller-supplied JSON objects (SPEC §2.1): `initial_context` is at
//! most 64 KiB serialised and 16 levels deep, `metadata` at most 16 KiB.
//!
//! The limits exist because both objects are stored with every run and copied into every
//! webhook; they are checked on the parsed value so the rule does not depend on how the client
//! formatted its JSON.

use serde_json::Value;

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
    // Depth first: it is walked with an explicit stack, so even a value built in code (not
    // parsed, hence not capped by serde_json's recursion limit) cannot overflow ours, and the
    // serialiser below, which does recurse, only ever sees bounded depth.
    let mut stack: Vec<(&Value, usize)> = vec![(value, 1)];
    while let Some((v, depth)) = stack.pop() {
        if depth > max_depth {
            return Err(ContextError::TooDeep { limit: max_depth });
        }
        match v {
            Value::Object(map) => stack.extend(
                map.values()
                    .filter(|c| c.is_object() || c.is_array())
                    .map(|c| (c, depth + 1)),
            ),
            Value::Array(items) => stack.extend(
                items
                    .iter()
                    .filter(|c| c.is_object() || c.is_array())
                    .map(|c| (c, depth + 1)),
            ),
            _ => {}
        }
    }
    if serialized_len(value, max_bytes) > max_bytes {
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

/// Length of `value` as compact JSON (what `serde_json::to_vec` would produce), counted
/// without building the buffer. Counting stops being exact past `cap`: the writer refuses more
/// bytes, which aborts serialisation early, and `cap + 1` is returned.
fn serialized_len(value: &Value, cap: usize) -> usize {
    struct Counter {
        len: usize,
        cap: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.len = self.len.saturating_add(buf.len());
            if self.len > self.cap {
                return Err(std::io::Error::other("over the limit"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter { len: 0, cap };
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.len,
        Err(_) => cap.saturating_add(1),
    }
}

#[cfg(test)]
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
