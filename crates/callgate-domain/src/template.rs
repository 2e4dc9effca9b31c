//! Template rendering for greetings, prompts and payloads (SPEC §5.1–5.3).
//!
//! The language is deliberately tiny — `{{ name }}`, dotted paths, an optional fallback after
//! `|`, and a few built-ins — so it is written as a hand-made single-pass scanner: rendering is
//! linear in the template length whatever the input, and inserted values are never scanned
//! again, which is what makes "values are data, never templates" hold.
//!
//! Tag grammar: `{{` ws* name ws* (`|` fallback)? `}}`, where a name is one or more
//! dot-separated segments of letters, digits, `_`, `-`, `/` and `+` (the last two so that
//! `current_time_America/New_York` and `current_time_Etc/GMT+5` are names). Anything else
//! between braces — JSON, code, an empty tag, a `{{` never closed — is copied literally, so
//! prompts that merely contain braces survive rendering.

use crate::context::InitialContext;
use crate::system_context::SystemContext;
use jiff::Timestamp;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Where templates find variables by name: a JSON object, or a run's context (which parses
/// only the members asked for while it is held as the caller's text).
pub trait Vars {
    fn var(&self, name: &str) -> Option<Cow<'_, Value>>;
}

impl Vars for Map<String, Value> {
    fn var(&self, name: &str) -> Option<Cow<'_, Value>> {
        self.get(name).map(Cow::Borrowed)
    }
}

impl Vars for InitialContext {
    fn var(&self, name: &str) -> Option<Cow<'_, Value>> {
        self.get(name)
    }
}

/// What a template can see while rendering.
#[derive(Clone, Copy)]
pub struct RenderScope<'a> {
    /// Variables: the caller's context (SPEC §2.4).
    pub vars: &'a dyn Vars,
    /// Values laid over `vars` (the system context): a name found here wins. Kept apart so a
    /// request's context is not copied just to render its templates.
    pub overlay: Option<&'a SystemContext>,
    /// The instant built-ins such as `current_time` report; injected so tests are exact.
    pub now: Timestamp,
}

/// The result of rendering one template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The rendered text.
    pub text: String,
    /// Names that were missing and had no fallback, in order of first appearance, without
    /// duplicates (SPEC §5.3 `unresolved_variables`).
    pub unresolved: Vec<String>,
}

/// The optional prefix that names the caller's context explicitly (SPEC §5.1).
const CONTEXT_PREFIX: &str = "initial_context.";

/// Renders `template` against `scope`. Never fails: what cannot be resolved renders as the
/// fallback or as "" and is reported in [`Rendered::unresolved`].
pub fn render(template: &str, scope: &RenderScope<'_>) -> Rendered {
    let mut text = String::with_capacity(template.len());
    let mut unresolved: Vec<String> = Vec::new();
    for piece in Scanner::new(template) {
        let (name, fallback) = match piece {
            Piece::Text(t) => {
                text.push_str(t);
                continue;
            }
            Piece::Tag { name, fallback } => (name, fallback),
        };
        match lookup(name, scope) {
            Found::Builtin(s) => text.push_str(&s),
            Found::Value(v) if !is_blank(&v) => push_value(&mut text, &v),
            // Present but null or "": the fallback if there is one, else nothing. The name is
            // not unresolved — the caller did supply it.
            Found::Value(_) => text.push_str(fallback.unwrap_or("")),
            Found::Missing => match fallback {
                Some(f) => text.push_str(f),
                None => {
                    if !unresolved.iter().any(|u| u == name) {
                        unresolved.push(name.to_owned());
                    }
                }
            },
        }
    }
    Rendered { text, unresolved }
}

/// Appends to `into` the names [`render`] would report as unresolved, in the same order,
/// leaving out names already there; nothing is rendered. A trigger reports the unresolved
/// names of its agent's prompts but does not keep their text, and writing that text was most
/// of what rendering them cost.
pub fn unresolved_names(template: &str, scope: &RenderScope<'_>, into: &mut Vec<String>) {
    let mut names = Vec::new();
    bare_tag_names(template, &mut names);
    missing_names(&names, scope, into);
}

/// The names of a template's tags that have no fallback, the only ones that can be reported
/// unresolved, in order of first appearance, without duplicates: an agent version's prompts
/// are scanned once when it is loaded, not at every trigger (see [`missing_names`]).
pub fn bare_tag_names(template: &str, into: &mut Vec<String>) {
    for piece in Scanner::new(template) {
        if let Piece::Tag {
            name,
            fallback: None,
        } = piece
            && !into.iter().any(|n| n == name)
        {
            into.push(name.to_owned());
        }
    }
}

