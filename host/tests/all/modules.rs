//! The module tree is the data path: no import circle between the top-level modules of `host/src`. Every
//! `crate::<module>` path in a module's files (tests included) is an edge; the graph must be acyclic, so each
//! stage depends only on earlier stages and on leaves (`otlp`, `telemetry`, `config`, ...).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Top-level module -> the top-level modules its files name.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let module_of = |p: &Path| {
        let first =
            p.strip_prefix(&src).unwrap().components().next().unwrap().as_os_str().to_string_lossy().into_owned();
        first.trim_end_matches(".rs").to_string()
    };
    let modules: BTreeSet<String> =
        files.iter().map(|p| module_of(p)).filter(|m| !["lib", "main", "bin"].contains(&m.as_str())).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for p in &files {
        let from = module_of(p);
        let Some(out) = edges.get_mut(&from) else { continue };
        let text = std::fs::read_to_string(p).unwrap();
        // `crate::x` and every name inside `crate::{x, y::z}`.
        let mut named = Vec::new();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                named.extend(inner.split(',').filter_map(|s| s.trim().split("::").next()).map(str::to_string));
            } else {
                named.push(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
            }
        }
        for m in named {
            if m != from && modules.contains(&m) {
                out.insert(m);
            }
        }
    }
    edges
}

/// A cycle through `node`, if any (depth-first, with the path kept).
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut c = path[at..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for next in &edges[n] {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_import_circle_between_the_modules_of_host_src() {
    let edges = graph();
    assert!(edges.len() > 10, "modules found: {edges:?}");
    assert!(edges["batch"].contains("otlp") && edges["sink"].contains("batch"), "the parser sees edges: {edges:?}");
    if let Some(c) = cycle(&edges) {
        panic!("import circle: {}\nall edges: {edges:#?}", c.join(" -> "));
    }
    // The OTLP form is a leaf below the stages: it names none of them.
    for stage in ["source", "pipeline", "batch", "sink"] {
        assert!(!edges["otlp"].contains(stage), "otlp names {stage}");
    }
}

#[test]
fn the_circle_check_finds_a_circle() {
    let mut edges = graph();
    edges.get_mut("otlp").unwrap().insert("batch".into());
    let c = cycle(&edges).expect("otlp -> batch -> otlp is a circle");
    assert!(c.contains(&"otlp".to_string()) && c.contains(&"batch".to_string()), "{c:?}");
}
