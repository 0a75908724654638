//! Templates: text with `{fact}` placeholders, compiled at config load and rendered per
//! request into a reused buffer.
//!
//! Placeholders: `{id}` or `{param.id}` (a path parameter of the route), `{query.NAME}`,
//! `{header.NAME}`, `{claim.NAME}` (a scalar claim of the request's JWT), `{client_ip}`,
//! `{request_id}`, `{consumer}`, `{route}`, `{method}`, `{path}`, `{host}`, and, in an
//! aggregation's later steps, `{steps.NAME.a.b}` (a value of an earlier step's JSON answer,
//! by field path). `{{` and `}}` stand for literal braces. A fact that is absent renders as
//! nothing.
//!
//! Where the text goes decides how a value is escaped ([`Escape`]): a header value loses
//! control bytes, a path or query value is percent-encoded where it could change the
//! target's structure.

use std::fmt;

/// A compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Box<[Part]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(Box<[u8]>),
    Fact(Fact),
}

/// A request fact a placeholder names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// A path parameter of the route's pattern.
    Param(Box<str>),
    /// The first value of a query parameter, as sent (still percent-encoded).
    Query(Box<[u8]>),
    /// The first value of a request header (lower-case name).
    Header(Box<[u8]>),
    /// A scalar claim of the request's verified JWT.
    Claim(Box<str>),
    ClientIp,
    RequestId,
    /// The authenticated consumer.
    Consumer,
    /// The route's name.
    Route,
    Method,
    /// The request path, without the query.
    Path,
    /// The request's host (Host header or absolute-form authority).
    Host,
    /// A value from an earlier aggregation step's JSON answer: the step's name and the
    /// field path as a JSON Pointer (`/a/b`).
    Step(Box<str>, Box<str>),
}

/// What a template may name, decided by where it is used.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The parameter names of the route's path pattern.
    pub params: &'a [String],
    /// Names of earlier aggregation steps (`{steps.NAME…}`); empty elsewhere.
    pub steps: &'a [String],
}

/// Why a template does not compile: the byte offset in its text, and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.offset + 1, self.message)
    }
}

/// Where a rendered value goes, and so how it is escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// A header value: control bytes (CR, LF, NUL…) are dropped.
    Header,
    /// A request path: bytes that would end or restructure it (`?`, `#`, space, controls,
    /// non-ASCII) are percent-encoded; `/` and existing `%XX` escapes stay.
    Path,
    /// A query parameter's name or value: as for a path, and `&`, `=`, `+` too.
    Query,
    /// A JSON string's content (the caller adds the quotes): nothing is changed here; the
    /// caller escapes.
    None,
}

/// The facts of the request being served, as the renderer asks for them.
pub trait Facts {
    /// The value of `fact`, or `None` when the request does not have it.
    fn value(&self, fact: &Fact) -> Option<FactValue<'_>>;
}

/// A fact's value: bytes from the request, or text made for it.
pub enum FactValue<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl FactValue<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            FactValue::Borrowed(bytes) => bytes,
            FactValue::Owned(bytes) => bytes,
        }
    }
}

impl Template {
    /// Compiles `text`, whose placeholders may name what `scope` allows.
    pub fn compile(text: &str, scope: Scope<'_>) -> Result<Template, TemplateError> {
        let bytes = text.as_bytes();
        let mut parts = Vec::new();
        let mut literal = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'{' if bytes.get(i + 1) == Some(&b'{') => {
                    literal.push(b'{');
                    i += 2;
                }
                b'}' if bytes.get(i + 1) == Some(&b'}') => {
                    literal.push(b'}');
                    i += 2;
                }
                b'}' => {
                    return Err(TemplateError {
                        offset: i,
                        message: "unmatched '}' (write '}}' for a literal brace)".into(),
                    })
                }
                b'{' => {
                    let Some(len) = bytes[i + 1..].iter().position(|&b| b == b'}') else {
                        return Err(TemplateError {
                            offset: i,
                            message: "'{' is never closed (write '{{' for a literal brace)".into(),
                        });
                    };
                    let name = &text[i + 1..i + 1 + len];
                    let fact = fact(name, scope)
                        .map_err(|message| TemplateError { offset: i, message })?;
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal).into()));
                    }
                    parts.push(Part::Fact(fact));
                    i += len + 2;
                }
                b => {
                    literal.push(b);
                    i += 1;
                }
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal.into()));
        }
        Ok(Template {
            parts: parts.into(),
        })
    }

    /// The text, when the template has no placeholder.
    pub fn as_literal(&self) -> Option<&[u8]> {
        match &self.parts[..] {
            [] => Some(b""),
            [Part::Text(text)] => Some(text),
            _ => None,
        }
    }

    /// The facts the template names, in order.
    pub fn facts(&self) -> impl Iterator<Item = &Fact> {
        self.parts.iter().filter_map(|part| match part {
            Part::Fact(fact) => Some(fact),
            Part::Text(_) => None,
        })
    }

    /// Appends the template rendered over `facts` to `out`, values escaped for `escape`.
    /// The literal text is written as configured.
    pub fn render(&self, facts: &impl Facts, escape: Escape, out: &mut Vec<u8>) {
        for part in &self.parts[..] {
            match part {
                Part::Text(text) => out.extend_from_slice(text),
                Part::Fact(fact) => {
                    if let Some(value) = facts.value(fact) {
                        escape_into(value.bytes(), escape, out);
                    }
                }
            }
        }
    }
}

