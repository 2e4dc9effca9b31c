//! Request extraction: API-key and admin authentication, and JSON bodies whose every failure
//! is problem JSON (SPEC §2.3 #1–3, §11).

use crate::app::AppState;
use crate::http::problem::{ApiError, ApiResult};
use crate::trigger::ContextMember;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use callgate_domain::context::InitialContext;
use callgate_store::ApiKey;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

pub type SharedState = Arc<AppState>;

/// Checks 1–2: the `X-API-Key` of an active key. `codes` are the route's (missing, invalid).
pub async fn authenticate(
    state: &AppState,
    parts: &Parts,
    codes: (&str, &str),
) -> ApiResult<Arc<ApiKey>> {
    let raw = parts
        .headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, codes.0, "Missing API key"))?;
    let hash = callgate_domain::apikey::hash_api_key(raw);
    let key = state
        .catalog
        .api_key(&hash)
        .await?
        .filter(|k| k.active)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, codes.1, "Invalid API key"))?;
    state.note_key_use(key.id);
    Ok(key)
}

/// An authenticated API key (Dograh error codes).
pub struct Auth(pub Arc<ApiKey>);

impl FromRequestParts<SharedState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> ApiResult<Self> {
        authenticate(state, parts, ("missing_api_key", "invalid_api_key"))
            .await
            .map(Auth)
    }
}

/// An authenticated key with the `admin` scope (may manage agents, keys, configurations).
pub struct AdminKey(pub Arc<ApiKey>);

impl FromRequestParts<SharedState> for AdminKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> ApiResult<Self> {
        let Auth(key) = Auth::from_request_parts(parts, state).await?;
        if !key.scopes.admin {
            return Err(ApiError::forbidden(
                "forbidden_scope",
                "API key does not have admin access",
            ));
        }
        Ok(AdminKey(key))
    }
}

/// The instance admin token (`Authorization: Bearer …`, SPEC §6.4).
pub struct InstanceAdmin;

impl FromRequestParts<SharedState> for InstanceAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> ApiResult<Self> {
        let Some(token) = &state.config.admin_token else {
            return Err(ApiError::not_found(
                "admin_api_disabled",
                "The admin API is disabled (no admin token configured)",
            ));
        };
        let given = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_admin_token",
                "Invalid admin token",
            ));
        }
        Ok(InstanceAdmin)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The raw body, with the size limit reported as problem JSON.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<Self> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        "Request body is larger than 256 KiB",
                    )
                } else {
                    ApiError::unprocessable("invalid_body", e.body_text())
                }
            })
    }
}

/// The display-name rule shared by agents, keys, configurations and organisations: trimmed,
/// 1 to 255 characters.
pub fn parse_name(raw: &str) -> ApiResult<String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(ApiError::invalid_field(
            "/name",
            "name must be 1 to 255 characters",
        ));
    }
    Ok(name.to_owned())
}

/// Check 3: the body must be one JSON object.
pub fn parse_object(bytes: &[u8]) -> ApiResult<Map<String, Value>> {
    let text = body_text(bytes)?;
    whole_parse(text)
}

/// [`parse_object`] for a trigger body: every member but the context parsed, and the
/// context's member (the last, as serde_json keeps the last of equal names) mostly as text.
///
/// A context is most of a trigger body, and a trigger only stores it and reads a few of its
/// members, so the body is first read with serde_json's skipping parse for the context
/// (`RawValue`: checked, not built). Whatever that path cannot settle exactly as a parse into
/// values would (an escaped top-level name, a context a parse could still refuse, any error)
/// goes through the whole parse, which also names the error: the same bodies are accepted.
pub fn parse_trigger_body(
    bytes: &[u8],
    context_field: &str,
) -> ApiResult<(Map<String, Value>, ContextMember)> {
    let text = body_text(bytes)?;
    if let Some(parsed) = members_parse(text, context_field) {
        return Ok(parsed);
    }
    let mut map = whole_parse(text)?;
    // Only an object's text can stand for the run's context (not `null`, not a string).
    let context_text = map
        .get(context_field)
        .is_some_and(Value::is_object)
        .then(|| member_text(text, context_field))
        .flatten()
        .map(Box::from);
    let context = match map.remove(context_field) {
        None => ContextMember::Absent,
        Some(v) => ContextMember::Parsed(v, context_text),
    };
    Ok((map, context))
}

