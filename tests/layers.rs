//! The crate's layers point one way (docs/architecture.md, "Layers"): this test reads every
//! file under `src/`, collects the `crate::X` paths its code names (plain paths and grouped
//! `use crate::{a, b::{c, d}}` forms), and builds the graph of top-level modules.
//!
//! Checked: the HTTP/1 codec imports nothing from the crate, none of the edges in
//! [`FORBIDDEN`] appears, and the whole graph has no cycle (its cycle finder is tested here
//! on small graphs).
//!
//! Only code counts: comments (doc links included) and string or character literals are
//! blanked before the scan, so prose that names a module is not a dependency. `lib.rs` and
//! `main.rs` are left out: they know every module by design. Test code is left out too: an
//! item under `#[cfg(test)]` (a `mod tests { … }`, a test-only `use` or helper) and every
//! file of a `#[cfg(test)] mod name;` (e.g. `tests.rs`). Unit tests may drive the whole
//! assembly (`config::load_str`) to test one section; the layers bind what ships.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Edges that must never appear: (from, the modules it must not name). Each line is a
/// layering rule.
const FORBIDDEN: &[(&str, &str)] = &[
    // The error type sits at the bottom, beside the codec.
    (
        "error",
        "access admin auth config control cors observe proxy ratelimit runtime settings upstream",
    ),
    // The config toolkit checks values; it knows no section.
    (
        "settings",
        "access admin auth config control cors observe proxy ratelimit runtime upstream",
    ),
    // The upstream client serves the proxy and the capabilities, never the other way, and
    // reads the snapshot only through its own `Snapshot` view.
    (
        "upstream",
        "access admin auth config control cors observe proxy ratelimit runtime",
    ),
    // A capability never imports a sibling, the assembly, the proxy, or the process.
    (
        "access",
        "admin auth config control cors observe proxy ratelimit runtime",
    ),
    (
        "auth",
        "access admin config control cors observe proxy ratelimit runtime",
    ),
    (
        "cors",
        "access admin auth config control observe proxy ratelimit runtime",
    ),
    (
        "ratelimit",
        "access admin auth config control cors observe proxy runtime",
    ),
    // The PROXY protocol codec and its settings sit under the listeners and the upstream
    // client that use them.
    (
        "proxy_protocol",
        "admin auth config control cors observe proxy ratelimit runtime tls upstream",
    ),
    // Observability records what the request path did; it does not drive it.
    (
        "observe",
        "access admin auth config control cors proxy runtime upstream",
    ),
    // The HTTP/2 codec helpers sit beside the HTTP/1.1 codec and import only it and `io`.
    (
        "http2",
        "access admin auth config control cors error observe proxy proxy_protocol ratelimit runtime settings tls upstream",
    ),
    // The connection loop is driven by the runtime, not the reverse.
    ("proxy", "admin control runtime"),
    // The config describes; it runs nothing.
    ("config", "admin control proxy runtime"),
];

/// Top-level module → the modules it names → where it first names each (file, line).
type Graph = BTreeMap<String, BTreeMap<String, (PathBuf, usize)>>;

#[test]
fn the_codec_imports_nothing_from_the_crate() {
    let graph = crate_graph();
    let imports = graph.get("http1").cloned().unwrap_or_default();
    assert!(
        imports.is_empty(),
        "src/http1 must not import other crate modules:\n{}",
        describe(&imports)
    );
}

#[test]
fn no_forbidden_edge() {
    let graph = crate_graph();
    let modules = top_level_modules(&src_dir());
    let mut found = String::new();
    for (from, targets) in FORBIDDEN {
        // A rule about a module that no longer exists protects nothing: rename it.
        for name in std::iter::once(*from).chain(targets.split_whitespace()) {
            assert!(modules.contains(name), "FORBIDDEN names no module {name:?}");
        }
        for to in targets.split_whitespace() {
            if let Some((file, line)) = graph.get(*from).and_then(|m| m.get(to)) {
                let _ = writeln!(found, "{from} -> {to} ({}:{line})", file.display());
            }
        }
    }
    assert!(found.is_empty(), "forbidden imports:\n{found}");
}

