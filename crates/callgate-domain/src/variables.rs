//! Declared variables: an agent's optional contract for its call context (SPEC §5.4).
//!
//! A definition may list the variables its templates expect, with a type, whether the caller
//! must send it, and a default. Triggering checks the caller's `initial_context` against the
//! list (SPEC §2.3 check 15) and fills defaults into gaps. Types are checked strictly — `"42"`
//! is not a number — because silently coercing would hide integration bugs until a call sounds
//! wrong.

use serde_json::{Map, Value};

/// One entry of a definition's top-level `variables` array.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct VariableDecl {
    /// Top-level name in the context (no dots: declarations do not describe nested fields).
    pub name: String,
    /// Expected JSON type; `string` when omitted.
    #[serde(rename = "type", default)]
    pub kind: VarType,
    /// Whether the caller must supply it (unless there is a default).
    #[serde(default)]
    pub required: bool,
    /// Used when the caller sends nothing (or null) for this name.
    #[serde(default)]
    pub default: Option<Value>,
}

/// The JSON types a declared variable may have.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum VarType {
    /// A JSON string.
    #[default]
    String,
    /// A JSON number (integer or not).
    Number,
    /// `true` or `false`.
    Boolean,
    /// A JSON object (arrays are not objects).
    Object,
}

impl VarType {
    /// Whether `value` has this type. Null has none: absence is handled by the caller.
    pub fn matches(self, value: &Value) -> bool {
        match self {
            VarType::String => value.is_string(),
            VarType::Number => value.is_number(),
            VarType::Boolean => value.is_boolean(),
            VarType::Object => value.is_object(),
        }
    }

    /// The name used in definitions (`"string"`, …), for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            VarType::String => "string",
            VarType::Number => "number",
            VarType::Boolean => "boolean",
            VarType::Object => "object",
        }
    }
}

/// Fills defaults into `ctx` for absent (or null) declared names; returns Err(list of
/// offending names in declaration order) when a required one is absent with no default, or a
/// present value has the wrong type. On Err, ctx may be left partially filled (caller discards
/// it).
///
/// Names that are not declared are left alone: declarations are a floor, not a whitelist.
/// A default is inserted as written; whether it has the declared type is a publish-time check.
pub fn apply_declarations(
    decls: &[VariableDecl],
    ctx: &mut Map<String, Value>,
) -> Result<(), Vec<String>> {
    let mut offending: Vec<String> = Vec::new();
    for decl in decls {
        match ctx.get(&decl.name) {
            Some(value) if !value.is_null() => {
                if !decl.kind.matches(value) {
                    offending.push(decl.name.clone());
                }
            }
            // Absent or null: the caller gave nothing usable.
            _ => match &decl.default {
                Some(default) if !default.is_null() => {
                    ctx.insert(decl.name.clone(), default.clone());
                }
                _ if decl.required => offending.push(decl.name.clone()),
                _ => {}
            },
        }
    }
    // A name declared twice must not be reported twice.
    let mut seen = std::collections::HashSet::new();
    offending.retain(|n| seen.insert(n.clone()));
    if offending.is_empty() {
        Ok(())
    } else {
        Err(offending)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decls(v: Value) -> Vec<VariableDecl> {
        serde_json::from_value(v).unwrap()
    }

    fn ctx(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn declarations_parse_with_defaults() {
        let d = decls(json!([{"name": "a"}, {"name": "b", "type": "number", "required": true}]));
        assert_eq!(d[0].kind, VarType::String);
        assert!(!d[0].required);
        assert_eq!(d[0].default, None);
        assert_eq!(d[1].kind, VarType::Number);
        assert!(d[1].required);
    }

    #[test]
    fn unknown_types_do_not_parse() {
        assert!(
            serde_json::from_value::<Vec<VariableDecl>>(json!([{"name": "a", "type": "date"}]))
                .is_err()
        );
    }

    #[test]
    fn matching_values_pass_untouched() {
        let d = decls(json!([
            {"name": "s", "type": "string", "required": true},
            {"name": "n", "type": "number", "required": true},
            {"name": "b", "type": "boolean", "required": true},
            {"name": "o", "type": "object", "required": true}
        ]));
        let mut c = ctx(json!({"s": "x", "n": 1.5, "b": false, "o": {}, "extra": [1]}));
        let before = c.clone();
        assert_eq!(apply_declarations(&d, &mut c), Ok(()));
        assert_eq!(c, before);
    }

    #[test]
    fn each_type_mismatch_is_reported() {
        let d = decls(json!([
            {"name": "s", "type": "string"},
            {"name": "n", "type": "number"},
            {"name": "b", "type": "boolean"},
            {"name": "o", "type": "object"}
        ]));
        let mut c = ctx(json!({"s": 1, "n": "42", "b": "true", "o": [1]}));
        assert_eq!(
            apply_declarations(&d, &mut c),
            Err(vec!["s".into(), "n".into(), "b".into(), "o".into()])
        );
    }

    #[test]
    fn required_without_default_fails_when_absent_or_null() {
        let d = decls(json!([{"name": "a", "required": true}, {"name": "b", "required": true}]));
        let mut c = ctx(json!({"b": null}));
        assert_eq!(
            apply_declarations(&d, &mut c),
            Err(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn defaults_fill_absent_and_null_values() {
        let d = decls(json!([
            {"name": "a", "required": true, "default": "x"},
            {"name": "b", "type": "number", "default": 3},
            {"name": "c", "default": "kept"}
        ]));
        let mut c = ctx(json!({"b": null, "c": "mine"}));
        assert_eq!(apply_declarations(&d, &mut c), Ok(()));
        assert_eq!(Value::Object(c), json!({"b": 3, "c": "mine", "a": "x"}));
    }

    #[test]
    fn optional_without_default_may_be_absent() {
        let d = decls(json!([{"name": "a"}]));
        let mut c = ctx(json!({}));
        assert_eq!(apply_declarations(&d, &mut c), Ok(()));
        assert!(c.is_empty());
    }

    #[test]
    fn empty_string_is_a_present_string() {
        let d = decls(json!([{"name": "a", "required": true}]));
        let mut c = ctx(json!({"a": ""}));
        assert_eq!(apply_declarations(&d, &mut c), Ok(()));
    }

    #[test]
    fn a_name_declared_twice_is_reported_once() {
        let d = decls(json!([{"name": "a", "required": true}, {"name": "a", "required": true}]));
        assert_eq!(
            apply_declarations(&d, &mut Map::new()),
            Err(vec!["a".into()])
        );
    }
}
