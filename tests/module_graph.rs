//! Modules import forward only: if module A uses module B, B never reaches
//! A, directly or through others. Reads `src/` as a reviewer would, at the
//! level of the crate's top-level modules (`src/foo.rs` or `src/foo/`),
//! from every `crate::…` and `super::…` path outside `#[cfg(test)]`
//! blocks and comments, and fails on a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file below `src/`: `jwks/store.rs` is
/// `["jwks", "store"]`, `jwks/mod.rs` is `["jwks"]`, `lib.rs` is `[]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts
}

/// The text that counts: without line comments and without the
/// `#[cfg(test)] mod tests` block at the end of a file.
fn code(text: &str) -> String {
    let text = text
        .find("#[cfg(test)]\nmod tests")
        .map_or(text, |at| &text[..at]);
    text.lines()
        .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a file names, each as its segments: `crate::a::b` and every
/// item of `use crate::{a, b::c}` start with `crate`, `super::x` with
/// `super`.
fn paths(code: &str) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    for root in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(root) {
            let start = from + at;
            from = start + root.len();
            if start > 0 && (ident(bytes[start - 1]) || bytes[start - 1] == b':') {
                continue;
            }
            let mut segments = vec![root.trim_end_matches(':').to_owned()];
            let mut i = from;
            loop {
                if code[i..].starts_with('{') {
                    // A group: each item's first segment continues the path.
                    let end = code[i..].find('}').map_or(code.len(), |e| i + e);
                    for item in code[i + 1..end].split(',') {
                        let first: String = item
                            .trim()
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        if !first.is_empty() {
                            let mut p = segments.clone();
                            p.push(first);
                            out.push(p);
                        }
                    }
                    break;
                }
                let begin = i;
                while i < bytes.len() && ident(bytes[i]) {
                    i += 1;
                }
                if begin < i {
                    segments.push(code[begin..i].to_owned());
                }
                if code[i..].starts_with("::") {
                    i += 2;
                    continue;
                }
                out.push(segments);
                break;
            }
        }
    }
    out
}

/// The top-level module a path from the file at `here` lands in.
fn target(here: &[String], path: &[String]) -> Option<String> {
    let mut at: Vec<String> = here.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            at.clear();
            rest = &rest[1..];
        }
        _ => {
            while rest.first().is_some_and(|s| s == "super") {
                at.pop()?;
                rest = &rest[1..];
            }
        }
    }
    at.extend(rest.iter().cloned());
    at.first().cloned()
}

fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let top: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_path(f.strip_prefix(&src).unwrap()).first().cloned())
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let here = module_path(file.strip_prefix(&src).unwrap());
        let Some(me) = here.first().cloned() else {
            continue; // lib.rs only declares and re-exports
        };
        let text = fs::read_to_string(file).unwrap();
        for path in paths(&code(&text)) {
            if let Some(to) = target(&here, &path)
                && to != me
                && top.contains(&to)
            {
                graph.entry(me.clone()).or_default().insert(to);
            }
        }
    }
    graph
}

/// The modules `from` reaches through the graph.
fn reach(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_owned()];
    while let Some(m) = todo.pop() {
        for next in graph.get(&m).into_iter().flatten() {
            if seen.insert(next.clone()) {
                todo.push(next.clone());
            }
        }
    }
    seen
}

#[test]
fn no_module_reaches_back_to_one_that_uses_it() {
    let graph = module_graph();
    let mut cycles = Vec::new();
    for (from, uses) in &graph {
        for to in uses {
            if reach(&graph, to).contains(from) {
                cycles.push(format!("{from} -> {to} -> … -> {from}"));
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_reader_finds_paths_of_every_form() {
    let code = "use crate::a::B;\nuse crate::{b, c::D};\nfn f() { crate::d::e(); super::f(); }";
    let found: Vec<Vec<String>> = paths(code);
    let heads: BTreeSet<String> = found
        .iter()
        .filter_map(|p| target(&["x".into(), "y".into()], p))
        .collect();
    assert_eq!(
        heads,
        ["a", "b", "c", "d", "x"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    // The crate itself is read, and its core uses its lower modules.
    let graph = module_graph();
    assert!(graph["layer"].contains("auth"), "{graph:?}");
    assert!(graph["jwt"].contains("jwks"), "{graph:?}");
}
