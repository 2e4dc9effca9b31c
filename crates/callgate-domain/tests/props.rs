//! Property tests for the parsers and the template renderer: they must never panic, and their
//! outputs must be stable under a second pass.

use callgate_domain::phone::E164;
use callgate_domain::template::{RenderScope, referenced_names, render};
use callgate_domain::trigger_path::TriggerPath;
use jiff::Timestamp;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn scope_vars() -> Map<String, Value> {
    match json!({"a": "A", "n": 1, "o": {"k": "v"}, "e": "", "z": null}) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn render_with(template: &str, vars: &Map<String, Value>) -> String {
    render(
        template,
        &RenderScope {
            vars,
            overlay: None,
            now: Timestamp::UNIX_EPOCH,
        },
    )
    .text
}

/// The language of trigger paths, written out independently of the implementation.
fn is_trigger_path(s: &str) -> bool {
    let n = s.chars().count();
    (1..=36).contains(&n)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

proptest! {
    #[test]
    fn render_never_panics(template in any::<String>()) {
        let r = render(&template, &RenderScope { vars: &scope_vars(), overlay: None, now: Timestamp::UNIX_EPOCH });
        // Output can only shrink or grow by inserted values; it is never absurdly large.
        prop_assert!(r.text.len() <= template.len() * 16 + 64);
    }

    #[test]
    fn render_never_panics_on_brace_heavy_input(template in "[{}| a.x_]{0,64}") {
        let _ = render_with(&template, &scope_vars());
        let _ = referenced_names(&template);
    }

    #[test]
    fn text_without_openers_is_unchanged(raw in any::<String>()) {
        let mut template = raw;
        while template.contains("{{") {
            template = template.replace("{{", "{");
        }
        let r = render(&template, &RenderScope { vars: &scope_vars(), overlay: None, now: Timestamp::UNIX_EPOCH });
        prop_assert_eq!(&r.text, &template);
        prop_assert!(r.unresolved.is_empty());
        prop_assert!(referenced_names(&template).is_empty());
    }

    #[test]
    fn values_are_inserted_verbatim_between_untouched_text(
        before in "[^{]{0,20}",
        after in "[^{]{0,20}",
        value in any::<String>(),
    ) {
        let mut vars = Map::new();
        vars.insert("x".to_owned(), Value::String(value.clone()));
        let out = render_with(&format!("{before}{{{{ x }}}}{after}"), &vars);
        prop_assert_eq!(out, format!("{before}{value}{after}"));
    }

    #[test]
    fn phone_parse_never_panics_and_is_idempotent(raw in any::<String>()) {
        if let Ok(n) = E164::parse(&raw) {
            prop_assert_eq!(E164::parse(n.as_str()), Ok(n.clone()));
        }
    }

    #[test]
    fn phone_like_input_normalises_to_a_fixed_point(raw in r"\+?[0-9 ().-]{6,22}") {
        if let Ok(n) = E164::parse(&raw) {
            let s = n.as_str();
            prop_assert!(s.starts_with('+'));
            prop_assert!((9..=16).contains(&s.len()));
            prop_assert_eq!(E164::parse(s), Ok(n.clone()));
        }
    }

    #[test]
    fn trigger_paths_are_exactly_the_regex_language(raw in "[A-Za-z0-9_\\-./ é%]{0,40}") {
        prop_assert_eq!(TriggerPath::parse(&raw).is_ok(), is_trigger_path(&raw));
    }

    #[test]
    fn every_string_of_the_language_is_accepted(raw in "[A-Za-z0-9_-]{1,36}") {
        let p = TriggerPath::parse(&raw);
        prop_assert_eq!(p.map(String::from), Ok(raw));
    }
}
