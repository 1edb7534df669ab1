//! `cargo xtask layers`: the library's modules import downward only.
//!
//! `crates/leasehold/src` is layered (its `lib.rs`, `# Layout`): a module
//! may use the modules of lower layers, never one above it, and never one
//! beside it unless [`SAME_LAYER`] allows that pair. [`LAYERS`] is the one
//! place that order is written down; the check reads every `.rs` file of the
//! library and refuses an import that goes up or sideways, and any cycle.
//!
//! It reads the source text, so it needs no build. A file belongs to the
//! top-level module of its path (`backend/node.rs` is `backend`). The
//! references it follows are paths from the crate root: `crate::NAME` (in a
//! `use`, grouped or not, or inline in code and macros) and `super::NAME`
//! that climbs to the root. A `NAME` that is not a module is resolved
//! through the root's re-exports (`crate::Guard` is `hold`'s). Comments, doc
//! comments, string literals, `#[cfg(test)]` items and the `tests.rs` files
//! of a module are not read: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The library's layers, bottom to top. A module may use any module of a
/// lower layer; the crate root (`lib.rs`) may use anything.
///
/// Keep it in step with `lib.rs`'s `# Layout` section: a new module goes in
/// a layer above every module it uses and below every module using it.
pub(crate) const LAYERS: &[&[&str]] = &[
    // Traces and metrics: every layer reports through it.
    &["observe"],
    &["error", "token", "keys", "acl"],
    &["scripts"],
    &["backend"],
    &["wake"],
    &["engine"],
    &["hold"],
    &["lease"],
    &["semaphore", "rwlock"],
    &["data"],
    &["inspect", "deploy"],
    &["client"],
    &["bench_hooks"],
];

/// Uses between two modules of one layer that are allowed, as
/// `(user, used)`: a pair lets only that direction through, so the two can
/// still not form a cycle.
pub(crate) const SAME_LAYER: &[(&str, &str)] = &[
    // A token refuses bad input with the crate's `Error`.
    ("token", "error"),
    // An error names what Redis's ACL refused.
    ("error", "acl"),
];

/// What a file's direct calls to Redis look like: `redis::cmd`,
/// `redis::pipe`, or holding a connection of its own.
const REDIS_PATHS: &[&str] = &["cmd", "pipe"];
const REDIS_CONNECTIONS: &[&str] = &["ConnectionManager", "MultiplexedConnection"];

/// How the crate root is named in the report.
const ROOT: &str = "(root)";

/// The layer table a check runs against ([`LAYERS`], [`SAME_LAYER`]; tests
/// bring their own).
#[derive(Clone, Copy)]
pub(crate) struct Table<'a> {
    pub(crate) layers: &'a [&'a [&'a str]],
    pub(crate) same_layer: &'a [(&'a str, &'a str)],
}

/// The library's table.
pub(crate) const TABLE: Table<'static> = Table {
    layers: LAYERS,
    same_layer: SAME_LAYER,
};

impl Table<'_> {
    fn layer_of(&self, module: &str) -> Option<usize> {
        self.layers.iter().position(|l| l.contains(&module))
    }

    /// The modules in table order.
    fn modules(&self) -> impl Iterator<Item = &str> {
        self.layers.iter().flat_map(|l| l.iter().copied())
    }
}

/// Where a reference was found, for messages: `path:line`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Site {
    file: String,
    line: usize,
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Modules that reach each other: a strongly connected component of the
/// graph, of more than one module.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Cycle {
    /// In table order.
    members: Vec<String>,
    /// A shortest closed walk through the first member, each step with the
    /// site of its first reference.
    walk: Vec<(String, Site)>,
}

/// The outcome of [`check`].
pub(crate) struct Report {
    /// Every module found, in table order, then those missing from it.
    modules: Vec<String>,
    layer: BTreeMap<String, usize>,
    /// user → used → where. Root and self uses are left out.
    edges: BTreeMap<String, BTreeMap<String, Vec<Site>>>,
    /// Each cycle found: one strongly connected component.
    cycles: Vec<Cycle>,
    /// `(user, used, site)` of each use against the table.
    wrong_way: Vec<(String, String, Site)>,
    /// Anything else that makes the check fail: the table out of step with
    /// the modules, a name that resolves to nothing, a glob of the root.
    problems: Vec<String>,
    /// Module → files that call Redis directly.
    redis: BTreeMap<String, Vec<String>>,
    files: usize,
}

impl Report {
    pub(crate) fn ok(&self) -> bool {
        self.cycles.is_empty() && self.wrong_way.is_empty() && self.problems.is_empty()
    }

    fn layer_label(&self, module: &str) -> String {
        self.layer
            .get(module)
            .map_or_else(|| "?".to_owned(), |l| l.to_string())
    }

