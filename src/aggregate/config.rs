//! A route's `aggregate`: the serde mirror and its compilation into [`Aggregate`].
//!
//! ```toml
//! [routes.aggregate]
//! deadline = "2s"                    # bounds the whole call (default 10s)
//! combine = "object"                 # "object" (default), "merge" or "array"
//! conflict = "error"                 # merge only: "first", "last" or "error" (default)
//! partial_header = "x-strait-partial"
//! [[routes.aggregate.parts]]
//! name = "user"
//! upstream = "users"
//! path = "/users/{user}?fields=all"  # a template; `{steps.NAME.a.b}` names an earlier part
//! ```
//!
//! A part naming `{steps.X…}` waits for X's answer (`Part::needs`); the others start at
//! once. An unknown step or a cycle is an error naming the key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::http1::headers::is_hop_by_hop;
use crate::settings::{is_tchar, is_token, Ctx, DurationValue, SizeValue};
use crate::transform::template::{Fact, Scope, Template};
use crate::upstream::config::{UpstreamId, UpstreamIds};

/// The whole aggregation ends by then unless the route says otherwise.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// A part's answer body is refused above this unless the part says otherwise.
pub const DEFAULT_MAX_BYTES: u64 = 1024 * 1024;
/// The header listing failed optional parts, unless the route names another.
pub const DEFAULT_PARTIAL_HEADER: &str = "x-strait-partial";

// ---- the file ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAggregate {
    pub deadline: Option<Spanned<DurationValue>>,
    pub combine: Option<Spanned<String>>,
    pub conflict: Option<Spanned<String>>,
    pub partial_header: Option<Spanned<String>>,
    pub parts: Spanned<Vec<Spanned<FilePart>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePart {
    pub name: Spanned<String>,
    pub upstream: Spanned<String>,
    pub method: Option<Spanned<String>>,
    pub path: Spanned<String>,
    pub pass_headers: Option<Vec<Spanned<String>>>,
    pub pass_query: Option<bool>,
    pub timeout: Option<Spanned<DurationValue>>,
    pub required: Option<bool>,
    pub allow: Option<Spanned<Vec<String>>>,
    pub deny: Option<Spanned<Vec<String>>>,
    pub max_bytes: Option<Spanned<SizeValue>>,
}

// ---- runtime types ----

/// A route's aggregation, compiled.
#[derive(Debug)]
pub struct Aggregate {
    pub deadline: Duration,
    pub combine: Combine,
    /// Lower-case header name listing the failed optional parts.
    pub partial_header: Box<[u8]>,
    /// In file order: the combined answer's order (`array`) and merge precedence. The
    /// steps between them form no cycle.
    pub parts: Box<[Part]>,
}

/// How the parts' answers become one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// `{"part": answer, …}`: no key can collide.
    Object,
    /// The top-level fields of every (object) answer in one object.
    Merge(Conflict),
    /// `[answer, …]` in part order.
    Array,
}

/// Which answer wins when two merged answers have the same field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    First,
    Last,
    /// The aggregation fails (502): the config promised disjoint answers.
    Error,
}

/// A top-level field filter of a part's (object) answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldFilter {
    All,
    Allow(Box<[String]>),
    Deny(Box<[String]>),
}

/// One upstream call of an aggregation.
#[derive(Debug)]
pub struct Part {
    /// Shared with the access log's record of each call.
    pub name: Arc<str>,
    pub upstream: UpstreamId,
    pub method: Box<[u8]>,
    /// The path (rendered with path escaping) and the query after its `?` (query escaping).
    pub path: Template,
    pub query: Option<Template>,
    /// Lower-case names of the client headers passed on.
    pub pass_headers: Box<[Box<[u8]>]>,
    pub pass_query: bool,
    pub timeout: Duration,
    pub required: bool,
    pub fields: FieldFilter,
    pub max_bytes: usize,
    /// The parts whose answers its templates read: it starts once they have ended.
    pub needs: Box<[usize]>,
}

impl FieldFilter {
    /// Keeps the fields the filter lets through of an object answer; others pass as they are.
    pub fn apply(&self, value: &mut serde_json::Value) {
        let serde_json::Value::Object(map) = value else {
            return;
        };
        match self {
            FieldFilter::All => {}
            FieldFilter::Allow(keep) => map.retain(|key, _| keep.iter().any(|k| k == key)),
            FieldFilter::Deny(drop) => map.retain(|key, _| !drop.iter().any(|k| k == key)),
        }
    }
}

