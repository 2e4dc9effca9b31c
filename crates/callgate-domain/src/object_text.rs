//! One pass over the JSON text of an object that a skipping parse has already accepted (the
//! caller's `initial_context` as sent): how deep it nests, where its top-level members are, and
//! whether parsing it into values could still fail. A trigger then stores that text, checks
//! the context's limits and reads the few members its templates name without building the
//! whole object (see `InitialContext`).

use std::ops::Range;

/// Deepest nesting serde_json parses (its recursion limit); deeper text is left to the parse,
/// whose error the caller reports.
const PARSE_DEPTH: usize = 127;

/// Longest run of digits a number may have here. A JSON number overflows an `f64` only with an
/// exponent or with more than 308 integer digits; both are left to the parse, which refuses
/// them ("number out of range").
const MAX_DIGITS: usize = 300;

/// A top-level member: byte ranges of its key (without the quotes) and of its value's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub key: Range<usize>,
    pub value: Range<usize>,
}

/// What [`scan`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Deepest nesting in the text: the object itself is 1, every object or array inside adds
    /// one. A value that a repeated name drops counts too, so the parsed object may be
    /// shallower, never deeper.
    pub depth: usize,
    /// The top-level members in order, or `None` when a key holds an escape (it could spell
    /// any name, so lookups by name need the parsed object).
    pub members: Option<Vec<Member>>,
}

/// Scans `text`, the JSON text of one object, already accepted by serde_json's skipping parse
/// (`RawValue`: the structure, strings and escapes are valid). `None` when parsing the text
/// into values could still fail where the skipping parse did not: a `\u` escape (a lone
/// surrogate passes the skip and fails the parse), a number with an exponent or with more than
/// `MAX_DIGITS` digits (out of range), or nesting past serde_json's limit; also when the text
/// is not an object.
pub fn scan(text: &str) -> Option<Scan> {
    let b = text.as_bytes();
    let mut i = skip_space(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    let mut depth = 0usize;
    let mut deepest = 0usize;
    // A dozen members is usual for a trigger's context.
    let mut members = Some(Vec::with_capacity(16));
    // Top-level member under way: where its key is, and where its value starts.
    let mut key: Option<Range<usize>> = None;
    let mut value_start: Option<usize> = None;
    let mut awaiting_value = false;
    // After the last byte that is not white space.
    let mut last_end = 0usize;
    let mut digits = 0usize;
    while let Some(&c) = b.get(i) {
        if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
            continue;
        }
        if awaiting_value {
            value_start = Some(i);
            awaiting_value = false;
        }
        match c {
            b'"' => {
                let (end, escaped) = string_end(b, i)?;
                // At the top level a string with no value under way is a key.
                if depth == 1 && value_start.is_none() {
                    if escaped {
                        members = None;
                    }
                    key = Some(i + 1..end - 1);
                }
                digits = 0;
                last_end = end;
                i = end;
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > PARSE_DEPTH {
                    return None;
                }
                deepest = deepest.max(depth);
            }
            b'}' | b']' => {
                if depth == 1 {
                    close_member(&mut members, &mut key, &mut value_start, last_end);
                }
                depth = depth.checked_sub(1)?;
            }
            b':' if depth == 1 => awaiting_value = true,
            b',' if depth == 1 => close_member(&mut members, &mut key, &mut value_start, last_end),
            b'0'..=b'9' => {
                digits += 1;
                if digits > MAX_DIGITS {
                    return None;
                }
            }
            // An exponent follows a digit; the `e` of `true` and `false` does not.
            b'e' | b'E' if i > 0 && b[i - 1].is_ascii_digit() => return None,
            _ => {}
        }
        if !c.is_ascii_digit() {
            digits = 0;
        }
        last_end = i + 1;
        i += 1;
        if depth == 0 {
            break;
        }
    }
    // Only white space may follow the object (the skipping parse saw to that).
    if depth != 0 || skip_space(b, i) != b.len() {
        return None;
    }
    Some(Scan {
        depth: deepest,
        members,
    })
}

