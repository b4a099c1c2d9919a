//! The shape of `src/`: dependencies between top-level modules run one way (no import
//! cycle), and no source file grows past about 600 lines without saying why in its
//! header.
//!
//! A module's dependencies are the `crate::<module>` paths in its files (in `use` items
//! and in expressions alike), test code left out: files named `tests.rs` and everything
//! after a `#[cfg(test)]` line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Lines a source file may have without a reason in its header.
const MAX_LINES: usize = 600;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level module a file belongs to (`None` for lib.rs and main.rs).
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "main.rs" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

/// The code of a file without its tests and comments.
fn production_code(text: &str) -> String {
    let mut code = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        code.push_str(line);
        code.push('\n');
    }
    code
}

/// The top-level modules named by `crate::` paths in `code`, including the groups of
/// `use crate::{a, b::c}`.
fn crate_refs(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String { s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect() };
    let mut refs = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `cs_pulse_crate::`
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: those at brace depth 0.
            let mut depth = 0;
            let mut start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_alphanumeric() || c == '_') => {
                        start = false;
                        refs.insert(ident(&group[j..]));
                    }
                    _ => {}
                }
            }
        } else {
            refs.insert(ident(rest));
        }
    }
    refs.retain(|r| !r.is_empty() && r != "self");
    refs
}

fn dependencies() -> Result<BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files)?;
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let Some(module) = module_of(&f) else { continue };
        let entry = deps.entry(module.clone()).or_default();
        if f.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f)?;
        for r in crate_refs(&production_code(&text)) {
            if r != module {
                entry.insert(r);
            }
        }
    }
    Ok(deps)
}

/// A cycle in `deps`, if there is one, as the modules along it.
fn find_cycle(deps: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        deps: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in deps.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, deps, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in deps.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, deps, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_checker_finds_references_and_cycles() {
    let refs = crate_refs("use crate::{a::{b, c}, d};\nlet x = crate::e::f();\nuse super::g; // crate::h\n");
    assert_eq!(refs, ["a", "d", "e", "h"].iter().map(|s| s.to_string()).collect());
    assert!(!production_code("use crate::a;\n// crate::b\n").contains("crate::b"));
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
            g.entry(b.to_string()).or_default();
        }
        g
    };
    assert_eq!(find_cycle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
    assert_eq!(
        find_cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn dependencies_between_top_level_modules_run_one_way() -> Result {
    let deps = dependencies()?;
    assert!(deps.len() > 5, "found only {deps:?}");
    if let Some(cycle) = find_cycle(&deps) {
        let listing: Vec<String> = deps
            .iter()
            .map(|(m, d)| format!("  {m} -> {}", d.iter().cloned().collect::<Vec<_>>().join(", ")))
            .collect();
        panic!("import cycle among src/ modules: {}\n{}", cycle.join(" -> "), listing.join("\n"));
    }
    Ok(())
}

#[test]
fn no_source_file_is_long_without_a_reason_in_its_header() -> Result {
    let mut files = Vec::new();
    rust_files(&src(), &mut files)?;
    let mut long = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        let lines = text.lines().count();
        // The reason is a header line (a `//!` comment before the code) starting
        // "Long because".
        let header_gives_reason = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .any(|l| l.trim_start_matches("//!").trim().starts_with("Long because"));
        if lines > MAX_LINES && !header_gives_reason {
            long.push(format!("{} ({lines} lines)", f.display()));
        }
    }
    assert!(long.is_empty(), "files over {MAX_LINES} lines with no \"Long because\" header line: {long:?}");
    Ok(())
}

#[test]
fn only_telemetry_touches_the_metrics_registry() -> Result {
    let mut files = Vec::new();
    rust_files(&src(), &mut files)?;
    let telemetry = src().join("telemetry");
    let mut callers = Vec::new();
    for f in files.iter().filter(|f| !f.starts_with(&telemetry)) {
        let code = production_code(&std::fs::read_to_string(f)?);
        // `metrics()` itself, not a name ending in it (`record_state_metrics()`).
        let calls = code
            .match_indices("metrics()")
            .any(|(i, _)| !code[..i].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_'));
        if calls {
            callers.push(f.display().to_string());
        }
    }
    assert!(
        callers.is_empty(),
        "these files call the metrics registry directly instead of emitting a telemetry event: {callers:?}"
    );
    Ok(())
}