/// Compiles `file` (the route's `aggregate`, at `key`); `None` after recording errors.
pub fn build(
    ctx: &mut Ctx,
    file: &FileAggregate,
    key: &str,
    params: &[String],
    upstreams: &UpstreamIds,
) -> Option<Aggregate> {
    let errors = ctx.error_count();
    let deadline = ctx.duration(&file.deadline, &format!("{key}.deadline"), DEFAULT_DEADLINE);
    let conflict = match &file.conflict {
        None => Conflict::Error,
        Some(value) => match value.get_ref().as_str() {
            "first" => Conflict::First,
            "last" => Conflict::Last,
            "error" => Conflict::Error,
            other => {
                let why = format!("unknown conflict rule \"{other}\": use first, last or error");
                ctx.error(value.span(), format!("{key}.conflict"), why);
                Conflict::Error
            }
        },
    };
    let combine = match &file.combine {
        None => Combine::Object,
        Some(value) => match value.get_ref().as_str() {
            "object" => Combine::Object,
            "merge" => Combine::Merge(conflict),
            "array" => Combine::Array,
            other => {
                let why = format!("unknown combine \"{other}\": use object, merge or array");
                ctx.error(value.span(), format!("{key}.combine"), why);
                Combine::Object
            }
        },
    };
    if let (Some(value), false) = (&file.conflict, matches!(combine, Combine::Merge(_))) {
        let why = "only applies to `combine = \"merge\"`";
        ctx.error(value.span(), format!("{key}.conflict"), why);
    }
    let partial_header = match &file.partial_header {
        None => DEFAULT_PARTIAL_HEADER.as_bytes().into(),
        Some(name) => {
            if !is_token(name.get_ref()) {
                let why = format!("\"{}\" is not a header name", name.get_ref());
                ctx.error(name.span(), format!("{key}.partial_header"), why);
            }
            name.get_ref().to_ascii_lowercase().into_bytes().into()
        }
    };
    let list = file.parts.get_ref();
    if list.is_empty() {
        ctx.error(
            file.parts.span(),
            format!("{key}.parts"),
            "needs at least one part",
        );
        return None;
    }
    let names: Vec<String> = list
        .iter()
        .map(|p| p.get_ref().name.get_ref().clone())
        .collect();
    let mut seen = HashMap::new();
    for (i, part) in list.iter().enumerate() {
        let name = &part.get_ref().name;
        if name.get_ref().is_empty() || !name.get_ref().bytes().all(is_tchar) {
            let why = format!("\"{}\" must be a non-empty token", name.get_ref());
            ctx.error(name.span(), format!("{key}.parts[{i}].name"), why);
        } else if let Some(first) = seen.insert(name.get_ref().as_str(), i) {
            let why = format!(
                "duplicate part name \"{}\" (also parts[{first}])",
                name.get_ref()
            );
            ctx.error(name.span(), format!("{key}.parts[{i}].name"), why);
        }
    }
    let mut parts = Vec::with_capacity(list.len());
    let mut needs = Vec::with_capacity(list.len());
    for (i, part) in list.iter().enumerate() {
        let key = format!("{key}.parts[{i}]");
        // A part may name any other; order and cycles are checked below.
        let others: Vec<String> = names.iter().filter(|n| **n != names[i]).cloned().collect();
        let scope = Scope {
            params,
            steps: &others,
        };
        if let Some((part, steps)) =
            build_part(ctx, part.get_ref(), &key, scope, deadline, upstreams)
        {
            let steps: Vec<usize> = steps
                .iter()
                .filter_map(|step| names.iter().position(|n| n == step))
                .collect();
            parts.push(Part {
                needs: steps.clone().into(),
                ..part
            });
            needs.push(steps);
        }
    }
    if ctx.error_count() > errors {
        return None;
    }
    match never_ready(&needs) {
        None => {}
        Some(stuck) => {
            let cycle: Vec<&str> = stuck.iter().map(|&i| names[i].as_str()).collect();
            let why = format!("the parts' steps form a cycle: {}", cycle.join(", "));
            let at = list[stuck[0]].get_ref().path.span();
            ctx.error(at, format!("{key}.parts[{}].path", stuck[0]), why);
            return None;
        }
    }
    Some(Aggregate {
        deadline,
        combine,
        partial_header,
        parts: parts.into(),
    })
}