/// The fact a placeholder's inner text names.
fn fact(name: &str, scope: Scope<'_>) -> Result<Fact, String> {
    let known = |what: &str| -> Result<Fact, String> {
        Err(format!(
            "unknown placeholder {{{what}}}: use a path parameter{}, or query.NAME, header.NAME, \
             claim.NAME, client_ip, request_id, consumer, route, method, path, host{}",
            if scope.params.is_empty() {
                String::new()
            } else {
                format!(" ({})", scope.params.join(", "))
            },
            if scope.steps.is_empty() {
                ""
            } else {
                ", steps.NAME.FIELD"
            }
        ))
    };
    let non_empty = |rest: &str, what: &str| -> Result<(), String> {
        if rest.is_empty() || rest.bytes().any(|b| b.is_ascii_whitespace() || b == b'{') {
            Err(format!("{{{what}}} needs a name after the dot"))
        } else {
            Ok(())
        }
    };
    match name {
        "client_ip" => return Ok(Fact::ClientIp),
        "request_id" => return Ok(Fact::RequestId),
        "consumer" => return Ok(Fact::Consumer),
        "route" => return Ok(Fact::Route),
        "method" => return Ok(Fact::Method),
        "path" => return Ok(Fact::Path),
        "host" => return Ok(Fact::Host),
        _ => {}
    }
    let (kind, rest) = name.split_once('.').unwrap_or(("", name));
    match kind {
        "" | "param" => {
            if scope.params.iter().any(|p| p == rest) {
                Ok(Fact::Param(rest.into()))
            } else if kind == "param" {
                Err(format!(
                    "the route's path has no parameter \"{rest}\"{}",
                    if scope.params.is_empty() {
                        String::new()
                    } else {
                        format!(" (it has: {})", scope.params.join(", "))
                    }
                ))
            } else {
                known(name)
            }
        }
        "query" => {
            non_empty(rest, name)?;
            Ok(Fact::Query(rest.as_bytes().into()))
        }
        "header" => {
            non_empty(rest, name)?;
            if !rest.bytes().all(crate::settings::is_tchar) {
                return Err(format!("\"{rest}\" is not a header name"));
            }
            Ok(Fact::Header(rest.to_ascii_lowercase().into_bytes().into()))
        }
        "claim" => {
            non_empty(rest, name)?;
            Ok(Fact::Claim(rest.into()))
        }
        "steps" if !scope.steps.is_empty() => {
            let (step, field) = rest.split_once('.').unwrap_or((rest, ""));
            if !scope.steps.iter().any(|s| s == step) {
                return Err(format!(
                    "no earlier step \"{step}\" (earlier steps: {})",
                    scope.steps.join(", ")
                ));
            }
            // `a.b` names the field path; each segment becomes a JSON Pointer token.
            let mut pointer = String::new();
            for segment in field.split('.').filter(|s| !s.is_empty()) {
                pointer.push('/');
                pointer.push_str(&segment.replace('~', "~0").replace('/', "~1"));
            }
            Ok(Fact::Step(step.into(), pointer.into()))
        }
        _ => known(name),
    }
}

