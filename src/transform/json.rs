//! JSON body edits of a route's `transform` (`body = { ... }`): set, remove and rename
//! fields by JSON Pointer (RFC 6901), wrap or unwrap an object, within a size bound.
//!
//! Compiled at config load (pointers and templated values); applied per message by
//! [`BodyEdit::apply`] over a whole body the proxy read (`proxy/body_edit.rs`). The order
//! is fixed: unwrap, remove, rename, set, wrap. Removing or renaming a field that is not
//! there changes nothing; `set` creates missing intermediate objects.
//!
//! A body is held as [`Json`], whose objects keep their members in the order they came:
//! an edited body differs from the original only where the edit says.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::template::{Escape, Facts, Scope, Template};
use crate::settings::{Ctx, SizeValue};

/// `max_bytes` when the config does not say.
pub const DEFAULT_MAX_BYTES: u64 = 1024 * 1024;

/// A transform's `body`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBody {
    #[serde(default)]
    pub set: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    pub remove: Vec<Spanned<String>>,
    #[serde(default)]
    pub rename: BTreeMap<Spanned<String>, Spanned<String>>,
    pub wrap: Option<Spanned<String>>,
    pub unwrap: Option<Spanned<String>>,
    pub max_bytes: Option<Spanned<SizeValue>>,
    pub oversize: Option<Spanned<String>>,
}

/// What happens to a body larger than `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversize {
    /// It goes on untouched, streamed.
    Pass,
    /// The message is refused: 413 for a request, 502 for an upstream's answer.
    Refuse,
}

/// A compiled body edit.
#[derive(Debug)]
pub struct BodyEdit {
    unwrap: Option<Box<str>>,
    remove: Vec<Pointer>,
    rename: Vec<(Pointer, Pointer)>,
    set: Vec<(Pointer, SetValue)>,
    wrap: Option<Box<str>>,
    /// Bodies up to this many payload bytes are edited.
    pub max_bytes: u64,
    pub oversize: Oversize,
}

/// A value `set` writes: fixed, or a string rendered per message.
#[derive(Debug)]
enum SetValue {
    Fixed(Json),
    Template(Template),
}

/// A JSON Pointer's reference tokens, unescaped (`~1` is `/`, `~0` is `~`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pointer(Box<[Box<str>]>);

/// A JSON value whose objects keep their members in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// The body is not JSON (or nests deeper than the parser allows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidJson(pub String);

impl BodyEdit {
    /// The edited body, serialised into `out` (cleared first). Template values render over
    /// `facts`.
    pub fn apply(
        &self,
        body: &[u8],
        facts: &impl Facts,
        out: &mut Vec<u8>,
    ) -> Result<(), InvalidJson> {
        let mut value: Json =
            serde_json::from_slice(body).map_err(|e| InvalidJson(e.to_string()))?;
        self.edit(&mut value, facts);
        out.clear();
        serde_json::to_writer(&mut *out, &value).map_err(|e| InvalidJson(e.to_string()))
    }

    fn edit(&self, value: &mut Json, facts: &impl Facts) {
        if let Some(name) = &self.unwrap {
            if let Json::Object(members) = value {
                if let Some(at) = members.iter().position(|(k, _)| **k == **name) {
                    *value = members.swap_remove(at).1;
                }
            }
        }
        for pointer in &self.remove {
            pointer.take(value);
        }
        for (from, to) in &self.rename {
            if let Some(moved) = from.take(value) {
                to.set(value, moved);
            }
        }
        let mut text = Vec::new();
        for (pointer, new) in &self.set {
            let new = match new {
                SetValue::Fixed(json) => json.clone(),
                SetValue::Template(template) => {
                    text.clear();
                    template.render(facts, Escape::None, &mut text);
                    Json::String(String::from_utf8_lossy(&text).into_owned())
                }
            };
            pointer.set(value, new);
        }
        if let Some(name) = &self.wrap {
            let inner = std::mem::replace(value, Json::Null);
            *value = Json::Object(vec![(name.to_string(), inner)]);
        }
    }
}

