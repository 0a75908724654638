//! Invariant: any config text either compiles as a template or is refused with an offset
//! inside the text; rendered over any request values, a header value holds no control
//! byte but tab (it cannot add a header line), and a path or query value holds no byte that
//! could end or restructure the target (`?`, `#`, space, controls, non-ASCII; and `&`,
//! `=`, `+` in a query). The first byte splits the input into template and value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strait::transform::template::{Escape, Fact, FactValue, Facts, Scope, Template};

/// Every fact has the same value: the fuzzer's.
struct Same<'a>(&'a [u8]);

impl Facts for Same<'_> {
    fn value(&self, _: &Fact) -> Option<FactValue<'_>> {
        Some(FactValue::Borrowed(self.0))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(rest.len());
    let (text, value) = rest.split_at(at);
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let params = ["id".to_owned(), "rest".to_owned()];
    let steps = ["user".to_owned()];
    let scope = Scope {
        params: &params,
        steps: &steps,
    };
    let template = match Template::compile(text, scope) {
        Ok(template) => template,
        Err(err) => {
            assert!(err.offset < text.len(), "{err:?}");
            return;
        }
    };
    // Only what the placeholders render is checked: the literal text is the config's.
    let mut literal = Vec::new();
    template.render(&Same(b""), Escape::None, &mut literal);
    for escape in [Escape::Header, Escape::Path, Escape::Query] {
        let mut out = Vec::new();
        template.render(&Same(value), escape, &mut out);
        let rendered: Vec<u8> = out
            .iter()
            .copied()
            .filter(|b| !literal.contains(b))
            .collect();
        let bad = |b: u8| match escape {
            Escape::Header => b < 0x20 && b != b'\t' || b == 0x7f,
            Escape::Path => b <= b' ' || b >= 0x7f || b == b'?' || b == b'#',
            Escape::Query => {
                b <= b' ' || b >= 0x7f || matches!(b, b'?' | b'#' | b'&' | b'=' | b'+')
            }
            Escape::None => false,
        };
        assert!(!rendered.iter().any(|&b| bad(b)), "{escape:?}: {out:?}");
    }
});