    /// The report for people.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        let edges: usize = self.edges.values().map(BTreeMap::len).sum();
        let _ = writeln!(
            out,
            "module layers: {} files, {} modules, {edges} uses between modules \
             (a module may use only lower layers)\n",
            self.files,
            self.modules.len()
        );
        let width = self.modules.iter().map(String::len).max().unwrap_or(0);
        for module in self.modules.iter().rev() {
            let uses: Vec<&str> = self.used_by(module);
            let uses = if uses.is_empty() {
                "(nothing)".to_owned()
            } else {
                uses.join(", ")
            };
            let _ = writeln!(
                out,
                "  {:>2}  {module:<width$}  -> {uses}",
                self.layer_label(module)
            );
        }
        let _ = writeln!(out);
        if self.cycles.is_empty() {
            let _ = writeln!(out, "cycles: none");
        }
        for cycle in &self.cycles {
            let members = cycle.members.join(", ");
            let _ = writeln!(out, "cycle among {members}; for one:");
            let walk = &cycle.walk;
            for (i, (module, site)) in walk.iter().enumerate() {
                let next = &walk[(i + 1) % walk.len()].0;
                let _ = writeln!(out, "    {module} -> {next}  ({site})");
            }
        }
        if self.wrong_way.is_empty() {
            let _ = writeln!(out, "uses against the layers: none");
        }
        for (from, to, site) in &self.wrong_way {
            let (lf, lt) = (self.layer_label(from), self.layer_label(to));
            let way = if lf == lt { "beside" } else { "above" };
            let _ = writeln!(
                out,
                "wrong way: {from} (layer {lf}) uses {to} (layer {lt}, {way} it) at {site}"
            );
        }
        for problem in &self.problems {
            let _ = writeln!(out, "error: {problem}");
        }
        let files: usize = self.redis.values().map(Vec::len).sum();
        let _ = writeln!(
            out,
            "\nfiles that call Redis directly (redis::cmd, redis::pipe, \
             ConnectionManager, MultiplexedConnection; outside comments and tests): {files}"
        );
        for module in &self.modules {
            if let Some(files) = self.redis.get(module) {
                let _ = writeln!(
                    out,
                    "  {:>2}  {module:<width$}  {}",
                    self.layer_label(module),
                    files.join(", ")
                );
            }
        }
        if let Some(files) = self.redis.get(ROOT) {
            let _ = writeln!(out, "      {ROOT:<width$}  {}", files.join(", "));
        }
        out
    }

    /// The modules `module` uses, in table order.
    fn used_by(&self, module: &str) -> Vec<&str> {
        let Some(used) = self.edges.get(module) else {
            return Vec::new();
        };
        self.modules
            .iter()
            .filter(|m| used.contains_key(*m))
            .map(String::as_str)
            .collect()
    }

    /// The report as one JSON object: `ok`, `files`, `modules` (each
    /// `name`, `layer` (null when not in the table), `uses`: `[{module,
    /// sites}]`), `cycles` (`[{members, walk: [{module, site}]}]`), `wrong_way`
    /// (`[{from, to, site}]`), `problems` (strings), `redis`
    /// (`[{module, files}]`).
    pub(crate) fn json(&self) -> String {
        let s = |v: &str| json_string(v);
        let list = |items: Vec<String>| format!("[{}]", items.join(","));
        let modules = self
            .modules
            .iter()
            .map(|m| {
                let uses = self
                    .used_by(m)
                    .into_iter()
                    .map(|u| {
                        let sites = self.edges[m][u].iter().map(|x| s(&x.to_string()));
                        format!(r#"{{"module":{},"sites":{}}}"#, s(u), list(sites.collect()))
                    })
                    .collect();
                let layer = self
                    .layer
                    .get(m)
                    .map_or_else(|| "null".to_owned(), usize::to_string);
                format!(
                    r#"{{"name":{},"layer":{layer},"uses":{}}}"#,
                    s(m),
                    list(uses)
                )
            })
            .collect();
        let cycles = self
            .cycles
            .iter()
            .map(|c| {
                let walk = c.walk.iter().map(|(m, site)| {
                    format!(r#"{{"module":{},"site":{}}}"#, s(m), s(&site.to_string()))
                });
                let members = c.members.iter().map(|m| s(m));
                format!(
                    r#"{{"members":{},"walk":{}}}"#,
                    list(members.collect()),
                    list(walk.collect())
                )
            })
            .collect();
        let wrong_way = self
            .wrong_way
            .iter()
            .map(|(f, t, site)| {
                format!(
                    r#"{{"from":{},"to":{},"site":{}}}"#,
                    s(f),
                    s(t),
                    s(&site.to_string())
                )
            })
            .collect();
        let redis = self
            .redis
            .iter()
            .map(|(m, files)| {
                format!(
                    r#"{{"module":{},"files":{}}}"#,
                    s(m),
                    list(files.iter().map(|f| s(f)).collect())
                )
            })
            .collect();
        format!(
            r#"{{"ok":{},"files":{},"modules":{},"cycles":{},"wrong_way":{},"problems":{},"redis":{}}}"#,
            self.ok(),
            self.files,
            list(modules),
            list(cycles),
            list(wrong_way),
            list(self.problems.iter().map(|p| s(p)).collect()),
            list(redis),
        )
    }

    /// The graph for graphviz (`dot -Tsvg`): one row per layer, the top
    /// layer on top; uses against the table in red.
    pub(crate) fn dot(&self) -> String {
        let mut out = String::from("digraph leasehold {\n  node [shape=box];\n");
        let mut by_layer: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
        for m in &self.modules {
            if let Some(&l) = self.layer.get(m) {
                by_layer.entry(l).or_default().push(m);
            }
        }
        for modules in by_layer.values() {
            let names: Vec<String> = modules.iter().map(|m| json_string(m)).collect();
            let _ = writeln!(out, "  {{ rank=same; {}; }}", names.join("; "));
        }
        let wrong: BTreeSet<(&str, &str)> = self
            .wrong_way
            .iter()
            .map(|(f, t, _)| (f.as_str(), t.as_str()))
            .collect();
        for m in &self.modules {
            for u in self.used_by(m) {
                let colour = if wrong.contains(&(m.as_str(), u)) {
                    " [color=red]"
                } else {
                    ""
                };
                let _ = writeln!(out, "  {} -> {}{colour};", json_string(m), json_string(u));
            }
        }
        out.push_str("}\n");
        out
    }
}

/// `v` as a JSON (and graphviz) string literal.
fn json_string(v: &str) -> String {
    let mut out = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Checks the library whose source is `src` (its `lib.rs` and modules)
/// against `table`. Paths in the report are `src` shown as `shown`, joined
/// with the file's path below it.
pub(crate) fn check(src: &Path, shown: &Path, table: Table<'_>) -> Result<Report, String> {
    let mut files = Vec::new();
    collect_rs(src, src, &mut files)?;
    files.sort();
    let lib = src.join("lib.rs");
    let lib_text =
        std::fs::read_to_string(&lib).map_err(|e| format!("cannot read {}: {e}", lib.display()))?;
    let lib_tokens = lex(&lib_text);

    // The top-level modules: declared in lib.rs, or with a file of their own.
    let mut found: BTreeSet<String> = declared_modules(&lib_tokens);
    for rel in &files {
        if let Some(m) = module_of(rel) {
            found.insert(m);
        }
    }
    let reexports = reexports(&lib_tokens, &found);

    let mut problems = Vec::new();
    let mut edges: BTreeMap<String, BTreeMap<String, Vec<Site>>> = BTreeMap::new();
    let mut redis: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut read = 0;
    for rel in &files {
        let module = module_of(rel);
        let name = module.clone().unwrap_or_else(|| ROOT.to_owned());
        let shown_file = shown.join(rel).display().to_string();
        let tokens = if module.is_none() {
            lib_tokens.clone()
        } else {
            let path = src.join(rel);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            lex(&text)
        };
        let file_scan = scan(&tokens, depth_of(rel));
        read += 1;
        if !file_scan.redis.is_empty() {
            redis.entry(name.clone()).or_default().push(rel_string(rel));
        }
        if !balanced(&tokens) {
            problems.push(format!(
                "{shown_file}: its brackets do not pair up once comments and literals are \
                 taken out: the check misread it (fix the lexer in xtask/src/layers.rs)"
            ));
        }
        for &line in &file_scan.globs {
            problems.push(format!(
                "{shown_file}:{line}: a glob import of the crate root hides which modules it \
                 uses; name them"
            ));
        }
        let Some(module) = module else { continue };
        for (target, line) in file_scan.refs {
            let site = Site {
                file: shown_file.clone(),
                line,
            };
            let used = if found.contains(&target) {
                target
            } else if let Some(m) = reexports.get(&target) {
                m.clone()
            } else {
                problems.push(format!(
                    "{site}: `crate::{target}` is neither a module nor re-exported by lib.rs \
                     from one; cannot tell which layer it belongs to"
                ));
                continue;
            };
            if used != module {
                edges
                    .entry(module.clone())
                    .or_default()
                    .entry(used)
                    .or_default()
                    .push(site);
            }
        }
    }

    let mut layer = BTreeMap::new();
    let mut modules: Vec<String> = Vec::new();
    for m in table.modules() {
        if found.contains(m) {
            modules.push(m.to_owned());
            layer.insert(m.to_owned(), table.layer_of(m).unwrap_or_default());
        } else {
            problems.push(format!(
                "the layer table (xtask/src/layers.rs, LAYERS) names `{m}`, which is not a \
                 module of the library: remove it"
            ));
        }
    }
    for m in &found {
        if table.layer_of(m).is_none() {
            modules.push(m.clone());
            problems.push(format!(
                "module `{m}` is not in the layer table: add it to LAYERS in \
                 xtask/src/layers.rs, in the layer above every module it uses"
            ));
        }
    }

    let mut wrong_way = Vec::new();
    for (from, used) in &edges {
        for (to, sites) in used {
            let (Some(lf), Some(lt)) = (table.layer_of(from), table.layer_of(to)) else {
                continue;
            };
            let allowed =
                lt < lf || (lt == lf && table.same_layer.contains(&(from.as_str(), to.as_str())));
            if !allowed {
                for site in sites {
                    wrong_way.push((from.clone(), to.clone(), site.clone()));
                }
            }
        }
    }
    wrong_way.sort_by(|a, b| a.2.cmp(&b.2));

    let cycles = cycles(&modules, &edges);
    Ok(Report {
        modules,
        layer,
        edges,
        cycles,
        wrong_way,
        problems,
        redis,
        files: read,
    })
}

/// Every cycle among `modules`: each strongly connected component of more
/// than one module, with a shortest closed walk through its first module
/// (in `modules` order).
fn cycles(modules: &[String], edges: &BTreeMap<String, BTreeMap<String, Vec<Site>>>) -> Vec<Cycle> {
    let index: BTreeMap<&str, usize> = modules
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let next: Vec<Vec<usize>> = modules
        .iter()
        .map(|m| {
            edges
                .get(m)
                .into_iter()
                .flat_map(|used| used.keys())
                .filter_map(|u| index.get(u.as_str()).copied())
                .collect()
        })
        .collect();
    let mut out = Vec::new();
    for component in tarjan(&next) {
        if component.len() < 2 {
            continue;
        }
        let start = *component.iter().min().expect("a component has a member");
        let walk = shortest_cycle(&next, &component, start);
        out.push(Cycle {
            members: component.iter().map(|&m| modules[m].clone()).collect(),
            walk: walk
                .iter()
                .enumerate()
                .map(|(i, &m)| {
                    let to = walk[(i + 1) % walk.len()];
                    let site = edges[&modules[m]][&modules[to]][0].clone();
                    (modules[m].clone(), site)
                })
                .collect(),
        });
    }
    out.sort();
    out
}

/// The strongly connected components of the graph `next` (node → the
/// nodes it has an edge to), by Tarjan's algorithm.
fn tarjan(next: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        next: &'a [Vec<usize>],
        counter: usize,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        stack: Vec<usize>,
        on_stack: Vec<bool>,
        components: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State<'_>, v: usize) {
        s.index[v] = Some(s.counter);
        s.low[v] = s.counter;
        s.counter += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in &s.next[v] {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut component = Vec::new();
            loop {
                let w = s.stack.pop().expect("v is on the stack");
                s.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            component.sort_unstable();
            s.components.push(component);
        }
    }
    let n = next.len();
    let mut state = State {
        next,
        counter: 0,
        index: vec![None; n],
        low: vec![0; n],
        stack: Vec::new(),
        on_stack: vec![false; n],
        components: Vec::new(),
    };
    for v in 0..n {
        if state.index[v].is_none() {
            visit(&mut state, v);
        }
    }
    state.components
}

/// A shortest walk `start → … → start` inside `component` (breadth first).
fn shortest_cycle(next: &[Vec<usize>], component: &[usize], start: usize) -> Vec<usize> {
    let mut parent: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for &w in &next[v] {
            if !component.contains(&w) {
                continue;
            }
            if w == start {
                let mut walk = vec![v];
                while let Some(&p) = parent.get(walk.last().expect("not empty")) {
                    walk.push(p);
                }
                walk.reverse();
                return walk;
            }
            if w != start && !parent.contains_key(&w) {
                parent.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    unreachable!("a strongly connected component has a cycle through each member")
}

/// The `.rs` files under `dir`, relative to `src`; a module's `tests.rs`
/// (test-only by convention) is left out.
fn collect_rs(src: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let path = entry.path();
        if path.is_dir() {
            collect_rs(src, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(src).expect("below src").to_owned();
            let in_module = rel.components().count() > 1;
            if !(in_module && rel.file_name().is_some_and(|n| n == "tests.rs")) {
                out.push(rel);
            }
        }
    }
    Ok(())
}

fn rel_string(rel: &Path) -> String {
    rel.to_string_lossy().into_owned()
}

/// The top-level module a file (relative to src) belongs to; `None` for
/// the crate root.
fn module_of(rel: &Path) -> Option<String> {
    if rel == Path::new("lib.rs") {
        return None;
    }
    let first = rel.components().next()?.as_os_str().to_string_lossy();
    Some(first.strip_suffix(".rs").unwrap_or(&first).to_owned())
}

/// How deep a file's module is below the root: `lib.rs` 0, `client.rs`
/// and `backend/mod.rs` 1, `backend/node.rs` 2.
fn depth_of(rel: &Path) -> usize {
    let count = rel.components().count();
    match rel.file_name().and_then(|n| n.to_str()) {
        Some("lib.rs") if count == 1 => 0,
        Some("mod.rs") => count - 1,
        _ => count,
    }
}

/// One token of Rust source; literals, comments and lifetimes are dropped.
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Splits `src` into identifiers, `::` and punctuation, each with its line;
/// comments (doc comments too), string, char and number literals and
/// lifetimes are skipped, so a path inside them is never read as code.
fn lex(src: &str) -> Vec<Token> {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Skips a quoted literal whose opening quote is at `i`; returns the index
    // after its closing quote.
    let skip_quoted = |mut i: usize, quote: char, line: &mut usize| {
        i += 1;
        while i < c.len() && c[i] != quote {
            if c[i] == '\\' {
                i += 1;
            }
            if at(i) == '\n' {
                *line += 1;
            }
            i += 1;
        }
        i + 1
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' {
            i = skip_quoted(i, '"', &mut line);
        } else if ch == '\'' {
            if at(i + 1) == '\\' || at(i + 2) == '\'' {
                i = skip_quoted(i, '\'', &mut line);
            } else {
                // A lifetime or a label.
                i += 1;
                while is_ident_char(at(i)) {
                    i += 1;
                }
            }
        } else if ch.is_ascii_digit() {
            while is_ident_char(at(i)) {
                i += 1;
            }
        } else if is_ident_start(ch) {
            let start = i;
            while is_ident_char(at(i)) {
                i += 1;
            }
            let mut word: String = c[start..i].iter().collect();
            let mut hashes = 0;
            while at(i + hashes) == '#' {
                hashes += 1;
            }
            if matches!(word.as_str(), "r" | "br" | "cr") && at(i + hashes) == '"' {
                // A raw string: ends at `"` and as many `#`.
                i += hashes + 1;
                while i < c.len() && !(c[i] == '"' && (1..=hashes).all(|k| at(i + k) == '#')) {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
                i += hashes + 1;
                continue;
            }
            if matches!(word.as_str(), "b" | "c") && at(i) == '"' {
                i = skip_quoted(i, '"', &mut line);
                continue;
            }
            if word == "b" && at(i) == '\'' {
                i = skip_quoted(i, '\'', &mut line);
                continue;
            }
            if word == "r" && hashes == 1 && is_ident_start(at(i + 1)) {
                // A raw identifier, `r#type`.
                i += 1;
                let start = i;
                while is_ident_char(at(i)) {
                    i += 1;
                }
                word = c[start..i].iter().collect();
            }
            out.push(Token {
                tok: Tok::Ident(word),
                line,
            });
        } else if ch == ':' && at(i + 1) == ':' {
            out.push(Token {
                tok: Tok::PathSep,
                line,
            });
            i += 2;
        } else {
            out.push(Token {
                tok: Tok::Punct(ch),
                line,
            });
            i += 1;
        }
    }
    out
}

/// What one file refers to.
#[derive(Debug, Default)]
struct FileScan {
    /// The first segment below the crate root of each reference through
    /// it, with its line.
    refs: Vec<(String, usize)>,
    /// Lines of `use crate::*`.
    globs: Vec<usize>,
    /// Lines that call Redis directly.
    redis: Vec<usize>,
}

/// Do the brackets pair up? They do in any file that compiles, so a file
/// where they do not is one the lexer misread.
fn balanced(tokens: &[Token]) -> bool {
    let mut open = Vec::new();
    for token in tokens {
        match token.tok {
            Tok::Punct(c @ ('(' | '[' | '{')) => open.push(c),
            Tok::Punct(c @ (')' | ']' | '}')) => {
                let want = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if open.pop() != Some(want) {
                    return false;
                }
            }
            _ => {}
        }
    }
    open.is_empty()
}

fn ident(tokens: &[Token], i: usize) -> Option<&str> {
    match tokens.get(i).map(|t| &t.tok) {
        Some(Tok::Ident(s)) => Some(s),
        _ => None,
    }
}

fn is(tokens: &[Token], i: usize, tok: &Tok) -> bool {
    tokens.get(i).is_some_and(|t| &t.tok == tok)
}

fn punct(tokens: &[Token], i: usize, c: char) -> bool {
    is(tokens, i, &Tok::Punct(c))
}

/// `#[cfg(test)]` (`inner`: `#![cfg(test)]`) at `i`? Returns the index
/// after it.
fn cfg_test_at(tokens: &[Token], i: usize, inner: bool) -> Option<usize> {
    let mut j = i;
    if !punct(tokens, j, '#') {
        return None;
    }
    j += 1;
    if inner {
        if !punct(tokens, j, '!') {
            return None;
        }
        j += 1;
    }
    let ok = punct(tokens, j, '[')
        && ident(tokens, j + 1) == Some("cfg")
        && punct(tokens, j + 2, '(')
        && ident(tokens, j + 3) == Some("test")
        && punct(tokens, j + 4, ')')
        && punct(tokens, j + 5, ']');
    ok.then_some(j + 6)
}

/// The index after the item that starts at `i` (its attributes first):
/// after its `;`, or after the `}` closing its first block.
fn skip_item(tokens: &[Token], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < tokens.len() {
        match tokens[i].tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']') => depth = depth.saturating_sub(1),
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            Tok::Punct(';') if depth == 0 => return i + 1,
            _ => {}
        }
        i += 1;
    }
    i
}

/// The references through the crate root in a file whose module is
/// `depth` levels below it, and its direct Redis calls; `#[cfg(test)]`
/// items are skipped.
fn scan(tokens: &[Token], depth: usize) -> FileScan {
    let mut out = FileScan::default();
    if cfg_test_at(tokens, 0, true).is_some() {
        return out;
    }
    // One entry per open `{`: is it the body of an inline `mod`?
    let mut braces: Vec<bool> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if let Some(after) = cfg_test_at(tokens, i, false) {
            i = skip_item(tokens, after);
            continue;
        }
        let starts_path = i == 0 || !is(tokens, i - 1, &Tok::PathSep);
        match &tokens[i].tok {
            Tok::Punct('{') => {
                let is_mod =
                    i >= 2 && ident(tokens, i - 2) == Some("mod") && ident(tokens, i - 1).is_some();
                braces.push(is_mod);
            }
            Tok::Punct('}') => {
                braces.pop();
            }
            Tok::Ident(word)
                if word == "crate" && starts_path && is(tokens, i + 1, &Tok::PathSep) =>
            {
                below_root(tokens, i + 2, &mut out);
            }
            Tok::Ident(word) if word == "super" && starts_path => {
                let mut up = 0;
                let mut j = i;
                while ident(tokens, j) == Some("super") && is(tokens, j + 1, &Tok::PathSep) {
                    up += 1;
                    j += 2;
                }
                let here = depth + braces.iter().filter(|&&m| m).count();
                if up == here {
                    below_root(tokens, j, &mut out);
                }
                // Fewer steps stay inside the file's own top-level module.
                i = j.max(i + 1);
                continue;
            }
            Tok::Ident(word)
                if word == "redis"
                    && is(tokens, i + 1, &Tok::PathSep)
                    && ident(tokens, i + 2).is_some_and(|w| REDIS_PATHS.contains(&w)) =>
            {
                out.redis.push(tokens[i].line);
            }
            Tok::Ident(word) if REDIS_CONNECTIONS.contains(&word.as_str()) => {
                out.redis.push(tokens[i].line);
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Records the root's names that the path continuing at `i` (just after
/// `crate::`) goes through: one name, or each of a `{...}` group's.
fn below_root(tokens: &[Token], i: usize, out: &mut FileScan) {
    let line = tokens.get(i).map_or(0, |t| t.line);
    if let Some(name) = ident(tokens, i) {
        out.refs.push((name.to_owned(), line));
    } else if punct(tokens, i, '*') {
        out.globs.push(line);
    } else if punct(tokens, i, '{') {
        let mut depth = 0;
        let mut expect_name = true;
        for token in &tokens[i..] {
            match &token.tok {
                Tok::Punct('{') => depth += 1,
                Tok::Punct('}') => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                Tok::Punct(',') if depth == 1 => expect_name = true,
                Tok::Ident(name) if depth == 1 && expect_name => {
                    if name != "self" {
                        out.refs.push((name.clone(), token.line));
                    }
                    expect_name = false;
                }
                Tok::Punct('*') if depth == 1 && expect_name => out.globs.push(token.line),
                _ => {
                    if depth == 1 {
                        expect_name = false;
                    }
                }
            }
        }
    }
}

/// The modules lib.rs declares (`mod x;`, `pub mod x;`).
fn declared_modules(tokens: &[Token]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        if let Some(after) = cfg_test_at(tokens, i, false) {
            i = skip_item(tokens, after);
            continue;
        }
        match tokens[i].tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth == 0
            && ident(tokens, i) == Some("mod")
            && let Some(name) = ident(tokens, i + 1)
        {
            out.insert(name.to_owned());
        }
        i += 1;
    }
    out
}

/// The names lib.rs re-exports from its modules (`pub use hold::Guard`),
/// each with the module it comes from.
fn reexports(tokens: &[Token], modules: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        if let Some(after) = cfg_test_at(tokens, i, false) {
            i = skip_item(tokens, after);
            continue;
        }
        match tokens[i].tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth == 0 && ident(tokens, i) == Some("use") {
            let mut leaves = Vec::new();
            i += 1;
            use_tree(tokens, &mut i, Vec::new(), &mut leaves);
            for (path, leaf) in leaves {
                let first = match path.first().map(String::as_str) {
                    Some("crate" | "self") => path.get(1),
                    _ => path.first(),
                };
                if let Some(m) = first.filter(|m| modules.contains(*m)) {
                    out.insert(leaf, m.clone());
                }
            }
            continue;
        }
        i += 1;
    }
    out
}

/// Reads one use tree starting at `i`, pushing `(path, name it binds)` for
/// each leaf; leaves `i` after the tree.
fn use_tree(
    tokens: &[Token],
    i: &mut usize,
    mut path: Vec<String>,
    out: &mut Vec<(Vec<String>, String)>,
) {
    if is(tokens, *i, &Tok::PathSep) {
        *i += 1;
    }
    loop {
        if let Some(name) = ident(tokens, *i) {
            let name = name.to_owned();
            *i += 1;
            if is(tokens, *i, &Tok::PathSep) {
                path.push(name);
                *i += 1;
                continue;
            }
            let bound = if ident(tokens, *i) == Some("as") {
                *i += 2;
                ident(tokens, *i - 1).unwrap_or("_").to_owned()
            } else if name == "self" {
                path.last().cloned().unwrap_or_default()
            } else {
                name.clone()
            };
            if name != "self" {
                path.push(name);
            }
            out.push((path, bound));
            return;
        }
        if punct(tokens, *i, '{') {
            *i += 1;
            while *i < tokens.len() && !punct(tokens, *i, '}') {
                use_tree(tokens, i, path.clone(), out);
                if punct(tokens, *i, ',') {
                    *i += 1;
                } else if !punct(tokens, *i, '}') {
                    break;
                }
            }
            *i += 1;
        } else if punct(tokens, *i, '*') {
            *i += 1;
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(src: &str, depth: usize) -> Vec<(String, usize)> {
        scan(&lex(src), depth).refs
    }

    fn names(src: &str, depth: usize) -> Vec<String> {
        refs(src, depth).into_iter().map(|(n, _)| n).collect()
    }

    #[test]
    fn plain_grouped_and_nested_uses() {
        let src = "use crate::error::Result;\n\
                   use crate::{backend, keys::{self, Keys}, wake::{hub::{Hub, X}, Waiter}};\n\
                   pub(crate) use crate::scripts::{A as B};\n\
                   use std::{sync::Arc, collections::{BTreeMap}};\n";
        assert_eq!(
            refs(src, 1),
            [
                ("error".to_owned(), 1),
                ("backend".to_owned(), 2),
                ("keys".to_owned(), 2),
                ("wake".to_owned(), 2),
                ("scripts".to_owned(), 3),
            ]
        );
    }

    #[test]
    fn inline_paths_and_macros() {
        let src = "fn f() -> crate::Result<()> {\n    let t = crate::backend::ttl_ms(x);\n\
                   macro_rules! m { () => { $crate::hold::Guard::new() } }\n\
                   pub(crate) fn g() {}\n    Ok(())\n}\n";
        assert_eq!(
            refs(src, 1),
            [
                ("Result".to_owned(), 1),
                ("backend".to_owned(), 2),
                ("hold".to_owned(), 3),
            ]
        );
    }

    #[test]
    fn comments_docs_and_literals_are_not_code() {
        let src = "// use crate::client;\n/// See [`crate::inspect`].\n//! crate::data\n\
                   /* crate::lease /* nested crate::rwlock */ crate::hold */\n\
                   #[doc = \"crate::semaphore\"]\nconst S: &str = r#\"crate::engine \"quoted\"\"#;\n\
                   const B: &[u8] = b\"crate::wake\"; const C: char = '\"'; const D: char = '\\'';\n\
                   fn f<'a>(x: &'a str) -> &'a str { 'outer: loop { break 'outer; } x }\n\
                   use crate::token;\n";
        assert_eq!(refs(src, 1), [("token".to_owned(), 9)]);
        assert!(balanced(&lex(src)));
        assert!(balanced(&lex("fn f() { let s = \"}\"; let c = '{'; }")));
        assert!(!balanced(&lex("fn f() { (]")));
    }

    #[test]
    fn cfg_test_items_are_skipped() {
        let src = "use crate::keys;\n#[cfg(test)]\nmod tests {\n    use crate::client;\n    \
                   fn f() { if x { crate::data::y(); } }\n}\n\
                   #[cfg(test)]\n#[allow(unused)]\nuse crate::inspect;\n\
                   #[cfg(not(test))]\nuse crate::error;\nfn g() { crate::token::t(); }\n";
        assert_eq!(names(src, 1), ["keys", "error", "token"]);
        assert!(names("#![cfg(test)]\nuse crate::client;\n", 2).is_empty());
    }

    #[test]
    fn super_counts_up_to_the_root() {
        // In backend/node.rs (depth 2): `super` is backend, `super::super` the root.
        let src = "use super::Backend;\nuse super::super::{keys, Client};\n\
                   mod inner { use super::super::super::token; use super::super::Own; }\n";
        assert_eq!(names(src, 2), ["keys", "Client", "token"]);
        // In client.rs (depth 1), `super` is the root.
        assert_eq!(names("use super::lease::Lease;\n", 1), ["lease"]);
    }

    #[test]
    fn direct_redis_calls_outside_comments_and_tests() {
        let src = "/// redis::cmd(\"GET\")\nfn f() { redis::cmd(\"GET\"); }\n\
                   struct S { c: ConnectionManagerConfig }\nfn g(c: MultiplexedConnection) {}\n\
                   #[cfg(test)]\nmod tests { fn t() { redis::pipe(); } }\n";
        assert_eq!(scan(&lex(src), 1).redis, [2, 4]);
    }

    #[test]
    fn lib_reexports_name_their_module() {
        let lib = "mod hold;\npub mod client;\nmod error;\n\
                   pub use hold::{Detached, Guard};\npub use client::Client as Handle;\n\
                   pub use error::{self as errors, Error};\npub use std::fmt::Debug;\n";
        let tokens = lex(lib);
        let modules = declared_modules(&tokens);
        assert_eq!(
            modules.iter().map(String::as_str).collect::<Vec<_>>(),
            ["client", "error", "hold"]
        );
        let map = reexports(&tokens, &modules);
        let pairs: Vec<(&str, &str)> = map.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("Detached", "hold"),
                ("Error", "error"),
                ("Guard", "hold"),
                ("Handle", "client"),
                ("errors", "error"),
            ]
        );
    }

    #[test]
    fn tarjan_finds_the_strongly_connected_components() {
        // 0 → 1 → 2 → 0, 2 → 3, 3 → 4 → 3, 5 alone.
        let next = vec![vec![1], vec![2], vec![0, 3], vec![4], vec![3], vec![]];
        let mut components = tarjan(&next);
        components.sort();
        assert_eq!(components, [vec![0, 1, 2], vec![3, 4], vec![5]]);
        assert_eq!(shortest_cycle(&next, &[0, 1, 2], 0), [0, 1, 2]);
    }

    /// A made-up library in a temporary directory, removed on drop.
    struct Tree(PathBuf);

    impl Tree {
        fn new(files: &[(&str, &str)]) -> Tree {
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let root =
                std::env::temp_dir().join(format!("xtask-layers-{}-{n}", std::process::id()));
            for (path, text) in files {
                let path = root.join(path);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, text).unwrap();
            }
            Tree(root)
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const TABLE: Table<'static> = Table {
        layers: &[&["low", "side"], &["mid"], &["top"]],
        same_layer: &[("side", "low")],
    };

    fn lib() -> (&'static str, &'static str) {
        (
            "lib.rs",
            "mod low;\nmod side;\nmod mid;\nmod top;\npub use mid::Thing;\nuse top::*;\n",
        )
    }

    #[test]
    fn a_tree_that_keeps_its_layers_passes() {
        let tree = Tree::new(&[
            lib(),
            ("low.rs", "pub struct L;\n"),
            ("side.rs", "use crate::low::L;\n"),
            ("mid/mod.rs", "mod part;\nuse crate::{low, side};\n"),
            (
                "mid/part.rs",
                "use super::super::low::L;\nfn f() { redis::cmd(\"GET\"); }\n",
            ),
            // Tests may reach anywhere.
            ("mid/tests.rs", "use crate::top;\n"),
            ("top.rs", "use crate::Thing;\nuse crate::mid;\n"),
        ]);
        let report = check(&tree.0, Path::new("src"), TABLE).unwrap();
        assert!(report.ok(), "{}", report.text());
        assert_eq!(report.files, 6);
        assert_eq!(report.used_by("top"), ["mid"]);
        assert_eq!(report.used_by("mid"), ["low", "side"]);
        assert_eq!(report.used_by("side"), ["low"]);
        assert_eq!(report.redis["mid"], ["mid/part.rs"]);
        let text = report.text();
        assert!(text.contains("cycles: none"), "{text}");
        assert!(text.contains("  2  top   -> mid\n"), "{text}");
    }

    #[test]
    fn a_cycle_and_uses_against_the_layers_fail_with_their_sites() {
        let tree = Tree::new(&[
            lib(),
            ("low.rs", "use crate::side;\n"),
            ("side.rs", "use crate::low;\n"),
            ("mid/mod.rs", "mod part;\n"),
            (
                "mid/part.rs",
                "\nfn f() { crate::Thing::new(); crate::top::go(); }\n",
            ),
            ("top.rs", "use crate::mid;\n"),
        ]);
        let report = check(&tree.0, Path::new("src"), TABLE).unwrap();
        assert!(!report.ok());
        let cycles: Vec<&[String]> = report.cycles.iter().map(|c| &c.members[..]).collect();
        assert_eq!(cycles, [["low", "side"], ["mid", "top"]]);
        let wrong: Vec<String> = report
            .wrong_way
            .iter()
            .map(|(f, t, s)| format!("{f} {t} {s}"))
            .collect();
        assert_eq!(
            wrong,
            ["low side src/low.rs:1", "mid top src/mid/part.rs:2"]
        );
        let text = report.text();
        assert!(text.contains("cycle among mid, top; for one:\n    mid -> top  (src/mid/part.rs:2)\n    top -> mid  (src/top.rs:1)\n"), "{text}");
        assert!(
            text.contains(
                "wrong way: mid (layer 1) uses top (layer 2, above it) at src/mid/part.rs:2"
            ),
            "{text}"
        );
        assert!(report.json().starts_with(r#"{"ok":false,"#));
        assert!(report.dot().contains("\"mid\" -> \"top\" [color=red];"));
    }

    #[test]
    fn the_table_must_name_every_module_and_only_modules() {
        let tree = Tree::new(&[
            ("lib.rs", "mod low;\nmod extra;\n"),
            ("low.rs", "use crate::Missing;\nuse crate::*;\n"),
            ("extra.rs", ""),
        ]);
        let report = check(&tree.0, Path::new("src"), TABLE).unwrap();
        assert!(!report.ok());
        let problems = report.problems.join("\n");
        for expected in [
            "src/low.rs:1: `crate::Missing` is neither a module",
            "src/low.rs:2: a glob import of the crate root",
            "names `mid`, which is not a module",
            "module `extra` is not in the layer table: add it",
        ] {
            assert!(problems.contains(expected), "{expected} in {problems}");
        }
    }

    /// The real table is well formed: each module once, and each allowed
    /// pair inside one layer.
    #[test]
    fn the_library_table_is_consistent() {
        let all: Vec<&str> = super::TABLE.modules().collect();
        let unique: BTreeSet<&str> = all.iter().copied().collect();
        assert_eq!(all.len(), unique.len());
        for (a, b) in SAME_LAYER {
            assert_eq!(super::TABLE.layer_of(a), super::TABLE.layer_of(b));
            assert!(super::TABLE.layer_of(a).is_some());
            assert!(!SAME_LAYER.contains(&(b, a)), "{a} and {b} both ways");
        }
    }
}