impl Pointer {
    /// Parses an RFC 6901 pointer; the error gives the character offset and the reason.
    fn parse(text: &str) -> Result<Pointer, (usize, &'static str)> {
        if text.is_empty() {
            return Err((0, "the whole body cannot be named: use `wrap` or `unwrap`"));
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err((0, "a JSON Pointer starts with '/'"));
        };
        let mut tokens = Vec::new();
        let mut offset = 1;
        for raw in rest.split('/') {
            let mut token = String::with_capacity(raw.len());
            let mut chars = raw.char_indices().peekable();
            while let Some((i, c)) = chars.next() {
                if c != '~' {
                    token.push(c);
                    continue;
                }
                match chars.next() {
                    Some((_, '0')) => token.push('~'),
                    Some((_, '1')) => token.push('/'),
                    _ => {
                        let at = offset + raw[..i].chars().count();
                        return Err((at, "'~' must be followed by 0 or 1 (RFC 6901)"));
                    }
                }
            }
            offset += raw.chars().count() + 1;
            tokens.push(token.into_boxed_str());
        }
        Ok(Pointer(tokens.into()))
    }

    /// Removes and returns the value the pointer names, if there is one.
    fn take(&self, root: &mut Json) -> Option<Json> {
        let (last, parents) = self.0.split_last()?;
        let parent = parents.iter().try_fold(root, |v, t| child(v, t))?;
        match parent {
            Json::Object(members) => {
                let at = members.iter().position(|(k, _)| **k == **last)?;
                Some(members.remove(at).1)
            }
            Json::Array(items) => {
                let at = index(last, items.len())?;
                Some(items.remove(at))
            }
            _ => None,
        }
    }

    /// Writes `new` where the pointer names, creating missing objects on the way. A scalar
    /// in the way, or an array index past the end, leaves the body unchanged.
    fn set(&self, root: &mut Json, new: Json) {
        let Some((last, parents)) = self.0.split_last() else {
            return;
        };
        let mut at = root;
        for token in parents {
            if let Json::Object(members) = at {
                if !members.iter().any(|(k, _)| **k == **token) {
                    members.push((token.to_string(), Json::Object(Vec::new())));
                }
            }
            match child(at, token) {
                Some(next) => at = next,
                None => return,
            }
        }
        match at {
            Json::Object(members) => match members.iter_mut().find(|(k, _)| **k == **last) {
                Some((_, slot)) => *slot = new,
                None => members.push((last.to_string(), new)),
            },
            // `-` names the place after the last element (RFC 6901 §4).
            Json::Array(items) if &**last == "-" => items.push(new),
            Json::Array(items) => {
                if let Some(slot) = index(last, items.len()).and_then(|i| items.get_mut(i)) {
                    *slot = new;
                }
            }
            _ => {}
        }
    }
}

/// The member or element `token` names in `value`.
fn child<'v>(value: &'v mut Json, token: &str) -> Option<&'v mut Json> {
    match value {
        Json::Object(members) => members.iter_mut().find(|(k, _)| k == token).map(|(_, v)| v),
        Json::Array(items) => {
            let at = index(token, items.len())?;
            items.get_mut(at)
        }
        _ => None,
    }
}

/// An array index token (RFC 6901 §4: digits, no leading zero) below `len`.
fn index(token: &str, len: usize) -> Option<usize> {
    let valid = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    token.parse().ok().filter(|i| valid && *i < len)
}

// ---- config ----