/// One part, and the names of the steps its templates use.
fn build_part(
    ctx: &mut Ctx,
    file: &FilePart,
    key: &str,
    scope: Scope<'_>,
    deadline: Duration,
    upstreams: &UpstreamIds,
) -> Option<(Part, Vec<String>)> {
    let upstream = upstreams.get(file.upstream.get_ref()).copied();
    if upstream.is_none() {
        let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
        let why = format!(
            "unknown upstream \"{}\" (known: {})",
            file.upstream.get_ref(),
            known.join(", ")
        );
        ctx.error(file.upstream.span(), format!("{key}.upstream"), why);
    }
    let method = match &file.method {
        None => "GET".to_owned(),
        Some(method) => {
            if !is_token(method.get_ref()) {
                let why = format!("\"{}\" is not a method", method.get_ref());
                ctx.error(method.span(), format!("{key}.method"), why);
            }
            method.get_ref().to_ascii_uppercase()
        }
    };
    let text = file.path.get_ref();
    let (path_text, query_text) = match text.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (text.as_str(), None),
    };
    if !path_text.starts_with('/') || text.contains('#') || text.bytes().any(|b| b <= b' ') {
        let why = format!("\"{text}\" must start with '/' and hold no fragment, space or control");
        ctx.error(file.path.span(), format!("{key}.path"), why);
        return None;
    }
    let mut compile = |text: &str| {
        Template::compile(text, scope)
            .map_err(|err| {
                let why = format!("\"{}\": {err}", file.path.get_ref());
                ctx.error(file.path.span(), format!("{key}.path"), why);
            })
            .ok()
    };
    let path = compile(path_text);
    let query = query_text.map(&mut compile);
    let pass_headers = file
        .pass_headers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, name)| {
            let lower = name.get_ref().to_ascii_lowercase();
            let why = if !is_token(&lower) {
                Some(format!("\"{lower}\" is not a header name"))
            } else if lower == "host" || is_hop_by_hop(lower.as_bytes()) {
                // The gateway frames the part's request and names its endpoint itself.
                Some(format!("\"{lower}\" is set by the gateway, not passed"))
            } else {
                None
            };
            if let Some(why) = why {
                ctx.error(name.span(), format!("{key}.pass_headers[{i}]"), why);
            }
            lower.into_bytes().into()
        })
        .collect();
    let timeout = ctx.duration(&file.timeout, &format!("{key}.timeout"), deadline);
    let fields = match (&file.allow, &file.deny) {
        (Some(_), Some(deny)) => {
            ctx.error(
                deny.span(),
                format!("{key}.deny"),
                "set `allow` or `deny`, not both",
            );
            FieldFilter::All
        }
        (Some(allow), None) => FieldFilter::Allow(allow.get_ref().clone().into()),
        (None, Some(deny)) => FieldFilter::Deny(deny.get_ref().clone().into()),
        (None, None) => FieldFilter::All,
    };
    let max_bytes = ctx.size_usize(
        &file.max_bytes,
        &format!("{key}.max_bytes"),
        DEFAULT_MAX_BYTES,
    );
    let (path, query) = (path?, query.map_or(Some(None), |q| q.map(Some))?);
    let steps = path
        .facts()
        .chain(query.iter().flat_map(Template::facts))
        .filter_map(|fact| match fact {
            Fact::Step(step, _) => Some(step.to_string()),
            _ => None,
        })
        .collect();
    let part = Part {
        name: file.name.get_ref().as_str().into(),
        upstream: upstream?,
        method: method.into_bytes().into(),
        path,
        query,
        pass_headers,
        pass_query: file.pass_query.unwrap_or(false),
        timeout,
        required: file.required.unwrap_or(true),
        fields,
        max_bytes,
        needs: Box::new([]),
    };
    Some((part, steps))
}