/// [`unresolved_names`] for templates already reduced to [`bare_tag_names`]: appends to
/// `into`, in order, the names `scope` does not resolve, leaving out names already there.
pub fn missing_names(names: &[String], scope: &RenderScope<'_>, into: &mut Vec<String>) {
    for name in names {
        if matches!(lookup(name, scope), Found::Missing) && !into.contains(name) {
            into.push(name.clone());
        }
    }
}

/// Every variable name a template refers to (without the `initial_context.` prefix or the
/// fallback), in order of first appearance, without duplicates. Built-ins are included; use
/// [`is_builtin`] to leave them out.
pub fn referenced_names(template: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for piece in Scanner::new(template) {
        if let Piece::Tag { name, .. } = piece
            && !names.iter().any(|n| n == name)
        {
            names.push(name.to_owned());
        }
    }
    names
}

/// Whether `name` is one of the built-ins (`current_time`, `current_weekday` and their
/// `_<IANA zone>` forms). The zone is not checked here; an unknown zone renders as missing.
pub fn is_builtin(name: &str) -> bool {
    builtin(name).is_some()
}

/// A piece of a template: literal text or a well-formed tag.
enum Piece<'a> {
    Text(&'a str),
    /// `name` is trimmed and has the `initial_context.` prefix removed; `fallback` is trimmed.
    Tag {
        name: &'a str,
        fallback: Option<&'a str>,
    },
}

/// Splits a template into pieces in one left-to-right pass.
struct Scanner<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(src: &'a str) -> Self {
        Scanner { src, pos: 0 }
    }
}

impl<'a> Iterator for Scanner<'a> {
    type Item = Piece<'a>;

    fn next(&mut self) -> Option<Piece<'a>> {
        let rest = self.src.get(self.pos..).filter(|r| !r.is_empty())?;
        let Some(open) = rest.find("{{") else {
            self.pos = self.src.len();
            return Some(Piece::Text(rest));
        };
        if open > 0 {
            self.pos += open;
            return Some(Piece::Text(&rest[..open]));
        }
        let body = &rest[2..];
        let Some(close) = body.find("}}") else {
            // Never closed: the rest is text. Stopping here keeps the scan linear.
            self.pos = self.src.len();
            return Some(Piece::Text(rest));
        };
        let inner = &body[..close];
        if let Some(reopen) = inner.rfind("{{") {
            // `{{ a {{ b }}`: the first `{{` is literal and the tag starts at the last opener.
            // Everything before that opener is emitted now; the part after it is scanned once
            // more, and contains no further `{{`, so the work stays linear.
            let literal = 2 + reopen;
            self.pos += literal;
            return Some(Piece::Text(&rest[..literal]));
        }
        let raw = &rest[..2 + close + 2];
        self.pos += raw.len();
        Some(parse_tag(inner).unwrap_or(Piece::Text(raw)))
    }
}

/// Parses the text between `{{` and `}}`; `None` when it is not a well-formed tag.
fn parse_tag(inner: &str) -> Option<Piece<'_>> {
    let (name, fallback) = match inner.split_once('|') {
        Some((name, fallback)) => (name.trim(), Some(fallback.trim())),
        None => (inner.trim(), None),
    };
    let valid = !name.is_empty()
        && name.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '/' | '+'))
        });
    if !valid {
        return None;
    }
    let name = name.strip_prefix(CONTEXT_PREFIX).unwrap_or(name);
    Some(Piece::Tag { name, fallback })
}

/// What a name resolved to.
enum Found<'v> {
    Builtin(String),
    Value(Cow<'v, Value>),
    Missing,
}