/// The top-level members of a JSON object, values unparsed; equal names keep the last value.
/// Borrowed names fail on an escape, which sends the body to the whole parse.
type TopLevel<'t> = BTreeMap<&'t str, &'t RawValue>;

/// [`parse_trigger_body`]'s first path, or `None` for the whole parse.
// Out of line so that profiles name it (scripts/instructions.sh).
#[inline(never)]
fn members_parse(text: &str, context_field: &str) -> Option<(Map<String, Value>, ContextMember)> {
    if text.as_bytes().get(skip_space(text.as_bytes(), 0)) != Some(&b'{') {
        return None;
    }
    let top: TopLevel<'_> = serde_json::from_str(text).ok()?;
    let mut fields = Map::new();
    let mut context = ContextMember::Absent;
    for (name, raw) in top {
        let value = raw.get();
        if name == context_field && value.starts_with('{') {
            context = ContextMember::Text(InitialContext::from_text(value)?);
        } else if name == context_field {
            context = ContextMember::Parsed(serde_json::from_str(value).ok()?, None);
        } else {
            fields.insert(name.to_owned(), serde_json::from_str(value).ok()?);
        }
    }
    Some((fields, context))
}

/// An empty body, then one UTF-8 check over the whole body (a parse that trusts it is then
/// cheaper than one checking each string; bytes outside strings must be ASCII JSON either
/// way, so the same bodies pass).
fn body_text(bytes: &[u8]) -> ApiResult<&str> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "Request body must be a JSON object",
        ));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        ApiError::unprocessable(
            "invalid_body",
            format!(
                "Request body is not valid JSON: invalid UTF-8 at byte {}",
                e.valid_up_to()
            ),
        )
    })
}

// Out of line so that profiles name it (scripts/instructions.sh).
#[inline(never)]
fn whole_parse(text: &str) -> ApiResult<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::unprocessable(
            "invalid_body",
            "Request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::unprocessable(
            "invalid_body",
            format!("Request body is not valid JSON: {e}"),
        )),
    }
}

/// The text of the last top-level member `name` of `text`, a JSON object that has just parsed
/// (so only the structure is followed here, not checked). `None` when a top-level name holds
/// an escape: it might spell `name`, and serde_json's map keeps the last of equal names.
/// Strings are skipped with `memchr`: the bench's kilobyte of context costs ~3 800
/// instructions here, against ~7 500 for serialising the parsed object again.
// Out of line so that profiles name it (scripts/instructions.sh).
#[inline(never)]
fn member_text<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    let b = text.as_bytes();
    let mut i = skip_space(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let mut found = None;
    loop {
        i = skip_space(b, i);
        match b.get(i)? {
            b'}' => return found,
            b',' => {
                i += 1;
                continue;
            }
            b'"' => {}
            _ => return None,
        }
        let key_end = string_end(b, i)?;
        let key = &b[i + 1..key_end - 1];
        if key.contains(&b'\\') {
            return None;
        }
        i = skip_space(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_space(b, i + 1);
        let end = value_end(b, start)?;
        if key == name.as_bytes() {
            found = text.get(start..end);
        }
        i = end;
    }
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

/// The index after the closing quote of the string whose opening quote is at `i`.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        let k = j + memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[k] == b'"' {
            return Some(k + 1);
        }
        // An escape: the next byte is escaped (a `\uXXXX` has no quote or backslash after).
        j = k + 2;
    }
}

/// The index after the value that starts at `i`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => j = string_end(b, j)?,
                    b'{' | b'[' => {
                        depth += 1;
                        j += 1;
                    }
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        j += 1;
                        if depth == 0 {
                            return Some(j);
                        }
                    }
                    _ => j += 1,
                }
            }
        }
        // A number, `true`, `false` or `null`.
        _ => {
            let mut j = i;
            while b
                .get(j)
                .is_some_and(|c| !matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
            {
                j += 1;
            }
            Some(j)
        }
    }
}

/// A typed JSON body; unknown fields are ignored (as in Dograh), wrong types are 422.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<Self> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        let map = parse_object(&bytes)?;
        serde_json::from_value(Value::Object(map))
            .map(JsonBody)
            .map_err(|e| ApiError::unprocessable("invalid_body", format!("Invalid body: {e}")))
    }
}

