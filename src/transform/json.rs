//! JSON body edits of a route's `transform` (`body = { ... }`): set, remove and rename
//! fields by JSON Pointer (RFC 6901), wrap or unwrap an object, within a size bound.
//!
//! Compiled at config load (pointers and templated values); applied per message by
//! [`BodyEdit::apply`] over a whole body the proxy read (`proxy/body_edit.rs`). The order
//! is fixed: unwrap, remove, rename, set, wrap. Removing or renaming a field that is not
//! there changes nothing; `set` creates missing intermediate objects.
//!
//! A body is read one level at a time: only the objects and arrays a pointer goes through
//! are opened into members (in the order they came); every other value stays the body's
//! own text, validated by serde_json as it was skipped, and is copied out unchanged. An
//! edited body thus differs from the original only where the edit says (and in the
//! whitespace of the levels it opened), and an edit costs one validating scan of the body
//! rather than a tree of allocated values.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
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

/// A value from the config (`set`), whose objects keep their members in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// The body is not JSON (or nests deeper than the parser allows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidJson(pub String);

impl From<serde_json::Error> for InvalidJson {
    fn from(err: serde_json::Error) -> Self {
        InvalidJson(err.to_string())
    }
}

/// A body being edited. Only the objects and arrays a pointer goes through are opened into
/// members; every other value stays the body's own (validated) text and is copied out as
/// it came, so an edit costs one validating scan of the body and no allocation per value.
#[derive(Debug)]
enum Node<'a> {
    /// A value as the body had it.
    Raw(&'a RawValue),
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
    Array(Vec<Node<'a>>),
    /// A value from the config.
    Fixed(&'a Json),
    /// A rendered template.
    Text(String),
}

impl BodyEdit {
    /// The edited body, serialised into `out` (cleared first). Template values render over
    /// `facts`.
    pub fn apply(
        &self,
        body: &[u8],
        facts: &impl Facts,
        out: &mut Vec<u8>,
    ) -> Result<(), InvalidJson> {
        let text = std::str::from_utf8(body).map_err(|e| InvalidJson(e.to_string()))?;
        // A scalar body is only skipped, as a nested one is (a number past f64 is JSON).
        let opened = match text.trim_start().as_bytes().first() {
            Some(b'{' | b'[') => serde_json::from_str::<Shallow<'_>>(text)?.0,
            _ => None,
        };
        let mut doc = match opened {
            Some(node) => node,
            None => Node::Raw(serde_json::from_str::<&RawValue>(text)?),
        };
        self.edit(&mut doc, facts);
        out.clear();
        write(&doc, out)?;
        Ok(())
    }

    fn edit<'a>(&'a self, doc: &mut Node<'a>, facts: &impl Facts) {
        if let Some(name) = &self.unwrap {
            open(doc);
            if let Node::Object(members) = doc {
                if let Some(at) = members.iter().position(|(k, _)| **k == **name) {
                    *doc = members.swap_remove(at).1;
                }
            }
        }
        for pointer in &self.remove {
            pointer.take(doc);
        }
        for (from, to) in &self.rename {
            if let Some(moved) = from.take(doc) {
                to.set(doc, moved);
            }
        }
        let mut text = Vec::new();
        for (pointer, new) in &self.set {
            let new = match new {
                SetValue::Fixed(json) => Node::Fixed(json),
                SetValue::Template(template) => {
                    text.clear();
                    template.render(facts, Escape::None, &mut text);
                    Node::Text(String::from_utf8_lossy(&text).into_owned())
                }
            };
            pointer.set(doc, new);
        }
        if let Some(name) = &self.wrap {
            let inner = std::mem::replace(doc, Node::Array(Vec::new()));
            *doc = Node::Object(vec![(Cow::Borrowed(&**name), inner)]);
        }
    }
}

/// Opens an object or array (from the body or the config) into members; other values
/// stay as they are.
fn open(node: &mut Node<'_>) {
    match node {
        Node::Raw(raw) => {
            // The text was validated when its parent was read.
            if let Ok(Shallow(Some(opened))) = serde_json::from_str(raw.get()) {
                *node = opened;
            }
        }
        Node::Fixed(Json::Object(members)) => {
            let members = members.iter();
            *node = Node::Object(
                members
                    .map(|(k, v)| (Cow::Borrowed(&**k), Node::Fixed(v)))
                    .collect(),
            );
        }
        Node::Fixed(Json::Array(items)) => {
            *node = Node::Array(items.iter().map(Node::Fixed).collect());
        }
        _ => {}
    }
}

/// Writes `node` as JSON: opened levels compact, untouched values as the body had them.
fn write(node: &Node<'_>, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match node {
        Node::Raw(raw) => out.extend_from_slice(raw.get().as_bytes()),
        Node::Fixed(json) => serde_json::to_writer(&mut *out, json)?,
        Node::Text(text) => serde_json::to_writer(&mut *out, text)?,
        Node::Object(members) => {
            out.push(b'{');
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, &**key)?;
                out.push(b':');
                write(value, out)?;
            }
            out.push(b'}');
        }
        Node::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
    }
    Ok(())
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
    fn take<'a>(&self, root: &mut Node<'a>) -> Option<Node<'a>> {
        let (last, parents) = self.0.split_last()?;
        let parent = parents.iter().try_fold(root, |v, t| child(v, t))?;
        open(parent);
        match parent {
            Node::Object(members) => {
                let at = members.iter().position(|(k, _)| **k == **last)?;
                Some(members.remove(at).1)
            }
            Node::Array(items) => {
                let at = index(last, items.len())?;
                Some(items.remove(at))
            }
            _ => None,
        }
    }

    /// Writes `new` where the pointer names, creating missing objects on the way. A scalar
    /// in the way, or an array index past the end, leaves the body unchanged.
    fn set<'a>(&self, root: &mut Node<'a>, new: Node<'a>) {
        let Some((last, parents)) = self.0.split_last() else {
            return;
        };
        let mut at = root;
        for token in parents {
            open(at);
            if let Node::Object(members) = at {
                if !members.iter().any(|(k, _)| **k == **token) {
                    let name = Cow::Owned(token.to_string());
                    members.push((name, Node::Object(Vec::new())));
                }
            }
            match child(at, token) {
                Some(next) => at = next,
                None => return,
            }
        }
        open(at);
        match at {
            Node::Object(members) => match members.iter_mut().find(|(k, _)| **k == **last) {
                Some((_, slot)) => *slot = new,
                None => members.push((Cow::Owned(last.to_string()), new)),
            },
            // `-` names the place after the last element (RFC 6901 §4).
            Node::Array(items) if &**last == "-" => items.push(new),
            Node::Array(items) => {
                if let Some(slot) = index(last, items.len()).and_then(|i| items.get_mut(i)) {
                    *slot = new;
                }
            }
            _ => {}
        }
    }
}

/// The member or element `token` names in `node`, opened first.
fn child<'n, 'a>(node: &'n mut Node<'a>, token: &str) -> Option<&'n mut Node<'a>> {
    open(node);
    match node {
        Node::Object(members) => members
            .iter_mut()
            .find(|(k, _)| **k == *token)
            .map(|(_, v)| v),
        Node::Array(items) => {
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

// ---- reading a level of the body ----

/// One level of a JSON text: an object's members or an array's elements, each kept as
/// its raw text; `None` for a scalar. serde_json validates the whole text as it reads it.
struct Shallow<'a>(Option<Node<'a>>);

/// A member name, borrowed from the body unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Shallow<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ShallowVisitor)
    }
}

struct ShallowVisitor;

impl<'de> Visitor<'de> for ShallowVisitor {
    type Value = Shallow<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Shallow(None))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Shallow(None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Shallow(None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Shallow(None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Shallow(None))
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Shallow(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element::<&'de RawValue>()? {
            items.push(Node::Raw(item));
        }
        Ok(Shallow(Some(Node::Array(items))))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some((Key(name), value)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
            members.push((name, Node::Raw(value)));
        }
        Ok(Shallow(Some(Node::Object(members))))
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(s.to_owned())))
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
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
