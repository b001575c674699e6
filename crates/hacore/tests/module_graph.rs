//! No two hacore modules import each other (issue 23): the import graph of
//! hacore's top-level modules (`crate::X`), and of the sibling files inside
//! each directory module (`super::Y` and `crate::D::Y` from `D/X.rs`), has no
//! cycle. Read from the sources: `use crate::...` trees and inline
//! `crate::a::b` paths, outside comments, strings and `#[cfg(test)]` items.
//! A submodule naming its own parent (`super::Ctx`) is how a directory module
//! shares its helpers, not a cycle: parent and child edges are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path, e.g. `["rules", "etcd_quorum"]`; the crate root is `[]`.
type Module = Vec<String>;

fn src_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            src_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` is `a::b`, `src/a/mod.rs` is `a`, `src/lib.rs` the root.
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The text with comments, string literals and char literals blanked.
fn blank(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let wipe = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            let end = b[i..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(b.len(), |p| i + p);
            wipe(&mut out, i, end);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            let (mut depth, mut j) = (1, i + 2);
            while j < b.len() && depth > 0 {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            wipe(&mut out, i, j);
            i = j;
        } else if (b[i] == b'r' || b[i..].starts_with(b"br"))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
            && {
                let s = i + if b[i] == b'b' { 2 } else { 1 };
                let hashes = b[s..].iter().take_while(|&&c| c == b'#').count();
                b.get(s + hashes) == Some(&b'"')
            }
        {
            let s = i + if b[i] == b'b' { 2 } else { 1 };
            let hashes = b[s..].iter().take_while(|&&c| c == b'#').count();
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', hashes));
            let body = s + hashes + 1;
            let end = b[body..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(b.len(), |p| body + p + close.len());
            wipe(&mut out, i, end);
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            wipe(&mut out, i, j + 1);
            i = j + 1;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{1F}'), not a lifetime ('a).
            let end = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&c| c == b'\'')
                    .map(|p| i + 2 + p + 1)
            } else {
                let ch = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(i + 1 + ch) == Some(&b'\'')).then_some(i + 2 + ch)
            };
            match end {
                Some(end) => {
                    wipe(&mut out, i, end);
                    i = end;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Index just past the item starting at `i`: its `;` or its brace block.
fn item_end(b: &[u8], i: usize) -> usize {
    let mut depth = 0;
    for (j, &c) in b.iter().enumerate().skip(i) {
        match c {
            b';' if depth == 0 => return j + 1,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    b.len()
}

/// The text without its `#[cfg(test)]` items.
fn without_tests(text: &str) -> String {
    let mut out = text.to_owned();
    let mut from = 0;
    while let Some(p) = out[from..].find("#[cfg(test)]") {
        let start = from + p;
        let end = item_end(out.as_bytes(), start + "#[cfg(test)]".len());
        out.replace_range(start..end, &" ".repeat(end - start));
        from = end;
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The paths a use tree starting at `i` names (after `crate::`/`super::`),
/// each as its segments; `{a, b::{c, d}}` gives `a`, `b::c`, `b::d`.
fn use_tree(b: &[u8], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    let mut path = prefix;
    loop {
        skip_ws(&mut i);
        if b.get(i) == Some(&b'{') {
            i += 1;
            loop {
                skip_ws(&mut i);
                if b.get(i) == Some(&b'}') {
                    return i + 1;
                }
                i = use_tree(b, i, path.clone(), out);
                skip_ws(&mut i);
                match b.get(i) {
                    Some(b',') => i += 1,
                    Some(b'}') => return i + 1,
                    _ => return i,
                }
            }
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        if i > start {
            path.push(String::from_utf8_lossy(&b[start..i]).into_owned());
        }
        skip_ws(&mut i);
        if b[i..].starts_with(b"::") {
            i += 2;
            continue;
        }
        out.push(path);
        return i;
    }
}

/// Every module path a file names with `crate::` or `super::`, resolved
/// against the file's own module.
fn referenced(text: &str, own: &Module) -> Vec<Vec<String>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    for (anchor, up) in [("crate::", None), ("super::", Some(()))] {
        let mut from = 0;
        while let Some(p) = text[from..].find(anchor) {
            let at = from + p;
            from = at + anchor.len();
            if at > 0 && is_ident(b[at - 1]) || at > 1 && &b[at - 2..at] == b"::" {
                continue;
            }
            let prefix = match up {
                None => Vec::new(),
                // `super` of `a::b` (a/b.rs) is `a`; of `a` (a.rs, a/mod.rs) the root.
                Some(()) => own[..own.len() - 1].to_vec(),
            };
            use_tree(b, from, prefix, &mut out);
        }
    }
    out
}

/// The longest known module a path starts with.
fn resolve(path: &[String], modules: &BTreeSet<Module>) -> Option<Module> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| modules.contains(m))
}

