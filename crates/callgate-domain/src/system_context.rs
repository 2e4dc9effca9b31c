//! A run's system context (SPEC §2.4): the values callgate sets as it accepts a trigger, laid
//! over the caller's context in templates and in the run's views.
//!
//! Every accepted trigger builds one. As a JSON map it cost thirteen key strings, an index map
//! hashing each key, and a second pass to write it as text for the store. Its keys are fixed,
//! so here they are fields, and the text is written from them directly. The fields are boxed:
//! runs are moved by value through several futures and threads on their way to the store, and
//! ~450 bytes more in each of them cost more copying than the map saved.

use crate::json_text::write_object;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

macro_rules! system_context {
    ($($field:ident),* $(,)?) => {
        /// One field per key callgate sets (`None` when absent), in the order they are written;
        /// any other key (a row written by another version, a test) is kept in `extra`, after
        /// them.
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct SystemFields {
            $(pub $field: Option<Value>,)*
            pub extra: Map<String, Value>,
        }

        impl SystemContext {
            /// Every key with its value: the fields in order, then `extra` in its order.
            pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
                [$((stringify!($field), self.$field.as_ref()),)*]
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k, v)))
                    .chain(self.extra.iter().map(|(k, v)| (k.as_str(), v)))
            }

            pub fn get(&self, key: &str) -> Option<&Value> {
                match key {
                    $(stringify!($field) => self.$field.as_ref(),)*
                    _ => self.extra.get(key),
                }
            }

            /// Sets `key`, replacing its value if it has one.
            pub fn insert(&mut self, key: String, value: Value) {
                match key.as_str() {
                    $(stringify!($field) => self.$field = Some(value),)*
                    _ => {
                        self.extra.insert(key, value);
                    }
                }
            }
        }
    };
}

system_context!(
    direction,
    trigger_mode,
    called_number,
    caller_number,
    telephony_configuration_id,
    provider,
    agent_identifier,
    agent_identifier_type,
    workflow_uuid,
    agent_uuid,
    api_key_id,
    workflow_run_id,
    call_id,
);

/// [`SystemFields`], behind one pointer (see the module's note).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SystemContext(Box<SystemFields>);

impl From<SystemFields> for SystemContext {
    fn from(fields: SystemFields) -> Self {
        Self(Box::new(fields))
    }
}

impl std::ops::Deref for SystemContext {
    type Target = SystemFields;

    fn deref(&self) -> &SystemFields {
        &self.0
    }
}

impl std::ops::DerefMut for SystemContext {
    fn deref_mut(&mut self) -> &mut SystemFields {
        &mut self.0
    }
}

impl SystemContext {
    /// The compact JSON object, keys in `iter` order: what `serde_json::to_string` writes for
    /// the map of the same keys in the same order.
    pub fn text(&self) -> String {
        let mut out = String::with_capacity(512);
        write_object(&mut out, self.iter());
        out
    }

    /// As a JSON map, keys in `iter` order.
    pub fn to_map(&self) -> Map<String, Value> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect()
    }
}

impl From<Map<String, Value>> for SystemContext {
    fn from(map: Map<String, Value>) -> Self {
        let mut ctx = Self::default();
        for (k, v) in map {
            ctx.insert(k, v);
        }
        ctx
    }
}

impl Serialize for SystemContext {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for SystemContext {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Map::<String, Value>::deserialize(deserializer).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn trigger_context() -> SystemContext {
        SystemContext::from(SystemFields {
            direction: Some(json!("outbound")),
            trigger_mode: Some(json!("production")),
            called_number: Some(json!("+14155550100")),
            caller_number: Some(Value::Null),
            telephony_configuration_id: Some(json!(3)),
            provider: Some(json!("simulator")),
            agent_identifier: Some(json!("4b8c754a-4742-4ef5-ae25-e068e6dfd30e")),
            agent_identifier_type: Some(json!("trigger_path")),
            workflow_uuid: Some(json!("9022a1ed-5351-49bb-b61a-1a3c25edf2c0")),
            agent_uuid: Some(json!("4b8c754a-4742-4ef5-ae25-e068e6dfd30e")),
            api_key_id: Some(json!(7)),
            workflow_run_id: Some(json!(42)),
            call_id: Some(json!("01a20ca4-cfab-7419-b2a2-dc2e7a9efe68")),
            extra: Map::new(),
        })
    }

    #[test]
    fn its_text_is_serde_jsons_text_of_the_same_map() {
        let mut ctx = trigger_context();
        ctx.extra
            .insert("note".into(), json!("a \"quoted\"\n\u{1} é"));
        ctx.extra
            .insert("nested".into(), json!({"b": [1, 2.5, null], "a": true}));
        let map = ctx.to_map();
        assert_eq!(ctx.text(), serde_json::to_string(&map).unwrap());
        assert_eq!(serde_json::to_string(&ctx).unwrap(), ctx.text());
        // Fields in their order, then the extra keys in theirs.
        let keys: Vec<&str> = ctx.iter().map(|(k, _)| k).collect();
        assert_eq!(keys[0], "direction");
        assert_eq!(keys[12], "call_id");
        assert_eq!(&keys[13..], ["note", "nested"]);
    }

    #[test]
    fn any_object_reads_back_as_written() {
        let text = r#"{"workflow_run_id":5,"agent":"Ava","direction":"outbound","x":{"y":[]}}"#;
        let ctx: SystemContext = serde_json::from_str(text).unwrap();
        assert_eq!(ctx.workflow_run_id, Some(json!(5)));
        assert_eq!(ctx.get("agent"), Some(&json!("Ava")));
        assert_eq!(ctx.get("missing"), None);
        let again: SystemContext = serde_json::from_str(&ctx.text()).unwrap();
        assert_eq!(again, ctx);
        assert_eq!(
            serde_json::from_str::<Value>(&ctx.text()).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
    }

    #[test]
    fn absent_fields_are_left_out_and_null_ones_kept() {
        let ctx = SystemContext::from(SystemFields {
            direction: Some(json!("outbound")),
            call_id: Some(Value::Null),
            ..SystemFields::default()
        });
        assert_eq!(ctx.text(), r#"{"direction":"outbound","call_id":null}"#);
        assert_eq!(SystemContext::default().text(), "{}");
    }

    #[test]
    fn insert_fills_the_field_of_a_known_key() {
        let mut ctx = SystemContext::default();
        ctx.insert("provider".into(), json!("twilio"));
        ctx.insert("other".into(), json!(1));
        ctx.insert("provider".into(), json!("vonage"));
        assert_eq!(ctx.provider, Some(json!("vonage")));
        assert_eq!(ctx.extra.len(), 1);
        assert_eq!(ctx.text(), r#"{"provider":"vonage","other":1}"#);
    }
}