fn close_member(
    members: &mut Option<Vec<Member>>,
    key: &mut Option<Range<usize>>,
    value_start: &mut Option<usize>,
    value_end: usize,
) {
    if let (Some(list), Some(k), Some(v)) = (members.as_mut(), key.take(), value_start.take()) {
        list.push(Member {
            key: k,
            value: v..value_end,
        });
    }
    *key = None;
    *value_start = None;
}

fn skip_space(b: &[u8], mut i: usize) -> usize {
    while b
        .get(i)
        .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
    {
        i += 1;
    }
    i
}

/// The index after the closing quote of the string whose opening quote is at `i`, and
/// whether it holds an escape; `None` (give up) for a `\u` escape.
fn string_end(b: &[u8], i: usize) -> Option<(usize, bool)> {
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        let k = j + memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[k] == b'"' {
            return Some((k + 1, escaped));
        }
        escaped = true;
        if b.get(k + 1) == Some(&b'u') {
            return None;
        }
        j = k + 2;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn members(text: &str) -> Vec<(&str, &str)> {
        scan(text)
            .unwrap()
            .members
            .unwrap()
            .into_iter()
            .map(|m| (&text[m.key], &text[m.value]))
            .collect()
    }

    #[test]
    fn finds_every_top_level_member_and_its_value_text() {
        let text = r#" { "a" : 1 , "b":"x,}\"y" ,"c": {"d": [1, {"e": "}"}]},"f":[ ],"g":null,"h":true , "i": -0.5 } "#;
        assert_eq!(
            members(text),
            [
                ("a", "1"),
                ("b", r#""x,}\"y""#),
                ("c", r#"{"d": [1, {"e": "}"}]}"#),
                ("f", "[ ]"),
                ("g", "null"),
                ("h", "true"),
                ("i", "-0.5"),
            ]
        );
        assert_eq!(members("{}"), []);
        assert_eq!(scan(text).unwrap().depth, 4);
        assert_eq!(scan("{}").unwrap().depth, 1);
        assert_eq!(scan(r#"{"a":[[[]]]}"#).unwrap().depth, 4);
    }

    #[test]
    fn an_escaped_key_leaves_lookups_to_the_parsed_object() {
        let s = scan(r#"{"a":1,"b\"c":2}"#).unwrap();
        assert_eq!(s.members, None);
        // An escape in a value is only text.
        assert_eq!(members(r#"{"a":"\n\\"}"#), [("a", r#""\n\\""#)]);
    }

    #[test]
    fn what_a_parse_could_still_refuse_is_left_to_it() {
        for text in [
            r#"{"a":"\ud800"}"#,
            r#"{"\u0061":1}"#,
            r#"{"a":1e400}"#,
            r#"{"a":2.5E3}"#,
            "[1]",
            r#""text""#,
            r#"{"a":1} {"#,
        ] {
            assert_eq!(scan(text), None, "{text}");
        }
        let long = format!(r#"{{"a":{}}}"#, "9".repeat(MAX_DIGITS + 1));
        assert_eq!(scan(&long), None);
        let ok = format!(r#"{{"a":{}}}"#, "9".repeat(MAX_DIGITS));
        assert!(scan(&ok).is_some());
        let deep = format!(
            r#"{{"a":{}{}}}"#,
            "[".repeat(PARSE_DEPTH),
            "]".repeat(PARSE_DEPTH)
        );
        assert_eq!(scan(&deep), None);
        let deep_ok = format!(
            r#"{{"a":{}{}}}"#,
            "[".repeat(PARSE_DEPTH - 1),
            "]".repeat(PARSE_DEPTH - 1)
        );
        assert_eq!(scan(&deep_ok).unwrap().depth, PARSE_DEPTH);
        // `true` and `false` are no exponents.
        assert!(scan(r#"{"t":true,"f":false,"n":[1,true]}"#).is_some());
    }
}
