//! Agent definitions: the React-Flow graph an agent version runs (SPEC §6.1).
//!
//! The JSON is kept exactly as the editor sent it — extra keys such as `viewport`, unknown node
//! types and unknown fields survive a round trip — and read through accessors. There are two
//! levels of checking: [`Definition::parse_for_save`] enforces only what storage needs (shape,
//! trigger path format) so half-built drafts can be saved, and
//! [`Definition::validate_for_publish`] checks the whole graph before it can go live. Both
//! report every problem at once, for an editor to highlight them together.

use std::collections::HashSet;

use serde::Deserialize as _;
use serde_json::{Map, Value};

use crate::trigger_path::TriggerPath;
use crate::variables::VariableDecl;

/// Node `type` values the product knows (SPEC §6.1). Other types are kept and ignored.
pub mod node_type {
    /// The entry node; exactly one per published definition.
    pub const START_CALL: &str = "startCall";
    /// A conversation step.
    pub const AGENT_NODE: &str = "agentNode";
    /// Ends the call; has no outgoing edges.
    pub const END_CALL: &str = "endCall";
    /// Instructions shared by every step; at most one.
    pub const GLOBAL_NODE: &str = "globalNode";
    /// The API trigger; at most one.
    pub const TRIGGER: &str = "trigger";
    /// A post-call HTTP request.
    pub const WEBHOOK: &str = "webhook";
}

/// A definition graph; always a JSON object.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(transparent)]
pub struct Definition(Value);

/// One problem found in a definition, in the shape of SPEC §6.1's publish errors.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DefinitionError {
    /// What is wrong: `"graph"`, `"node"`, `"edge"` or `"variable"`.
    pub kind: String,
    /// The node or edge id (or variable name), when the problem has one.
    pub id: Option<String>,
    /// The offending field: `id`, `type`, `data`, `source`, `target`, or a `data` key such as
    /// `prompt`, `trigger_path`, `endpoint_url`.
    pub field: Option<String>,
    /// A sentence for the user.
    pub message: String,
}

impl DefinitionError {
    fn new(kind: &str, id: Option<&str>, field: Option<&str>, message: String) -> Self {
        DefinitionError {
            kind: kind.to_owned(),
            id: id.map(str::to_owned),
            field: field.map(str::to_owned),
            message,
        }
    }
}

