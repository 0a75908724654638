//! Invariant: a JSON body edit never panics on any body (deep nesting, huge numbers,
//! invalid UTF-8 included); it accepts every body serde_json parses into a value, refuses
//! every body outside the JSON grammar (UTF-8 text serde_json can skip), and what it
//! produces is JSON again. (A member name whose escapes do not decode, a lone surrogate,
//! is in the grammar and may be refused: the edit decodes names.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use strait::settings::Ctx;
use strait::transform::json::{build, BodyEdit, FileBody};
use strait::transform::template::{Fact, FactValue, Facts, Scope};
use toml::Spanned;

/// An edit that does a bit of everything, with a templated value.
const EDIT: &str = r#"body = { unwrap = "data", remove = ["/a/0", "/b"], rename = { "/c" = "/d/e", "/x~1y" = "/-" }, set = { "/t" = true, "/list/-" = [1, { k = "v" }], "/by" = "{header.x-user} \"q\"" }, wrap = "w" }"#;

#[derive(Deserialize)]
struct Wrapper {
    body: Spanned<FileBody>,
}

/// Every fact renders as a value with bytes JSON must escape.
struct AnyFacts;

impl Facts for AnyFacts {
    fn value(&self, _: &Fact) -> Option<FactValue<'_>> {
        Some(FactValue::Borrowed(b"\x00\xff\"\\\n"))
    }
}

fn edit() -> BodyEdit {
    let wrapper: Wrapper = toml::from_str(EDIT).expect("the edit parses");
    let mut ctx = Ctx::new(EDIT, "fuzz.toml");
    let scope = Scope {
        params: &[],
        steps: &[],
    };
    build(&mut ctx, &wrapper.body, "body", scope).expect("the edit compiles")
}

/// UTF-8 text in the JSON grammar (serde_json's skip: numbers past f64 and lone surrogate
/// escapes included, as the grammar allows).
fn is_json(data: &[u8]) -> bool {
    std::str::from_utf8(data).is_ok()
        && serde_json::from_slice::<serde::de::IgnoredAny>(data).is_ok()
}

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static EDIT: BodyEdit = edit();
    }
    let mut out = Vec::new();
    let result = EDIT.with(|edit| edit.apply(data, &AnyFacts, &mut out));
    if result.is_ok() {
        assert!(is_json(data), "only JSON is accepted");
    }
    if serde_json::from_slice::<serde_json::Value>(data).is_ok() {
        assert!(result.is_ok(), "a body serde_json parses is edited");
    }
    if result.is_ok() {
        assert!(is_json(&out), "the edited body is JSON");
    }
});
