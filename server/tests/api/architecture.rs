//! The layering of `server/src`, checked on the source text (docs/architecture.md explains it):
//! - only the server shell (`api/`, `app.rs`, `main.rs`, `commands.rs`) sees `AppState`,
//!   `crate::app` or `crate::api`;
//! - the generic layers (`pipeline`, `policy`, `store`, `audit`, `keys`, `auth`, `approvals`,
//!   and `wallets`, which derives accounts for any chain) name no chain: chains reach them only
//!   through the registry in `chains`;
//! - the top-level modules form no import circle.
//!
//! Comments and `#[cfg(test)]` modules are not looked at: tests may name anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SHELL: &[&str] = &["api", "app", "main", "commands"];
const GENERIC: &[&str] = &[
    "pipeline",
    "policy",
    "store",
    "audit",
    "keys",
    "auth",
    "approvals",
    "wallets",
];
/// The names of the registered chains.
fn chain_names() -> Vec<&'static str> {
    keyward_server::chains::ALL
        .iter()
        .map(|c| c.name())
        .collect()
}

/// A source file: its top-level module and its code without comments and test modules.
struct Source {
    path: PathBuf,
    module: String,
    code: String,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn sources() -> Vec<Source> {
    let root = src_dir();
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(&root).unwrap();
                let first = rel.components().next().unwrap().as_os_str();
                let module = first.to_string_lossy().trim_end_matches(".rs").to_string();
                // Files named `tests.rs` are test modules of their parent.
                if path.file_name().is_some_and(|n| n == "tests.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                out.push(Source {
                    code: code_of(&text),
                    path: rel.to_path_buf(),
                    module,
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The text without `//` comments and without everything from the first `#[cfg(test)]` on
/// (test modules sit at the end of a file by convention).
fn code_of(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let code = match line.find("//") {
            // `//` inside a string such as "https://..." is not a comment.
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// The top-level modules a piece of code names through `crate::`, including grouped imports
/// (`use crate::{a::X, b::{Y, Z}}`).
fn crate_references(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `keyward_crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            let mut items = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => items.push(std::mem::take(&mut item)),
                    _ if depth == 1 => item.push(c),
                    _ => {}
                }
            }
            items.push(item);
            for item in items {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn words(code: &str) -> impl Iterator<Item = &str> {
    code.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
}

#[test]
fn only_the_server_shell_sees_the_server_state() {
    let mut found = Vec::new();
    for s in sources() {
        if SHELL.contains(&s.module.as_str()) {
            continue;
        }
        let refs = crate_references(&s.code);
        for bad in ["app", "api"] {
            if refs.contains(bad) {
                found.push(format!("{} names crate::{bad}", s.path.display()));
            }
        }
        if words(&s.code).any(|w| w == "AppState") {
            found.push(format!("{} names AppState", s.path.display()));
        }
    }
    assert!(
        found.is_empty(),
        "outside the server shell:\n{}",
        found.join("\n")
    );
}

#[test]
fn generic_layers_name_no_chain() {
    let chains = chain_names();
    assert!(chains.len() >= 3, "{chains:?}");
    let mut found: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for s in sources() {
        if !GENERIC.contains(&s.module.as_str()) {
            continue;
        }
        let mut named = BTreeSet::new();
        for w in words(&s.code) {
            let lower = w.to_ascii_lowercase();
            for chain in &chains {
                if lower.contains(chain) {
                    named.insert(*chain);
                }
            }
        }
        if !named.is_empty() {
            found.insert(s.path.display().to_string(), named.into_iter().collect());
        }
    }
    assert!(found.is_empty(), "chains named in generic code: {found:?}");
}

#[test]
fn top_level_modules_form_no_import_circle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let all: BTreeSet<String> = sources().iter().map(|s| s.module.clone()).collect();
    for s in sources() {
        let deps = graph.entry(s.module.clone()).or_default();
        for r in crate_references(&s.code) {
            if r != s.module && all.contains(&r) {
                deps.insert(r);
            }
        }
    }
    let circles = circles(&graph);
    assert!(
        circles.is_empty(),
        "import circles between top-level modules:\n{}",
        circles.join("\n")
    );
}

/// One circle per strongly connected component of more than one module, as `a -> b -> a`.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    // Modules that reach each other are in one component; a path from `a` back to `a` is shown.
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_string()];
        while let Some(m) = stack.pop() {
            for d in graph.get(&m).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        seen
    };
    let mut reported = BTreeSet::new();
    let mut out = Vec::new();
    for m in graph.keys() {
        if reported.contains(m) || !reach(m).contains(m) {
            continue;
        }
        let component: BTreeSet<String> = graph
            .keys()
            .filter(|o| reach(m).contains(*o) && reach(o).contains(m))
            .cloned()
            .collect();
        out.push(format!(
            "{} (e.g. {})",
            component.iter().cloned().collect::<Vec<_>>().join(", "),
            path_back(graph, m).join(" -> ")
        ));
        reported.extend(component);
    }
    out
}

/// A shortest path from `m` back to itself.
fn path_back(graph: &BTreeMap<String, BTreeSet<String>>, m: &str) -> Vec<String> {
    let mut previous: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([m.to_string()]);
    while let Some(n) = queue.pop_front() {
        for d in graph.get(&n).into_iter().flatten() {
            if d == m {
                let mut path = vec![m.to_string()];
                let mut at = n.clone();
                while at != m {
                    path.push(at.clone());
                    at = previous[&at].clone();
                }
                path.push(m.to_string());
                path.reverse();
                return path;
            }
            if !previous.contains_key(d) {
                previous.insert(d.clone(), n.clone());
                queue.push_back(d.clone());
            }
        }
    }
    Vec::new()
}

#[test]
fn the_checks_see_what_they_look_for() {
    // The parser finds grouped and nested imports, and ignores comments and test modules.
    let code = code_of(
        "use crate::{audit::X, store::{A, B}};\n// crate::api\nfn f() { crate::keys::y() }\n\
         #[cfg(test)]\nmod tests { use crate::app::AppState; }\n",
    );
    let refs = crate_references(&code);
    assert_eq!(
        refs,
        ["audit", "keys", "store"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(circles(&graph), vec!["a, b, c (e.g. a -> b -> c -> a)"]);
}