/// Path parameters whose parse failures are problem JSON (422 `invalid_path`, as FastAPI —
/// and so Dograh — answers a non-integer id) instead of axum's plain-text 400.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) if e.status().is_server_error() => Err(ApiError::internal(e.body_text())),
            Err(e) => Err(ApiError::unprocessable("invalid_path", e.body_text())),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn code_and_detail(bytes: &[u8]) -> Option<(String, String)> {
        parse_object(bytes).err().map(|e| (e.code, e.detail))
    }

    #[test]
    fn a_body_is_accepted_exactly_when_it_is_a_json_object_in_utf8() {
        let bodies: &[&[u8]] = &[
            br#"{"phone_number":"+14155550100"}"#,
            "{\"name\":\"Sof\u{ed}a \u{c1}lvarez\",\"emoji\":\"\u{1f4de}\"}".as_bytes(),
            br#"{"escaped":"\u00e9\ud83d\udcde"}"#,
            br#" { } "#,
            br#"[1, 2]"#,
            br#""text""#,
            br#"{"lone":"\ud800"}"#,
            b"{\"bad\":\"\xff\"}",
            b"{\"cut\":\"\xe2\x82\"}",
            b"{\"key\xc3\":1}",
            b"\xef\xbb\xbf{}",
            b"{} \x80",
            br#"{"a":1"#,
        ];
        for body in bodies {
            // The acceptance of parsing the bytes directly, as before.
            let expected = matches!(serde_json::from_slice::<Value>(body), Ok(Value::Object(_)));
            assert_eq!(
                parse_object(body).is_ok(),
                expected,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let m = parse_object("{\"name\":\"Sof\u{ed}a\"}".as_bytes()).expect("valid object");
        assert_eq!(m["name"], "Sof\u{ed}a");
    }

    /// The text a run would store for the member, when it is the one sent.
    fn sent_text(member: &ContextMember) -> Option<String> {
        match member {
            ContextMember::Text(c) => Some(c.text().to_string()),
            ContextMember::Parsed(_, t) => t.as_deref().map(str::to_owned),
            ContextMember::Absent => None,
        }
    }

    /// The member's value, built.
    fn context_value(member: &ContextMember) -> Option<Value> {
        match member {
            ContextMember::Text(c) => Some(Value::Object(c.map().clone())),
            ContextMember::Parsed(v, _) => Some(v.clone()),
            ContextMember::Absent => None,
        }
    }

    fn text_of(body: &str, field: &str) -> Option<String> {
        let (_, member) = parse_trigger_body(body.as_bytes(), field).unwrap();
        sent_text(&member)
    }

    #[test]
    fn a_trigger_body_parses_as_the_plain_parse_does_and_keeps_its_context_text() {
        let bodies: &[&str] = &[
            r#"{"phone_number":"+14155550100","initial_context":{"a":1,"b":[true,null]}}"#,
            r#"{ "initial_context" : { "name" : "Jos\u00e9", "n": 2.50 } , "x": 1 }"#,
            r#"{"initial_context":{"a":1},"initial_context":{"b":2},"z":0}"#,
            r#"{"initial_context":null}"#,
            r#"{"initial_context":"text"}"#,
            r#"{"other":{"initial_context":{"nested":true}}}"#,
            r#"{}"#,
            r#"{"initial_context":{"big":1e400}}"#,
            r#"{"initial_context":{"lone":"\ud800"}}"#,
            r#"{"initial_context":{"a":1}"#,
            r#"[{"initial_context":{}}]"#,
            r#"{"initial_context":{"a":1}} 5"#,
            r#"{"initial_context":{"n":-0,"m":100000000000000000000,"x":"\n\"\\","d":{"d":{"a":1,"a":2}}},"metadata":{"k":[1,2]},"phone_number":"+1"}"#,
            r#"{"initial_context":{"e":2.5E3,"big":1e308}}"#,
            r#"{"initial\u005fcontext":{"a":1},"initial_context":{"b":2}}"#,
            r#"{"initial_context":{"a":1,"a":"\u00e9"}}"#,
            r#"{"initial_context":{"a":01}}"#,
            r#"{"initial_context":{"a":"tab	inside"}}"#,
            r#"{"initial_context":{"a":1,}}"#,
            r#"{"initial_context":[{"a":1}]}"#,
            r#"{"x":"\ud800","initial_context":{"a":1}}"#,
        ];
        for body in bodies {
            let plain = parse_object(body.as_bytes()).map_err(|e| (e.code, e.detail));
            let split = parse_trigger_body(body.as_bytes(), "initial_context");
            match (&plain, &split) {
                (Ok(map), Ok((fields, member))) => {
                    // The other members as the plain parse has them (their order is not kept:
                    // the body's members are only looked up by name).
                    let mut others = map.clone();
                    let context = others.remove("initial_context");
                    assert_eq!(&others, fields, "{body}");
                    assert_eq!(context_value(member), context, "{body}");
                    // Text kept for a context parses to it (some objects keep none, below).
                    if let Some(t) = sent_text(member) {
                        assert_eq!(serde_json::from_str::<Value>(&t).ok(), context, "{body}");
                    }
                }
                (Err(e), Err(f)) => assert_eq!(e, &(f.code.clone(), f.detail.clone()), "{body}"),
                _ => panic!("{body}: {plain:?} against {:?}", split.is_ok()),
            }
        }
        let (_, member) = parse_trigger_body(bodies[0].as_bytes(), "initial_context").unwrap();
        assert!(
            matches!(member, ContextMember::Text(_)),
            "a plain context is kept as text, unparsed: {member:?}"
        );
        assert_eq!(
            text_of(bodies[1], "initial_context").as_deref(),
            Some(r#"{ "name" : "Jos\u00e9", "n": 2.50 }"#)
        );
        assert_eq!(
            text_of(bodies[2], "initial_context").as_deref(),
            Some(r#"{"b":2}"#),
            "the last of a repeated member"
        );
        assert_eq!(
            text_of(bodies[5], "initial_context"),
            None,
            "only a top-level member"
        );
        // Braces, brackets, quotes and backslashes inside strings are text, not structure.
        let tricky = r#"{"a":"}{\"","initial_context":{"s":"x\\","t":["]",{"u":"\"}"}]},"z":[1,{"q":"{"}],"w":true}"#;
        assert_eq!(
            text_of(tricky, "initial_context").as_deref(),
            Some(r#"{"s":"x\\","t":["]",{"u":"\"}"}]}"#)
        );
        for (body, expected) in [
            (r#"{"initial_context":{},"x":12.5e3}"#, Some("{}")),
            (
                r#"{"x":-1,"initial_context":{"a":null}}"#,
                Some(r#"{"a":null}"#),
            ),
            (
                r#"{"x":false , "initial_context":{"a":[]} }"#,
                Some(r#"{"a":[]}"#),
            ),
            // A context that the plain parse had to settle keeps its text too.
            (r#"{"initial_context":{"e":2.5E3}}"#, Some(r#"{"e":2.5E3}"#)),
            // An escaped name might spell the member: no text rather than the wrong one.
            (
                r#"{"initial_context":{"a":1},"initial\u005fcontext":{"b":2}}"#,
                None,
            ),
        ] {
            assert_eq!(
                text_of(body, "initial_context").as_deref(),
                expected,
                "{body}"
            );
        }
        let outbound = r#"{"agent_id":1,"variables":{"v":"x"}}"#;
        assert_eq!(
            text_of(outbound, "variables").as_deref(),
            Some(r#"{"v":"x"}"#)
        );
    }

    #[test]
    fn invalid_utf8_is_a_422_naming_the_byte() {
        let (code, detail) = code_and_detail(b"{\"bad\":\"ab\xffcd\"}").expect("refused");
        assert_eq!(code, "invalid_body");
        assert_eq!(
            detail,
            "Request body is not valid JSON: invalid UTF-8 at byte 10"
        );
        let (code, detail) = code_and_detail(b"[1]").expect("refused");
        assert_eq!(code, "invalid_body");
        assert_eq!(detail, "Request body must be a JSON object");
        let (code, detail) = code_and_detail(b"{\"a\":").expect("refused");
        assert_eq!(code, "invalid_body");
        assert!(
            detail.starts_with("Request body is not valid JSON: "),
            "{detail}"
        );
    }
}