/// Compiles a `body` section.
pub fn build(
    ctx: &mut Ctx,
    file: &Spanned<FileBody>,
    key: &str,
    scope: Scope<'_>,
) -> Option<BodyEdit> {
    let errors = ctx.error_count();
    let body = file.get_ref();
    let pointer = |ctx: &mut Ctx, text: &Spanned<String>, key: &str| {
        Pointer::parse(text.get_ref())
            .map_err(|(at, why)| {
                let why = format!("\"{}\": at character {}: {why}", text.get_ref(), at + 1);
                ctx.error(text.span(), key, why);
            })
            .ok()
    };
    let remove = body
        .remove
        .iter()
        .enumerate()
        .filter_map(|(i, p)| pointer(ctx, p, &format!("{key}.remove[{i}]")))
        .collect();
    let mut rename = Vec::new();
    for (from, to) in &body.rename {
        let key = format!("{key}.rename.{}", from.get_ref());
        if let (Some(from), Some(to)) = (pointer(ctx, from, &key), pointer(ctx, to, &key)) {
            rename.push((from, to));
        }
    }
    let mut set = Vec::new();
    for (at, value) in &body.set {
        let key = format!("{key}.set.{}", at.get_ref());
        let Some(at) = pointer(ctx, at, &key) else {
            continue;
        };
        let new = match value.get_ref() {
            toml::Value::String(text) => match Template::compile(text, scope) {
                Ok(template) => match template.as_literal() {
                    Some(literal) => {
                        SetValue::Fixed(Json::String(String::from_utf8_lossy(literal).into()))
                    }
                    None => SetValue::Template(template),
                },
                Err(err) => {
                    ctx.error(value.span(), &key, format!("\"{text}\": {err}"));
                    continue;
                }
            },
            other => match from_toml(other) {
                Ok(json) => SetValue::Fixed(json),
                Err(why) => {
                    ctx.error(value.span(), &key, why);
                    continue;
                }
            },
        };
        set.push((at, new));
    }
    let mut field = |name: &Option<Spanned<String>>, which: &str| {
        let name = name.as_ref()?;
        if name.get_ref().is_empty() {
            ctx.error(name.span(), format!("{key}.{which}"), "needs a field name");
            return None;
        }
        Some(name.get_ref().as_str().into())
    };
    let wrap = field(&body.wrap, "wrap");
    let unwrap = field(&body.unwrap, "unwrap");
    let max_bytes = ctx.size(
        &body.max_bytes,
        &format!("{key}.max_bytes"),
        DEFAULT_MAX_BYTES,
    );
    let oversize = match body.oversize.as_ref().map(|o| (o, o.get_ref().as_str())) {
        None | Some((_, "pass")) => Oversize::Pass,
        Some((_, "refuse")) => Oversize::Refuse,
        Some((value, text)) => {
            let why = format!("\"{text}\": use \"pass\" or \"refuse\"");
            ctx.error(value.span(), format!("{key}.oversize"), why);
            Oversize::Pass
        }
    };
    let edit = BodyEdit {
        unwrap,
        remove,
        rename,
        set,
        wrap,
        max_bytes,
        oversize,
    };
    let does_nothing = edit.unwrap.is_none()
        && edit.remove.is_empty()
        && edit.rename.is_empty()
        && edit.set.is_empty()
        && edit.wrap.is_none();
    if does_nothing && ctx.error_count() == errors {
        let why = "edits nothing: give set, remove, rename, wrap or unwrap";
        ctx.error(file.span(), key, why);
    }
    (ctx.error_count() == errors).then_some(edit)
}

/// A TOML value as JSON (a date-time becomes its text).
fn from_toml(value: &toml::Value) -> Result<Json, String> {
    Ok(match value {
        toml::Value::String(s) => Json::String(s.clone()),
        toml::Value::Integer(i) => Json::Number((*i).into()),
        toml::Value::Float(f) => Json::Number(
            serde_json::Number::from_f64(*f)
                .ok_or_else(|| format!("{f} has no JSON form (NaN and infinities have none)"))?,
        ),
        toml::Value::Boolean(b) => Json::Bool(*b),
        toml::Value::Datetime(d) => Json::String(d.to_string()),
        toml::Value::Array(items) => {
            Json::Array(items.iter().map(from_toml).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(table) => Json::Object(
            table
                .iter()
                .map(|(k, v)| Ok((k.clone(), from_toml(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

// ---- serde for `Json` ----

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Json, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Json, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(n)
            .map(Json::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, s: &str) -> Result<Json, E> {
        Ok(Json::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Json, E> {
        Ok(Json::String(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(member) = map.next_entry::<String, Json>()? {
            members.push(member);
        }
        Ok(Json::Object(members))
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => serializer.serialize_unit(),
            Json::Bool(b) => serializer.serialize_bool(*b),
            Json::Number(n) => n.serialize(serializer),
            Json::String(s) => serializer.serialize_str(s),
            Json::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(members) => {
                let mut map = serializer.serialize_map(Some(members.len()))?;
                for (k, v) in members {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

#[cfg(test)]
mod tests;