/// The scan must see the crate as it is: edges that exist are found, and every `crate::X`
/// names a module (a crate-root item would hide the module that really owns it).
#[test]
fn the_scan_sees_the_crate() {
    let graph = crate_graph();
    for (from, to) in [
        ("proxy", "http1"),
        ("proxy", "error"),
        ("config", "settings"),
    ] {
        assert!(
            graph.get(from).is_some_and(|m| m.contains_key(to)),
            "expected the edge {from} -> {to}; is the scan broken?"
        );
    }
    let modules = top_level_modules(&src_dir());
    let unknown: Vec<String> = graph
        .values()
        .flat_map(|m| m.iter())
        .filter(|(to, _)| !modules.contains(to.as_str()))
        .map(|(to, (file, line))| format!("crate::{to} at {}:{line}", file.display()))
        .collect();
    assert!(
        unknown.is_empty(),
        "crate paths that name no module: {unknown:?}"
    );
}

#[test]
fn the_crate_graph_has_no_cycle() {
    let graph = crate_graph();
    let cycles = cycles(&graph);
    let mut report = String::new();
    for cycle in &cycles {
        let _ = writeln!(report, "cycle among {}:", cycle.join(", "));
        for from in cycle {
            for (to, (file, line)) in &graph[from] {
                if cycle.contains(to) {
                    let _ = writeln!(report, "  {from} -> {to} ({}:{line})", file.display());
                }
            }
        }
    }
    assert!(cycles.is_empty(), "{report}");
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `src/X.rs` and `src/X/` give the module `X`; `lib.rs` and `main.rs` are the crate roots.
fn top_level_modules(src: &Path) -> BTreeSet<String> {
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(src).expect("src/ is readable") {
        let path = entry.expect("src/ entry").path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let is_module = path.is_dir() || path.extension().is_some_and(|e| e == "rs");
        if is_module && name != "lib" && name != "main" {
            modules.insert(name.to_owned());
        }
    }
    modules
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("source dir is readable") {
        let path = entry.expect("source dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn crate_graph() -> Graph {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut code: BTreeMap<PathBuf, String> = files
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(file).expect("source file is readable");
            (file.clone(), code_only(&text))
        })
        .collect();
    let test_files = test_only_files(&code);
    let mut graph = Graph::new();
    for (file, code) in &mut code {
        let relative = file.strip_prefix(&src).expect("under src/");
        let Some(first) = relative.components().next() else {
            continue;
        };
        let first = first.as_os_str().to_string_lossy();
        let from = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
        if from == "lib" || from == "main" || test_files.iter().any(|t| file.starts_with(t)) {
            continue;
        }
        let shown = Path::new("src").join(relative);
        let imports = graph.entry(from.clone()).or_default();
        for (to, line) in crate_paths(&without_test_items(code)) {
            if to != from {
                imports.entry(to).or_insert_with(|| (shown.clone(), line));
            }
        }
    }
    graph
}

/// The files (and directories) of modules declared `#[cfg(test)] mod name;`.
fn test_only_files(code: &BTreeMap<PathBuf, String>) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for (file, code) in code {
        // `lib.rs`, `main.rs` and `mod.rs` own the directory they sit in; `a/b.rs` owns `a/b/`.
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let dir = match stem {
            "lib" | "main" | "mod" => file.parent().map(Path::to_path_buf),
            _ => file.parent().map(|p| p.join(stem)),
        };
        let Some(dir) = dir else { continue };
        let mut rest = code.as_str();
        while let Some(at) = rest.find("#[cfg(test)]") {
            rest = &rest[at + "#[cfg(test)]".len()..];
            let item = rest.trim_start();
            let Some(decl) = item
                .strip_prefix("mod ")
                .or_else(|| item.strip_prefix("pub mod "))
            else {
                continue;
            };
            let name: String = decl
                .bytes()
                .take_while(|&b| is_ident(b))
                .map(char::from)
                .collect();
            if decl[name.len()..].trim_start().starts_with(';') {
                found.push(dir.join(format!("{name}.rs")));
                found.push(dir.join(&name));
            }
        }
    }
    found
}

/// `code` with every item under `#[cfg(test)]` blanked: up to its `;`, or through the
/// braces of its body when a `{` comes first.
fn without_test_items(code: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out = code.as_bytes().to_vec();
    let mut from = 0;
    while let Some(at) = code[from..].find(MARK).map(|i| i + from) {
        let mut end = at + MARK.len();
        let mut depth = 0usize;
        while let Some(&b) = out.get(end) {
            end += 1;
            match b {
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        break;
                    }
                }
                b';' if depth == 0 => break,
                _ => {}
            }
        }
        for b in &mut out[at..end] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
        from = end;
    }
    String::from_utf8(out).expect("blanking keeps UTF-8")
}