/// Built-ins win over variables of the same name (SPEC §5.1 lists them as reserved).
fn lookup<'v>(name: &str, scope: &RenderScope<'v>) -> Found<'v> {
    if let Some(b) = builtin(name) {
        return b.render(scope.now).map_or(Found::Missing, Found::Builtin);
    }
    let mut segments = name.split('.');
    let Some(first) = segments.next() else {
        return Found::Missing;
    };
    let found = match scope.overlay.and_then(|o| o.get(first)) {
        Some(v) => Some(Cow::Borrowed(v)),
        None => scope.vars.var(first),
    };
    let mut current = match found {
        Some(v) => v,
        None => return Found::Missing,
    };
    for seg in segments {
        // Paths walk objects only: an index into an array or a field of a scalar is missing.
        let next = match current {
            Cow::Borrowed(Value::Object(map)) => map.get(seg).map(Cow::Borrowed),
            Cow::Owned(Value::Object(mut map)) => map.remove(seg).map(Cow::Owned),
            _ => None,
        };
        current = match next {
            Some(v) => v,
            None => return Found::Missing,
        };
    }
    Found::Value(current)
}

/// A built-in, with the zone it names (`None` = UTC).
enum Builtin<'n> {
    Time(Option<&'n str>),
    Weekday(Option<&'n str>),
}

fn builtin(name: &str) -> Option<Builtin<'_>> {
    match name {
        "current_time" => Some(Builtin::Time(None)),
        "current_weekday" => Some(Builtin::Weekday(None)),
        _ => {
            if let Some(zone) = name.strip_prefix("current_time_") {
                Some(Builtin::Time(Some(zone)))
            } else {
                name.strip_prefix("current_weekday_")
                    .map(|zone| Builtin::Weekday(Some(zone)))
            }
        }
    }
}

impl Builtin<'_> {
    /// The text for `now`, or `None` when the zone is unknown.
    fn render(&self, now: Timestamp) -> Option<String> {
        let (zone, is_time) = match self {
            Builtin::Time(z) => (*z, true),
            Builtin::Weekday(z) => (*z, false),
        };
        let (tz, label) = match zone {
            None => (TimeZone::UTC, "UTC".to_owned()),
            Some(name) => {
                let tz = TimeZone::get(name).ok()?;
                let label = zone_label(&tz, now, name);
                (tz, label)
            }
        };
        let local = now.to_zoned(tz);
        if !is_time {
            return Some(weekday_name(local.weekday()).to_owned());
        }
        Some(format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} {label}",
            local.year(),
            local.month(),
            local.day(),
            local.hour(),
            local.minute(),
            local.second()
        ))
    }
}

/// The zone's abbreviation at `now` ("EDT") when it is a real one; tzdb writes numeric
/// placeholders ("+04") for zones without an abbreviation, and there the zone name is clearer.
fn zone_label(tz: &TimeZone, now: Timestamp, name: &str) -> String {
    let info = tz.to_offset_info(now);
    let abbrev = info.abbreviation();
    if !abbrev.is_empty() && abbrev.chars().all(|c| c.is_ascii_alphabetic()) {
        abbrev.to_owned()
    } else {
        tz.iana_name().unwrap_or(name).to_owned()
    }
}

fn weekday_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Monday => "Monday",
        Weekday::Tuesday => "Tuesday",
        Weekday::Wednesday => "Wednesday",
        Weekday::Thursday => "Thursday",
        Weekday::Friday => "Friday",
        Weekday::Saturday => "Saturday",
        Weekday::Sunday => "Sunday",
    }
}

