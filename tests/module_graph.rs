//! The files of `src/controller/` import one another without a circle: each reconciler
//! sits above the shared layer and the pure decision modules, never beside them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The sibling modules `source` uses outside its tests and comments.
fn uses(source: &str, siblings: &BTreeSet<String>) -> BTreeSet<String> {
    let code: String = source
        .split("#[cfg(test)]")
        .next()
        .unwrap_or_default()
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join(" ");
    let module = |name: &str| -> String {
        name.trim()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for prefix in ["super::", "crate::controller::"] {
        for (at, _) in code.match_indices(prefix) {
            let rest = &code[at + prefix.len()..];
            // `super::{a, b::c}` names several.
            let names: Vec<String> = match rest.strip_prefix('{') {
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(module)
                    .collect(),
                None => vec![module(rest)],
            };
            found.extend(names.into_iter().filter(|name| siblings.contains(name)));
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/controller");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .expect("src/controller is readable")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .collect();
    let siblings: BTreeSet<String> = files
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .filter(|name| name != "mod")
        .collect();
    files
        .iter()
        .filter_map(|path| {
            let name = path.file_stem()?.to_string_lossy().into_owned();
            (name != "mod").then(|| {
                let source = std::fs::read_to_string(path).expect("a controller file is readable");
                let mut used = uses(&source, &siblings);
                used.remove(&name);
                (name, used)
            })
        })
        .collect()
}

/// A circle through `module`, if there is one.
fn circle(
    graph: &BTreeMap<String, BTreeSet<String>>,
    module: &str,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    if let Some(at) = path.iter().position(|m| m == module) {
        let mut found = path[at..].to_vec();
        found.push(module.to_owned());
        return Some(found);
    }
    path.push(module.to_owned());
    for next in graph.get(module).into_iter().flatten() {
        if let Some(found) = circle(graph, next, path) {
            return Some(found);
        }
    }
    path.pop();
    None
}

#[test]
fn the_controller_files_import_one_another_without_a_circle() {
    let graph = graph();
    assert!(graph.len() > 10, "found the controller files: {graph:?}");
    // The reconcilers use the shared layer, which does not use them.
    assert!(graph["connection"].contains("revoke"));
    assert!(graph["revoke"].contains("access"));
    for module in graph.keys() {
        if let Some(found) = circle(&graph, module, &mut Vec::new()) {
            panic!("import circle: {}", found.join(" -> "));
        }
    }
}

#[test]
fn a_circle_is_found_when_there_is_one() {
    let siblings: BTreeSet<String> = ["a", "b"].map(String::from).into();
    let graph: BTreeMap<String, BTreeSet<String>> = [
        (
            "a".to_owned(),
            uses("use super::{\n    b,\n    c,\n};", &siblings),
        ),
        ("b".to_owned(), uses("use super::a::thing;", &siblings)),
    ]
    .into();
    let found = circle(&graph, "a", &mut Vec::new()).expect("a -> b -> a");
    assert_eq!(found, ["a", "b", "a"]);
}