/// The parts that could never start, waiting on each other (`needs[i]`: the parts part `i`
/// waits for): a cycle and the parts that wait on one. `None` when every part can start.
fn never_ready(needs: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut started = vec![false; needs.len()];
    loop {
        let ready: Vec<usize> = (0..needs.len())
            .filter(|&i| !started[i] && needs[i].iter().all(|&d| started[d]))
            .collect();
        if ready.is_empty() {
            break;
        }
        for i in ready {
            started[i] = true;
        }
    }
    let stuck: Vec<usize> = (0..needs.len()).filter(|&i| !started[i]).collect();
    (!stuck.is_empty()).then_some(stuck)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Aggregate, Vec<String>> {
        #[derive(Deserialize)]
        struct Wrap {
            aggregate: FileAggregate,
        }
        let wrap: Wrap = toml::from_str(text).map_err(|e| vec![e.to_string()])?;
        let mut ctx = Ctx::new(text, "test.toml");
        let upstreams: UpstreamIds = [("users".to_owned(), 0)].into();
        let params = ["user".to_owned()];
        let built = build(
            &mut ctx,
            &wrap.aggregate,
            "routes[0].aggregate",
            &params,
            &upstreams,
        );
        let errors: Vec<String> = ctx.into_errors().iter().map(|e| e.to_string()).collect();
        built.ok_or(errors)
    }

    const PARTS: &str = r#"
[[aggregate.parts]]
name = "user"
upstream = "users"
path = "/users/{user}"
[[aggregate.parts]]
name = "orders"
upstream = "users"
path = "/orders?user={steps.user.id}"
[[aggregate.parts]]
name = "prefs"
upstream = "users"
path = "/prefs/{user}"
"#;

    #[test]
    fn steps_make_a_part_wait_for_the_one_it_names() {
        let agg = parse(PARTS).expect("valid");
        let needs: Vec<&[usize]> = agg.parts.iter().map(|p| &p.needs[..]).collect();
        assert_eq!(needs, [&[][..], &[0], &[]]);
        assert_eq!(agg.combine, Combine::Object);
        assert!(agg.parts[1].query.is_some());
        assert_eq!(agg.parts[0].timeout, DEFAULT_DEADLINE);
    }

    #[test]
    fn bad_sections_name_file_line_and_key() {
        let cases: &[(&str, &str)] = &[
            (
                "[[aggregate.parts]]\nname = \"a\"\nupstream = \"users\"\npath = \"/a?x={steps.b.id}\"\n\
                 [[aggregate.parts]]\nname = \"b\"\nupstream = \"users\"\npath = \"/b?x={steps.a.id}\"\n",
                "test.toml:4:8: routes[0].aggregate.parts[0].path: the parts' steps form a cycle: a, b",
            ),
            (
                "[[aggregate.parts]]\nname = \"a\"\nupstream = \"users\"\npath = \"/a/{steps.zz.id}\"\n",
                "test.toml:4:8: routes[0].aggregate.parts[0].path",
            ),
            (
                "[[aggregate.parts]]\nname = \"a\"\nupstream = \"nope\"\npath = \"/a\"\n",
                "test.toml:3:12: routes[0].aggregate.parts[0].upstream: unknown upstream \"nope\"",
            ),
            (
                "[aggregate]\ncombine = \"zip\"\n[[aggregate.parts]]\nname = \"a\"\nupstream = \"users\"\npath = \"/a\"\n",
                "routes[0].aggregate.combine: unknown combine \"zip\"",
            ),
            (
                "[[aggregate.parts]]\nname = \"a\"\nupstream = \"users\"\npath = \"/a\"\n\
                 [[aggregate.parts]]\nname = \"a\"\nupstream = \"users\"\npath = \"/b\"\n",
                "routes[0].aggregate.parts[1].name: duplicate part name \"a\"",
            ),
            (
                "[[aggregate.parts]]\nname = \"a\"\nupstream = \"users\"\npath = \"/a\"\nallow = [\"x\"]\ndeny = [\"y\"]\n",
                "routes[0].aggregate.parts[0].deny",
            ),
            (
                "[[aggregate.parts]]\nname = \"a\"\nupstream = \"users\"\npath = \"/a\"\npass_headers = [\"accept\", \"Content-Length\"]\n",
                "test.toml:5:27: routes[0].aggregate.parts[0].pass_headers[1]: \"content-length\" is set by the gateway",
            ),
            (
                "[aggregate]\nparts = []\n",
                "routes[0].aggregate.parts: needs at least one part",
            ),
            (
                "[[aggregate.parts]]\nname = \"a\"\nupstream = \"users\"\npath = \"a\"\n",
                "routes[0].aggregate.parts[0].path: \"a\" must start with '/'",
            ),
        ];
        for (text, want) in cases {
            let errors = parse(text).err().unwrap_or_default();
            assert!(
                errors.iter().any(|e| e.contains(want)),
                "{text}\nwant {want}\ngot {errors:?}"
            );
        }
    }

    #[test]
    fn field_filters_keep_or_drop_top_level_fields() {
        let mut value = serde_json::json!({"id": 1, "name": "a", "secret": "s"});
        FieldFilter::Deny(vec!["secret".to_owned()].into()).apply(&mut value);
        assert_eq!(value, serde_json::json!({"id": 1, "name": "a"}));
        FieldFilter::Allow(vec!["id".to_owned()].into()).apply(&mut value);
        assert_eq!(value, serde_json::json!({"id": 1}));
        let mut list = serde_json::json!([1, 2]);
        FieldFilter::Allow(vec![].into()).apply(&mut list);
        assert_eq!(list, serde_json::json!([1, 2]));
    }
}