/// A cycle in the graph, as its modules in order (first repeated last).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        mark: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        mark.insert(n.to_owned(), Mark::Open);
        stack.push(n.to_owned());
        for m in graph.get(n).into_iter().flatten() {
            match mark.get(m).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let at = stack.iter().position(|s| s == m).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(m, graph, mark, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        mark.insert(n.to_owned(), Mark::Done);
        None
    }
    let mut mark = BTreeMap::new();
    for n in graph.keys() {
        if mark.get(n).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(c) = visit(n, graph, &mut mark, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// One cycle through each group of modules that reach one another.
fn cycles_of(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(n) = todo.pop() {
            for m in graph.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    todo.push(m.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|n| (n, reach(n))).collect();
    let mut grouped = BTreeSet::new();
    let mut cycles = Vec::new();
    for (n, from_n) in &reaches {
        if grouped.contains(*n) || !from_n.contains(*n) {
            continue;
        }
        let group: BTreeSet<String> = from_n
            .iter()
            .filter(|m| reaches.get(m).is_some_and(|r| r.contains(*n)))
            .cloned()
            .collect();
        let within: BTreeMap<String, BTreeSet<String>> = group
            .iter()
            .map(|m| (m.clone(), graph[m].intersection(&group).cloned().collect()))
            .collect();
        cycles.extend(find_cycle(&within));
        grouped.extend(group);
    }
    cycles
}

/// Import graphs: one for the top-level modules (key ""), one per directory
/// module for its sibling files (key: the directory module).
fn graphs() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    src_files(&src, &mut files);
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut graphs: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &files {
        let own = module_of(&src, file);
        if own.is_empty() {
            continue;
        }
        let raw = std::fs::read_to_string(file).unwrap();
        let text = without_tests(&blank(&raw));
        for path in referenced(&text, &own) {
            let Some(to) = resolve(&path, &modules) else {
                continue;
            };
            if to.is_empty() {
                continue;
            }
            // Top level: `rules::etcd_quorum` -> `gate` is `rules` -> `gate`.
            if own[0] != to[0] {
                graphs
                    .entry(String::new())
                    .or_default()
                    .entry(own[0].clone())
                    .or_default()
                    .insert(to[0].clone());
            }
            // Siblings: `plan/joins.rs` -> `plan::render` is `joins` -> `render`.
            let common = own.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common < own.len() && common < to.len() && common > 0 {
                graphs
                    .entry(own[..common].join("::"))
                    .or_default()
                    .entry(own[common].clone())
                    .or_default()
                    .insert(to[common].clone());
            }
        }
    }
    graphs
}

#[test]
fn no_two_hacore_modules_import_each_other() {
    let graphs = graphs();
    let top = graphs.get("").expect("hacore's modules import one another");
    if std::env::var_os("HACORE_MODULE_GRAPH").is_some() {
        for (within, graph) in &graphs {
            for (from, to) in graph {
                eprintln!("{within}: {from} -> {to:?}");
            }
        }
    }
    // The reader sees real imports: `gate` uses `rules`, `rules` uses `state`.
    assert!(top["gate"].contains("rules"), "{top:?}");
    assert!(top["rules"].contains("state"), "{top:?}");
    let mut cycles = Vec::new();
    for (within, graph) in &graphs {
        let place = if within.is_empty() {
            "hacore".to_owned()
        } else {
            format!("hacore::{within}")
        };
        for cycle in cycles_of(graph) {
            cycles.push(format!("{place}: {}", cycle.join(" -> ")));
        }
    }
    assert!(
        cycles.is_empty(),
        "modules that import each other (move what both need into a module of its own):\n  {}",
        cycles.join("\n  ")
    );
}

#[test]
fn the_cycle_check_names_a_cycle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    g.entry("x".into()).or_default().insert("y".into());
    g.entry("y".into()).or_default().insert("x".into());
    assert_eq!(
        cycles_of(&g),
        [vec!["a", "b", "c", "a"], vec!["x", "y", "x"]]
    );
}

#[test]
fn the_reader_finds_grouped_and_inline_imports_outside_tests() {
    let text = without_tests(&blank(
        "use crate::{gate::Policy, rules::{self, etcd_quorum::check}};\n\
         // crate::comment::X\n\
         fn f() { let s = \"crate::string\"; crate::units::Dur(1); }\n\
         #[cfg(test)]\nmod tests { use crate::in_memory::X; }\n",
    ));
    let own = vec!["disrupt".to_owned()];
    let mut got = referenced(&text, &own);
    got.sort();
    let want: Vec<Vec<String>> = [
        &["gate", "Policy"][..],
        &["rules", "etcd_quorum", "check"],
        &["rules", "self"],
        &["units", "Dur"],
    ]
    .iter()
    .map(|p| p.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(got, want);
}
