use super::*;
use crate::transform::template::{Fact, FactValue};

/// A request whose consumer is `ada`.
struct Sample;

impl Facts for Sample {
    fn value(&self, fact: &Fact) -> Option<FactValue<'_>> {
        match fact {
            Fact::Consumer => Some(FactValue::Borrowed(b"ada \"the\" first")),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct Wrapper {
    body: Spanned<FileBody>,
}

/// Compiles `body = { ... }` as written, or the error messages.
fn compile(text: &str) -> Result<BodyEdit, Vec<String>> {
    let source = format!("body = {text}\n");
    let file: Wrapper = toml::from_str(&source).map_err(|e| vec![e.to_string()])?;
    let mut ctx = Ctx::new(&source, "test.toml");
    let scope = Scope {
        params: &[],
        steps: &[],
    };
    let edit = build(&mut ctx, &file.body, "t.body", scope);
    let errors: Vec<String> = ctx.into_errors().iter().map(|e| e.to_string()).collect();
    edit.ok_or(errors)
}

fn apply(edit: &str, body: &str) -> Result<String, InvalidJson> {
    let edit = compile(edit).unwrap();
    let mut out = Vec::new();
    edit.apply(body.as_bytes(), &Sample, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

#[test]
fn edits_apply_in_order_and_keep_member_order() {
    let cases = [
        (
            r#"{ set = { "/transformed" = true } }"#,
            r#"{"z":1,"a":2}"#,
            r#"{"z":1,"a":2,"transformed":true}"#,
        ),
        (
            r#"{ set = { "/meta/by" = "{consumer}", "/n" = 1.5 } }"#,
            r#"{"x":[1,2]}"#,
            r#"{"x":[1,2],"meta":{"by":"ada \"the\" first"},"n":1.5}"#,
        ),
        (
            r#"{ remove = ["/password", "/missing", "/a/0"] }"#,
            r#"{"user":"u","password":"p","a":[9,8]}"#,
            r#"{"user":"u","a":[8]}"#,
        ),
        (
            r#"{ rename = { "/user_name" = "/username", "/gone" = "/x" } }"#,
            r#"{"user_name":"u","id":1}"#,
            r#"{"id":1,"username":"u"}"#,
        ),
        (
            r#"{ unwrap = "data", wrap = "result", set = { "/ok" = true } }"#,
            r#"{"data":{"v":1}}"#,
            r#"{"result":{"v":1,"ok":true}}"#,
        ),
        (r#"{ unwrap = "data" }"#, r#"{"other":1}"#, r#"{"other":1}"#),
        (
            r#"{ wrap = "data" }"#,
            r#"[1,"two"]"#,
            r#"{"data":[1,"two"]}"#,
        ),
        (
            r#"{ set = { "/a~1b" = "{{literal}}", "/t/list/-" = 3, "/s/x" = 1 } }"#,
            r#"{"t":{"list":[1]},"s":"scalar"}"#,
            r#"{"t":{"list":[1,3]},"s":"scalar","a/b":"{literal}"}"#,
        ),
        (
            r#"{ set = { "/obj" = { k = [1, "v"] } } }"#,
            r#"{}"#,
            r#"{"obj":{"k":[1,"v"]}}"#,
        ),
        (r#"{ remove = ["/0"] }"#, r#"["a","b"]"#, r#"["b"]"#),
    ];
    for (edit, body, want) in cases {
        assert_eq!(apply(edit, body).unwrap(), want, "{edit} on {body}");
    }
}

#[test]
fn invalid_json_is_reported() {
    for body in ["", "{", "{\"a\":}", "nope", "{\"a\":1} x"] {
        assert!(apply(r#"{ wrap = "d" }"#, body).is_err(), "{body:?}");
    }
}

#[test]
fn bad_config_names_key_and_position() {
    let cases = [
        (
            r#"{ remove = ["password"] }"#,
            "t.body.remove[0]",
            "at character 1: a JSON Pointer starts with '/'",
        ),
        (
            r#"{ rename = { "/a~2" = "/b" } }"#,
            "t.body.rename./a~2",
            "at character 3: '~' must be followed by 0 or 1",
        ),
        (r#"{ set = { "" = 1 } }"#, "t.body.set.", "the whole body"),
        (
            r#"{ set = { "/a" = "{nope}" } }"#,
            "t.body.set./a",
            "unknown placeholder {nope}",
        ),
        (
            r#"{ set = { "/a" = nan } }"#,
            "t.body.set./a",
            "has no JSON form",
        ),
        (
            r#"{ wrap = "d", oversize = "drop" }"#,
            "t.body.oversize",
            "use \"pass\" or \"refuse\"",
        ),
        (
            r#"{ wrap = "d", max_bytes = "0" }"#,
            "t.body.max_bytes",
            "must be greater than zero",
        ),
        (r#"{ wrap = "" }"#, "t.body.wrap", "needs a field name"),
        (r#"{ max_bytes = "1KiB" }"#, "t.body", "edits nothing"),
    ];
    for (edit, key, why) in cases {
        let errors = compile(edit).unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.contains("test.toml:1:") && e.contains(key) && e.contains(why)),
            "{edit}: {errors:?}"
        );
    }
}

#[test]
fn bounds_default_and_parse() {
    let edit = compile(r#"{ wrap = "d" }"#).unwrap();
    assert_eq!(
        (edit.max_bytes, edit.oversize),
        (DEFAULT_MAX_BYTES, Oversize::Pass)
    );
    let edit = compile(r#"{ wrap = "d", max_bytes = "2KiB", oversize = "refuse" }"#).unwrap();
    assert_eq!((edit.max_bytes, edit.oversize), (2048, Oversize::Refuse));
}

#[test]
fn array_indexes_follow_rfc_6901() {
    assert_eq!(index("0", 1), Some(0));
    assert_eq!(index("01", 5), None);
    assert_eq!(index("2", 2), None);
    assert_eq!(index("-", 2), None);
    assert_eq!(index("", 2), None);
}

#[test]
fn untouched_values_keep_their_text() {
    let cases = [
        // Values the edit does not reach go as they came: spacing, number forms, escapes.
        (
            r#"{ set = { "/t" = 1 } }"#,
            "{ \"a\" : [ 1.50, 1e3 ] ,\n  \"b\": \"\\u00e9\\n\" }",
            r#"{"a":[ 1.50, 1e3 ],"b":"\u00e9\n","t":1}"#,
        ),
        // A member name with escapes is matched unescaped and written escaped.
        (
            r#"{ rename = { "/a\"b" = "/c" } }"#,
            r#"{"a\"b":1,"\u0064":2}"#,
            r#"{"d":2,"c":1}"#,
        ),
        // Duplicate names are kept; a pointer names the first.
        (
            r#"{ set = { "/k" = 0 } }"#,
            r#"{"k":1,"k":2}"#,
            r#"{"k":0,"k":2}"#,
        ),
        // A pointer goes into a value the edit set itself.
        (
            r#"{ set = { "/obj" = { a = 1 }, "/obj/b" = 2 } }"#,
            r#"{}"#,
            r#"{"obj":{"a":1,"b":2}}"#,
        ),
        // A scalar body can still be wrapped.
        (r#"{ wrap = "v" }"#, " 42 ", r#"{"v":42}"#),
        // Deep levels open only along the pointer.
        (
            r#"{ remove = ["/a/b/1/c"] }"#,
            r#"{"a":{"b":[{"c":1},{"c":2,"d":[ 3 ]}]},"z":{ }}"#,
            r#"{"a":{"b":[{"c":1},{"d":[ 3 ]}]},"z":{ }}"#,
        ),
    ];
    for (edit, body, want) in cases {
        assert_eq!(apply(edit, body).unwrap(), want, "{edit} on {body}");
    }
}

#[test]
fn invalid_bodies_are_refused_wherever_the_fault_is() {
    // What the JSON grammar allows passes (a lone surrogate escape, a number past f64):
    // only syntax is checked, and untouched values go on as they came.
    assert!(apply(r#"{ set = { "/b" = 1 } }"#, r#"{"a":"\ud800","n":1e400}"#).is_ok());
    assert_eq!(
        apply(r#"{ wrap = "v" }"#, "9e911").unwrap(),
        r#"{"v":9e911}"#
    );
    // Skipping nests in a loop, not by recursion: deep untouched values are no danger.
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    assert!(apply(r#"{ wrap = "d" }"#, &deep).is_ok());
    let unclosed = "[".repeat(100_000);
    let bodies = [
        r#"{"a":1,"untouched":[1,2,}"#,
        r#"{"a":01}"#,
        r#"{"a":tru}"#,
        unclosed.as_str(),
    ];
    for body in bodies {
        assert!(
            apply(r#"{ set = { "/b" = 1 } }"#, body).is_err(),
            "{body:?}"
        );
    }
    let edit = compile(r#"{ wrap = "d" }"#).unwrap();
    let mut out = Vec::new();
    assert!(edit.apply(b"{\"a\":\"\xff\"}", &Sample, &mut out).is_err());
}