impl std::fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The API trigger of a definition, as trigger resolution needs it (SPEC §6.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerNode {
    /// The node's id in the graph.
    pub node_id: String,
    /// Its public path.
    pub path: TriggerPath,
    /// `data.enabled`, true unless explicitly `false`.
    pub enabled: bool,
}

/// Node types whose `data.prompt` is a template (SPEC §5.2).
const PROMPT_TYPES: [&str; 4] = [
    node_type::START_CALL,
    node_type::AGENT_NODE,
    node_type::GLOBAL_NODE,
    node_type::END_CALL,
];

impl Definition {
    /// Storage checks only (SPEC §6.1 "Saving a draft"): value is an object; `nodes` is an
    /// array of objects each with a string `id` and string `type` (`data` if present must be an
    /// object); `edges` (optional, default []) array of objects with string id/source/target;
    /// `variables` if present must parse as `Vec<VariableDecl>`; every trigger node's
    /// `data.trigger_path`, if present and non-empty, must be a valid [`TriggerPath`]; a
    /// trigger node with no or empty trigger_path gets [`TriggerPath::generate`] written into
    /// `data.trigger_path` (data created if absent). Returns all errors found.
    pub fn parse_for_save(mut value: Value) -> Result<Definition, Vec<DefinitionError>> {
        let (errors, needs_path) = storage_check(&value);
        if !errors.is_empty() {
            return Err(errors);
        }
        let nodes = value.get_mut("nodes").and_then(Value::as_array_mut);
        for node in nodes
            .into_iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, n)| needs_path.contains(&i).then_some(n))
        {
            if let Some(obj) = node.as_object_mut() {
                let data = obj
                    .entry("data")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(data) = data.as_object_mut() {
                    let path = TriggerPath::generate();
                    data.insert("trigger_path".to_owned(), Value::String(path.into()));
                }
            }
        }
        Ok(Definition(value))
    }

    /// For values already stored (trusted): wraps without checks. A non-object is replaced by
    /// an empty object so the "always an object" invariant holds even for corrupt rows.
    pub fn from_stored(value: Value) -> Definition {
        if value.is_object() {
            Definition(value)
        } else {
            Definition(Value::Object(Map::new()))
        }
    }

    /// The JSON as stored.
    pub fn as_json(&self) -> &Value {
        &self.0
    }

    /// The JSON as stored, by value.
    pub fn into_json(self) -> Value {
        self.0
    }

    /// Nodes of type `trigger` that carry a valid path, in graph order.
    pub fn triggers(&self) -> Vec<TriggerNode> {
        self.nodes_of(node_type::TRIGGER)
            .filter_map(|n| {
                let path = TriggerPath::parse(data_str(n, "trigger_path")?).ok()?;
                Some(TriggerNode {
                    node_id: str_field(n, "id")?.to_owned(),
                    path,
                    enabled: enabled(n),
                })
            })
            .collect()
    }

    /// The startCall node's `data.greeting`, when it is a non-empty string.
    pub fn greeting(&self) -> Option<&str> {
        self.nodes_of(node_type::START_CALL)
            .next()
            .and_then(|n| data_str(n, "greeting"))
            .filter(|g| !g.is_empty())
    }

    /// `(node id, data.prompt)` of every startCall, agentNode, globalNode and endCall node
    /// with a non-empty prompt, in graph order.
    pub fn prompts(&self) -> Vec<(String, &str)> {
        self.prompt_nodes()
            .map(|(id, prompt)| (id.to_owned(), prompt))
            .collect()
    }

    /// The prompts of [`Definition::prompts`] without their node ids.
    pub fn prompt_texts(&self) -> impl Iterator<Item = &str> {
        self.prompt_nodes().map(|(_, prompt)| prompt)
    }

    fn prompt_nodes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.nodes()
            .filter(|n| str_field(n, "type").is_some_and(|t| PROMPT_TYPES.contains(&t)))
            .filter_map(|n| {
                let prompt = data_str(n, "prompt").filter(|p| !p.is_empty())?;
                Some((str_field(n, "id")?, prompt))
            })
    }

    /// The declared variables (SPEC §5.4); empty when there are none or they do not parse.
    pub fn variables(&self) -> Vec<VariableDecl> {
        self.0
            .get("variables")
            .filter(|v| !v.is_null())
            .and_then(|v| Vec::<VariableDecl>::deserialize(v).ok())
            .unwrap_or_default()
    }

    /// Full graph validation for publish: exactly one startCall; ≤1 globalNode; ≤1 trigger;
    /// unique node ids; unique edge ids; every edge's source/target exist; endCall nodes have
    /// no outgoing edge; startCall has a non-empty prompt or greeting; enabled webhook nodes
    /// need an http(s) `endpoint_url`; declared variables have unique names and defaults of
    /// their type; plus the storage checks (a trigger must already have its path). Returns
    /// every error, not just the first.
    pub fn validate_for_publish(&self) -> Result<(), Vec<DefinitionError>> {
        let (mut errors, needs_path) = storage_check(&self.0);
        let nodes: Vec<&Map<String, Value>> = self.nodes().collect();
        for i in needs_path {
            let id = nodes.get(i).and_then(|n| str_field(n, "id"));
            errors.push(node_err(
                id,
                "trigger_path",
                "trigger node has no trigger_path",
            ));
        }
        errors.extend(graph_errors(&nodes, self.edges()));
        errors.extend(variable_errors(&self.variables()));
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn nodes(&self) -> impl Iterator<Item = &Map<String, Value>> {
        array(&self.0, "nodes").filter_map(Value::as_object)
    }

    fn edges(&self) -> impl Iterator<Item = &Map<String, Value>> {
        array(&self.0, "edges").filter_map(Value::as_object)
    }

    fn nodes_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Map<String, Value>> {
        self.nodes()
            .filter(move |n| str_field(n, "type") == Some(kind))
    }
}

/// The elements of `value[key]` when it is an array, else nothing.
fn array<'a>(value: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    value
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

fn data_str<'a>(node: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    node.get("data")?.get(key)?.as_str()
}