/// Appends `value` to `out`, escaped for where it goes.
fn escape_into(value: &[u8], escape: Escape, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value {
        let keep = match escape {
            Escape::None => true,
            Escape::Header => b == b'\t' || (b >= 0x20 && b != 0x7f),
            Escape::Path => is_path_byte(b),
            Escape::Query => is_path_byte(b) && !matches!(b, b'&' | b'=' | b'+'),
        };
        if keep {
            out.push(b);
        } else if escape != Escape::Header {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

/// RFC 3986 `pchar`, `/`, and `%` (a value's existing escapes stay as they are).
fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
                | b'%'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sample;

    impl Facts for Sample {
        fn value(&self, fact: &Fact) -> Option<FactValue<'_>> {
            match fact {
                Fact::Param(name) if &**name == "id" => Some(FactValue::Borrowed(b"42")),
                Fact::Header(name) if &**name == b"x-tenant" => {
                    Some(FactValue::Borrowed(b"a b?c&d\r\n"))
                }
                Fact::ClientIp => Some(FactValue::Owned(b"10.0.0.1".to_vec())),
                Fact::Step(step, pointer) if &**step == "user" && &**pointer == "/id" => {
                    Some(FactValue::Borrowed(b"7"))
                }
                _ => None,
            }
        }
    }

    const PARAMS: &[String] = &[];

    fn scope<'a>(params: &'a [String], steps: &'a [String]) -> Scope<'a> {
        Scope { params, steps }
    }

    fn render(text: &str, escape: Escape) -> String {
        let params = ["id".to_owned()];
        let steps = ["user".to_owned()];
        let template = Template::compile(text, scope(&params, &steps)).unwrap();
        let mut out = Vec::new();
        template.render(&Sample, escape, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn placeholders_render_escaped_for_their_place() {
        let cases = [
            ("/v2/accounts/{id}", Escape::Path, "/v2/accounts/42"),
            ("/v2/{param.id}/x", Escape::Path, "/v2/42/x"),
            ("/t/{header.X-Tenant}", Escape::Path, "/t/a%20b%3Fc&d%0D%0A"),
            ("{header.x-tenant}", Escape::Query, "a%20b%3Fc%26d%0D%0A"),
            ("t={header.x-tenant}", Escape::Header, "t=a b?c&d"),
            ("{client_ip}|{consumer}|", Escape::Header, "10.0.0.1||"),
            ("{{literal}} {id}", Escape::Header, "{literal} 42"),
            ("/users/{steps.user.id}", Escape::Path, "/users/7"),
        ];
        for (text, escape, want) in cases {
            assert_eq!(render(text, escape), want, "{text}");
        }
    }

    #[test]
    fn literal_templates_are_known_as_such() {
        let t = Template::compile("plain {{x}}", scope(PARAMS, PARAMS)).unwrap();
        assert_eq!(t.as_literal(), Some(&b"plain {x}"[..]));
        let t = Template::compile("{method}", scope(PARAMS, PARAMS)).unwrap();
        assert_eq!(t.as_literal(), None);
        assert_eq!(t.facts().collect::<Vec<_>>(), [&Fact::Method]);
    }

    #[test]
    fn bad_templates_say_where_and_why() {
        let params = ["id".to_owned()];
        let cases = [
            (
                "/a/{nope}",
                3,
                "unknown placeholder {nope}: use a path parameter (id)",
            ),
            (
                "/a/{param.x}",
                3,
                "the route's path has no parameter \"x\" (it has: id)",
            ),
            ("/a/{id", 3, "'{' is never closed"),
            ("x}", 1, "unmatched '}'"),
            ("{header.}", 0, "{header.} needs a name after the dot"),
            ("{header.a b}", 0, "{header.a b} needs a name after the dot"),
            ("{steps.user.id}", 0, "unknown placeholder {steps.user.id}"),
        ];
        for (text, offset, start) in cases {
            let err = Template::compile(text, scope(&params, PARAMS)).unwrap_err();
            assert_eq!(err.offset, offset, "{text}");
            assert!(err.message.starts_with(start), "{text}: {}", err.message);
        }
        let steps = ["user".to_owned()];
        let err = Template::compile("{steps.order.id}", scope(&params, &steps)).unwrap_err();
        assert_eq!(
            err.message,
            "no earlier step \"order\" (earlier steps: user)"
        );
    }
}