fn describe(imports: &BTreeMap<String, (PathBuf, usize)>) -> String {
    imports
        .iter()
        .map(|(to, (file, line))| format!("  crate::{to} ({}:{line})\n", file.display()))
        .collect()
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `src` with comments and the contents of string and character literals replaced by
/// spaces (newlines kept, so line numbers stay right).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, range: std::ops::Range<usize>| {
        for byte in &mut out[range] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        let prev_is_ident = i > 0 && is_ident(b[i - 1]);
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = memchr(b'\n', &b[i..]).map_or(b.len(), |n| i + n);
                blank(&mut out, i..end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                // Block comments nest in Rust.
                let (mut depth, mut j) = (1, i + 2);
                while j < b.len() && depth > 0 {
                    if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                        depth += 1;
                        j += 2;
                    } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                        depth -= 1;
                        j += 2;
                    } else {
                        j += 1;
                    }
                }
                blank(&mut out, i..j);
                i = j;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                blank(&mut out, i + 1..j.min(b.len()));
                i = j + 1;
            }
            // A raw string, r"…" or r#"…"# (also after `b`).
            b'r' if !prev_is_ident
                || (i > 0 && b[i - 1] == b'b' && (i < 2 || !is_ident(b[i - 2]))) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let start = i + 2 + hashes;
                let mut closing = vec![b'"'];
                closing.extend(std::iter::repeat_n(b'#', hashes));
                let end = b[start..]
                    .windows(closing.len())
                    .position(|w| w == closing.as_slice())
                    .map_or(b.len(), |n| start + n);
                blank(&mut out, start..end);
                i = end + closing.len();
            }
            b'\'' => {
                // A character literal ('x', '\n', '\u{..}', 'é'), or else a lifetime.
                if b.get(i + 1) == Some(&b'\\') {
                    let end =
                        memchr(b'\'', &b[(i + 3).min(b.len())..]).map_or(b.len(), |n| i + 3 + n);
                    blank(&mut out, i + 1..end);
                    i = end + 1;
                } else if let Some(c) = src.get(i + 1..).and_then(|s| s.chars().next()) {
                    let end = i + 1 + c.len_utf8();
                    if b.get(end) == Some(&b'\'') {
                        blank(&mut out, i + 1..end);
                        i = end + 1;
                    } else {
                        i += 1;
                    }
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8(out).expect("only ASCII bytes were replaced, whole characters at a time")
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

/// The top-level modules named by `crate::` paths in `code` (comments already blanked),
/// with the 1-based line of each occurrence.
fn crate_paths(code: &str) -> Vec<(String, usize)> {
    let b = code.as_bytes();
    let line_of = |at: usize| 1 + b[..at].iter().filter(|&&c| c == b'\n').count();
    let skip_space = |mut at: usize| {
        while at < b.len() && b[at].is_ascii_whitespace() {
            at += 1;
        }
        at
    };
    let ident_at = |at: usize| {
        let end = at + b[at..].iter().take_while(|&&c| is_ident(c)).count();
        &code[at..end]
    };
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(n) = code[from..].find("crate") {
        let at = from + n;
        from = at + "crate".len();
        if (at > 0 && is_ident(b[at - 1])) || b.get(from).is_some_and(|&c| is_ident(c)) {
            continue;
        }
        let mut i = skip_space(from);
        if !code[i..].starts_with("::") {
            continue; // `pub(crate)`, `crate` as a visibility
        }
        i = skip_space(i + 2);
        if b.get(i) == Some(&b'{') {
            // `crate::{a, b::{c, d}, self}`: the first name of each item at depth 1.
            let (mut depth, mut item_start) = (1, true);
            i += 1;
            while i < b.len() && depth > 0 {
                match b[i] {
                    b'{' => depth += 1,
                    b'}' => depth -= 1,
                    b',' if depth == 1 => item_start = true,
                    c if depth == 1 && item_start && is_ident(c) => {
                        let name = ident_at(i);
                        if name != "self" {
                            found.push((name.to_owned(), line_of(i)));
                        }
                        item_start = false;
                        i += name.len();
                        continue;
                    }
                    c if !c.is_ascii_whitespace() => item_start = false,
                    _ => {}
                }
                i += 1;
            }
        } else {
            let name = ident_at(i);
            if !name.is_empty() {
                found.push((name.to_owned(), line_of(i)));
            }
        }
    }
    found
}

/// The cycles of `graph`: its strongly connected components of more than one module, each
/// sorted, found with Tarjan's algorithm. Edges from a module to itself never occur (the
/// scan drops them) and are not cycles here.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            let graph = self.graph;
            for w in graph.get(v).into_iter().flat_map(|m| m.keys()) {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !tarjan.index.contains_key(v.as_str()) {
            tarjan.visit(v);
        }
    }
    tarjan.found.sort();
    tarjan.found
}

fn graph_of(edges: &[(&str, &str)]) -> Graph {
    let mut graph = Graph::new();
    for (from, to) in edges {
        graph
            .entry(from.to_string())
            .or_default()
            .insert(to.to_string(), (PathBuf::new(), 0));
    }
    graph
}

/// Edges, and the cycles expected among them.
type CycleCase<'a> = (&'a [(&'a str, &'a str)], &'a [&'a [&'a str]]);

#[test]
fn cycle_finder_on_small_graphs() {
    let cases: &[CycleCase] = &[
        (&[], &[]),
        (&[("a", "b"), ("b", "c"), ("a", "c")], &[]),
        (&[("a", "b"), ("b", "a")], &[&["a", "b"]]),
        // A cycle reached through a tail, with a target that has no edges of its own.
        (
            &[("t", "a"), ("a", "b"), ("b", "c"), ("c", "a"), ("c", "z")],
            &[&["a", "b", "c"]],
        ),
        // Two separate cycles joined by a one-way edge stay two.
        (
            &[("a", "b"), ("b", "a"), ("b", "x"), ("x", "y"), ("y", "x")],
            &[&["a", "b"], &["x", "y"]],
        ),
        // Two cycles sharing a module are one component.
        (
            &[("a", "b"), ("b", "a"), ("b", "c"), ("c", "b")],
            &[&["a", "b", "c"]],
        ),
        // The edge that closes the loop is found from whichever module the walk starts.
        (
            &[("z", "y"), ("y", "x"), ("x", "w"), ("w", "z")],
            &[&["w", "x", "y", "z"]],
        ),
    ];
    for (edges, want) in cases {
        let got = cycles(&graph_of(edges));
        let want: Vec<Vec<String>> = want
            .iter()
            .map(|c| c.iter().map(|s| s.to_string()).collect())
            .collect();
        assert_eq!(got, want, "{edges:?}");
    }
}

#[test]
fn crate_paths_in_every_form() {
    let code = "use crate::config::Limits;\n\
                use crate::{error::ProxyError, http1::{self, encode::AddedLines}, observe};\n\
                use crate :: router;\n\
                pub(crate) fn f() -> crate::upstream::Pool { $crate::cors::x(); }\n\
                use crate::{\n    self,\n    access::Cidr,\n};\n\
                let not_crate = mycrate::a + crate_name::b;\n";
    let got = crate_paths(code);
    let want = [
        ("config", 1),
        ("error", 2),
        ("http1", 2),
        ("observe", 2),
        ("router", 3),
        ("upstream", 4),
        ("cors", 4),
        ("access", 7),
    ];
    let want: Vec<(String, usize)> = want.iter().map(|(m, l)| (m.to_string(), *l)).collect();
    assert_eq!(got, want);
}

#[test]
fn comments_and_literals_are_not_code() {
    let src = "// crate::a\n\
               /// [`crate::b`]\n\
               /* crate::c /* nested crate::d */ still crate::e */ crate::real1;\n\
               let s = \"crate::f \\\" crate::g\"; let r = r#\"crate::h \"# ;\n\
               let c = '\"'; let q = '\\''; let l: &'static str = crate::real2::X;\n\
               let u = 'é'; let url = \"http://x\"; crate::real3::y();\n";
    let names: Vec<String> = crate_paths(&code_only(src))
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    assert_eq!(names, ["real1", "real2", "real3"]);
    assert_eq!(code_only(src).lines().count(), src.lines().count());
}