/// `data.enabled`, which defaults to true (SPEC §6.1).
fn enabled(node: &Map<String, Value>) -> bool {
    node.get("data")
        .and_then(|d| d.get("enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

fn node_err(id: Option<&str>, field: &str, message: impl Into<String>) -> DefinitionError {
    DefinitionError::new("node", id, Some(field), message.into())
}

fn graph_err(field: &str, message: String) -> DefinitionError {
    DefinitionError::new("graph", None, Some(field), message)
}

/// The storage checks. Also returns the positions of trigger nodes without a path, which
/// saving fills in and publishing reports.
fn storage_check(value: &Value) -> (Vec<DefinitionError>, Vec<usize>) {
    let mut errors = Vec::new();
    let mut needs_path = Vec::new();
    let Some(root) = value.as_object() else {
        errors.push(DefinitionError::new(
            "graph",
            None,
            None,
            "definition must be a JSON object".to_owned(),
        ));
        return (errors, needs_path);
    };
    match root.get("nodes") {
        Some(Value::Array(nodes)) => {
            for (i, node) in nodes.iter().enumerate() {
                check_node(i, node, &mut errors, &mut needs_path);
            }
        }
        Some(_) => errors.push(graph_err("nodes", "nodes must be an array".to_owned())),
        None => errors.push(graph_err(
            "nodes",
            "definition needs a nodes array".to_owned(),
        )),
    }
    match root.get("edges") {
        None | Some(Value::Null) => {}
        Some(Value::Array(edges)) => {
            for (i, edge) in edges.iter().enumerate() {
                check_edge(i, edge, &mut errors);
            }
        }
        Some(_) => errors.push(graph_err("edges", "edges must be an array".to_owned())),
    }
    if let Some(vars) = root.get("variables").filter(|v| !v.is_null())
        && let Err(e) = Vec::<VariableDecl>::deserialize(vars)
    {
        errors.push(DefinitionError::new(
            "variable",
            None,
            Some("variables"),
            format!("variables must be a list of {{name, type, required, default}}: {e}"),
        ));
    }
    (errors, needs_path)
}

fn check_node(i: usize, node: &Value, errors: &mut Vec<DefinitionError>, needs: &mut Vec<usize>) {
    let Some(obj) = node.as_object() else {
        errors.push(DefinitionError::new(
            "node",
            None,
            None,
            format!("node #{} must be an object", i + 1),
        ));
        return;
    };
    let id = str_field(obj, "id");
    if id.is_none() {
        errors.push(node_err(
            None,
            "id",
            format!("node #{} needs a string id", i + 1),
        ));
    }
    let kind = str_field(obj, "type");
    if kind.is_none() {
        errors.push(node_err(id, "type", "node needs a string type"));
    }
    let data = obj.get("data");
    if data.is_some_and(|d| !d.is_object()) {
        errors.push(node_err(id, "data", "node data must be an object"));
        return;
    }
    if kind != Some(node_type::TRIGGER) {
        return;
    }
    match data.and_then(|d| d.get("trigger_path")) {
        None | Some(Value::Null) => needs.push(i),
        Some(Value::String(s)) if s.is_empty() => needs.push(i),
        Some(Value::String(s)) => {
            if let Err(e) = TriggerPath::parse(s) {
                errors.push(node_err(id, "trigger_path", e.to_string()));
            }
        }
        Some(_) => errors.push(node_err(
            id,
            "trigger_path",
            "trigger_path must be a string",
        )),
    }
    // A string "false" would otherwise read as the default `true` and leave a trigger live.
    if data
        .and_then(|d| d.get("enabled"))
        .is_some_and(|e| !e.is_boolean() && !e.is_null())
    {
        errors.push(node_err(id, "enabled", "enabled must be true or false"));
    }
}

fn check_edge(i: usize, edge: &Value, errors: &mut Vec<DefinitionError>) {
    let Some(obj) = edge.as_object() else {
        let msg = format!("edge #{} must be an object", i + 1);
        errors.push(DefinitionError::new("edge", None, None, msg));
        return;
    };
    let id = str_field(obj, "id");
    for field in ["id", "source", "target"] {
        if str_field(obj, field).is_none() {
            let msg = format!("edge #{} needs a string {field}", i + 1);
            errors.push(DefinitionError::new("edge", id, Some(field), msg));
        }
    }
}

/// The publish-only rules on nodes and edges. Malformed nodes and edges were already reported
/// by the storage checks and are skipped here.
fn graph_errors<'a>(
    nodes: &[&'a Map<String, Value>],
    edges: impl Iterator<Item = &'a Map<String, Value>>,
) -> Vec<DefinitionError> {
    let mut errors = Vec::new();
    let count = |kind: &str| {
        nodes
            .iter()
            .filter(|n| str_field(n, "type") == Some(kind))
            .count()
    };
    let starts = count(node_type::START_CALL);
    if starts != 1 {
        let msg = format!("definition needs exactly one startCall node, found {starts}");
        errors.push(graph_err("nodes", msg));
    }
    for (kind, label) in [
        (node_type::GLOBAL_NODE, "globalNode"),
        (node_type::TRIGGER, "trigger"),
    ] {
        let n = count(kind);
        if n > 1 {
            let msg = format!("definition may have at most one {label} node, found {n}");
            errors.push(graph_err("nodes", msg));
        }
    }
    let mut ids = HashSet::new();
    let mut end_calls = HashSet::new();
    for node in nodes {
        let Some(id) = str_field(node, "id") else {
            continue;
        };
        if !ids.insert(id) {
            let msg = format!("node id '{id}' is used more than once");
            errors.push(node_err(Some(id), "id", msg));
        }
        match str_field(node, "type") {
            Some(node_type::END_CALL) => {
                end_calls.insert(id);
            }
            Some(node_type::START_CALL) => {
                let has = |k| data_str(node, k).is_some_and(|s| !s.trim().is_empty());
                if !has("prompt") && !has("greeting") {
                    let msg = "startCall node needs a prompt or a greeting";
                    errors.push(node_err(Some(id), "prompt", msg));
                }
            }
            Some(node_type::WEBHOOK)
                if enabled(node) && !is_http_url(data_str(node, "endpoint_url").unwrap_or("")) =>
            {
                let msg = "enabled webhook node needs an http:// or https:// endpoint_url";
                errors.push(node_err(Some(id), "endpoint_url", msg));
            }
            _ => {}
        }
    }
    let mut edge_ids = HashSet::new();
    for edge in edges {
        let id = str_field(edge, "id");
        let edge_err =
            |field: &str, msg: String| DefinitionError::new("edge", id, Some(field), msg);
        if let Some(id) = id
            && !edge_ids.insert(id)
        {
            let msg = format!("edge id '{id}' is used more than once");
            errors.push(edge_err("id", msg));
        }
        for field in ["source", "target"] {
            if let Some(end) = str_field(edge, field).filter(|e| !ids.contains(e)) {
                let msg = format!("edge {field} '{end}' is not a node");
                errors.push(edge_err(field, msg));
            }
        }
        if let Some(src) = str_field(edge, "source").filter(|s| end_calls.contains(s)) {
            let msg = format!("endCall node '{src}' ends the call and cannot have outgoing edges");
            errors.push(edge_err("source", msg));
        }
    }
    errors
}

/// Declared variables must have distinct, usable names and defaults of their own type.
fn variable_errors(decls: &[VariableDecl]) -> Vec<DefinitionError> {
    let mut errors = Vec::new();
    let mut names = HashSet::new();
    for d in decls {
        let err = |field: &str, msg: String| {
            DefinitionError::new("variable", Some(&d.name), Some(field), msg)
        };
        if d.name.trim().is_empty() || d.name.contains('.') {
            let msg = format!("variable name '{}' must be non-empty, without '.'", d.name);
            errors.push(err("name", msg));
        } else if !names.insert(d.name.as_str()) {
            let msg = format!("variable '{}' is declared more than once", d.name);
            errors.push(err("name", msg));
        }
        if let Some(default) = d.default.as_ref().filter(|v| !v.is_null())
            && !d.kind.matches(default)
        {
            let msg = format!("default of '{}' is not a {}", d.name, d.kind.as_str());
            errors.push(err("default", msg));
        }
    }
    errors
}

/// An absolute http(s) URL with a non-empty host part; the SSRF guard at send time does the
/// rest (SPEC §10).
fn is_http_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace))
}

// Tests live in `tests/definition.rs`: they need only the public API, and keeping them out
// keeps this file near the house limit of ~400 lines.