fn is_blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// Strings as they are; everything else as compact JSON (numbers, booleans, objects, arrays).
fn push_value(out: &mut String, v: &Value) {
    match v {
        Value::String(s) => out.push_str(s),
        Value::Null => {}
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 2024-03-11 14:05:09 UTC, a Monday; New York is on EDT (UTC-4) since 2024-03-10.
    fn now() -> Timestamp {
        "2024-03-11T14:05:09Z".parse().unwrap()
    }

    fn run(template: &str, vars: Value) -> Rendered {
        let Value::Object(vars) = vars else {
            panic!("vars must be an object")
        };
        render(
            template,
            &RenderScope {
                vars: &vars,
                overlay: None,
                now: now(),
            },
        )
    }

    fn text(template: &str, vars: Value) -> String {
        run(template, vars).text
    }

    #[test]
    fn plain_names_with_and_without_spaces() {
        let vars = json!({"name": "Ada"});
        assert_eq!(text("Hi {{name}}!", vars.clone()), "Hi Ada!");
        assert_eq!(text("Hi {{   name  }}!", vars.clone()), "Hi Ada!");
        assert_eq!(text("Hi {{\tname\n}}!", vars), "Hi Ada!");
    }

    #[test]
    fn dotted_paths_walk_objects() {
        let vars = json!({"user": {"address": {"city": "Lyon"}}});
        assert_eq!(text("{{ user.address.city }}", vars), "Lyon");
    }

    #[test]
    fn arrays_and_scalars_in_a_path_are_missing() {
        let vars = json!({"user": {"tags": ["a"], "age": 3}});
        let r = run(
            "[{{ user.tags.0 }}][{{ user.age.x }}][{{ user.nope }}]",
            vars,
        );
        assert_eq!(r.text, "[][][]");
        assert_eq!(r.unresolved, ["user.tags.0", "user.age.x", "user.nope"]);
    }

    #[test]
    fn initial_context_prefix_is_optional() {
        let vars = json!({"x": "1", "a": {"b": 2}});
        assert_eq!(
            text("{{ initial_context.x }}{{ initial_context.a.b }}", vars),
            "12"
        );
        let r = run("{{ initial_context.gone }}{{gone}}", json!({}));
        assert_eq!(r.unresolved, ["gone"]);
    }

    #[test]
    fn fallback_is_used_for_missing_null_and_empty() {
        let vars = json!({"n": null, "e": "", "z": 0, "f": false});
        let t = "{{ m | dear customer }}/{{n|x y}}/{{ e | none }}/{{z|9}}/{{f|t}}";
        let r = run(t, vars);
        assert_eq!(r.text, "dear customer/x y/none/0/false");
        assert!(r.unresolved.is_empty());
    }

    #[test]
    fn empty_fallback_renders_nothing_and_resolves() {
        let r = run("a{{ m | }}b", json!({}));
        assert_eq!(r.text, "ab");
        assert!(r.unresolved.is_empty());
    }

    #[test]
    fn null_and_empty_without_fallback_render_empty_and_are_not_unresolved() {
        let r = run("[{{n}}][{{e}}]", json!({"n": null, "e": ""}));
        assert_eq!(r.text, "[][]");
        assert!(r.unresolved.is_empty());
    }

    #[test]
    fn unresolved_names_are_those_render_reports() {
        let vars = json!({"a": 1, "b": "", "c": null, "d": {"e": "x"}, "list": [1]});
        let templates = [
            "{{ a }} {{ z }} {{ y | fb }} {{ z }} {{ x }}",
            "{{ b }}{{ c }}{{ d.e }}{{ d.f }}{{ list.0 }}{{ initial_context.q }}",
            "{{ current_time }} {{ current_time_Nowhere/Land }} {{ current_weekday_Europe/Paris }}",
            "{{ {\"json\": 1} }} {{ a {{ w }} {{ not closed",
            "no tags at all",
        ];
        let Value::Object(vars) = vars else {
            unreachable!()
        };
        let mut overlay = SystemContext::default();
        overlay.insert("z".to_owned(), json!("over"));
        for overlay in [None, Some(&overlay)] {
            let scope = RenderScope {
                vars: &vars,
                overlay,
                now: now(),
            };
            for t in templates {
                let mut names = Vec::new();
                unresolved_names(t, &scope, &mut names);
                assert_eq!(names, render(t, &scope).unresolved, "{t}");
            }
            // Across templates: appended once, in order of first appearance.
            let mut names = vec!["x".to_owned()];
            for t in templates {
                unresolved_names(t, &scope, &mut names);
            }
            let mut expected = vec!["x".to_owned()];
            for t in templates {
                for n in render(t, &scope).unresolved {
                    if !expected.contains(&n) {
                        expected.push(n);
                    }
                }
            }
            assert_eq!(names, expected);
            assert!(names.len() > 3, "{names:?}");
            // The same from the names collected once over all templates.
            let mut bare = Vec::new();
            for t in templates {
                bare_tag_names(t, &mut bare);
            }
            let mut from_bare = vec!["x".to_owned()];
            missing_names(&bare, &scope, &mut from_bare);
            assert_eq!(from_bare, expected);
        }
    }

    #[test]
    fn missing_names_are_reported_once_in_order() {
        let r = run("{{b}} {{a}} {{b}} {{ initial_context.a }}", json!({}));
        assert_eq!(r.text, "   ");
        assert_eq!(r.unresolved, ["b", "a"]);
    }

    #[test]
    fn values_render_as_json_text() {
        let vars = json!({"n": 42, "x": 1.5, "b": true, "o": {"k": [1, "v"]}, "a": [1, 2]});
        assert_eq!(
            text("{{n}} {{x}} {{b}} {{o}} {{a}}", vars),
            r#"42 1.5 true {"k":[1,"v"]} [1,2]"#
        );
    }

    #[test]
    fn object_keys_keep_their_order() {
        let vars = json!({"o": {"z": 1, "a": 2}});
        assert_eq!(text("{{o}}", vars), r#"{"z":1,"a":2}"#);
    }

    #[test]
    fn inserted_values_are_never_rendered_again() {
        let vars = json!({"evil": "{{secret}}", "secret": "s3cr3t"});
        let r = run("{{evil}}", vars);
        assert_eq!(r.text, "{{secret}}");
        assert!(r.unresolved.is_empty());
        assert_eq!(
            text("{{ m | {{secret }}", json!({"secret": "s"})),
            "{{ m | s"
        );
    }

    #[test]
    fn current_time_is_utc() {
        assert_eq!(
            text("{{current_time}}", json!({})),
            "2024-03-11 14:05:09 UTC"
        );
    }

    #[test]
    fn current_time_in_a_zone_uses_its_abbreviation() {
        assert_eq!(
            text("{{ current_time_America/New_York }}", json!({})),
            "2024-03-11 10:05:09 EDT"
        );
        assert_eq!(
            text("{{current_time_Europe/Paris}}", json!({})),
            "2024-03-11 15:05:09 CET"
        );
    }

    #[test]
    fn zones_without_an_abbreviation_show_their_name() {
        assert_eq!(
            text("{{current_time_Asia/Dubai}}", json!({})),
            "2024-03-11 18:05:09 Asia/Dubai"
        );
    }

    #[test]
    fn weekdays_follow_the_zone() {
        assert_eq!(text("{{current_weekday}}", json!({})), "Monday");
        // 14:05 UTC is already Tuesday 04:05 in Kiritimati (UTC+14).
        assert_eq!(
            text("{{current_weekday_Pacific/Kiritimati}}", json!({})),
            "Tuesday"
        );
    }

    #[test]
    fn unknown_zones_are_missing() {
        let r = run(
            "{{current_time_Mars/Olympus}}|{{current_weekday_Nope | ?}}",
            json!({}),
        );
        assert_eq!(r.text, "|?");
        assert_eq!(r.unresolved, ["current_time_Mars/Olympus"]);
    }

    #[test]
    fn builtins_win_over_variables() {
        let vars = json!({"current_time": "spoofed", "current_weekday": "Caturday"});
        assert_eq!(
            text("{{current_time}} {{current_weekday}}", vars),
            "2024-03-11 14:05:09 UTC Monday"
        );
    }

    #[test]
    fn malformed_tags_are_copied_literally() {
        for t in [
            "{{",
            "a {{ b",
            "{{ }}",
            "{{}}",
            "{{ | x }}",
            "{{ a b }}",
            "{{ a..b }}",
            "{{ .a }}",
            "{{\"k\": 1}}",
            "}} {",
            "{ {a} }",
        ] {
            assert_eq!(text(t, json!({"a": "A", "b": "B"})), t, "{t:?}");
        }
    }

    #[test]
    fn an_unclosed_opener_does_not_swallow_a_later_tag() {
        assert_eq!(text("{{ a {{ b }}", json!({"b": "B"})), "{{ a B");
        assert_eq!(text("{{{b}}}", json!({"b": "B"})), "{{{b}}}");
        assert_eq!(text("{{b}}}", json!({"b": "B"})), "B}");
    }

    #[test]
    fn unicode_text_around_tags_is_preserved() {
        let vars = json!({"名前": "太郎", "x": "é"});
        assert_eq!(
            text("こんにちは {{ 名前 }}さん — {{x}} 👋", vars),
            "こんにちは 太郎さん — é 👋"
        );
    }

    #[test]
    fn referenced_names_strip_prefix_and_fallback() {
        let t = "{{a}} {{ initial_context.b.c | x }} {{a}} {{current_time}} {{ }} {{ b.c }}";
        assert_eq!(referenced_names(t), ["a", "b.c", "current_time"]);
        assert!(is_builtin("current_time"));
        assert!(is_builtin("current_weekday_Europe/Paris"));
        assert!(!is_builtin("a"));
    }

    #[test]
    fn long_hostile_inputs_render_quickly() {
        let t = "{{ a ".repeat(20_000) + &"{{".repeat(20_000) + &"}}".repeat(20_000);
        let r = run(&t, json!({}));
        assert!(r.text.len() <= t.len());
    }
}
