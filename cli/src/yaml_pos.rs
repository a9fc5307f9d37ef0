//! Where each node of a YAML document is: line and column by path
//! (`rules[0].methods[1]`, the paths serde_norway's errors use), so that an
//! error or a lint can point at the item it is about, not at its list.

use saphyr_parser::{Event, Parser};
use std::collections::BTreeMap;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// Positions of one YAML document's nodes and mapping keys.
#[derive(Debug, Default)]
pub struct Positions {
    nodes: BTreeMap<String, Pos>,
    keys: BTreeMap<String, Pos>,
    scalars: BTreeMap<String, String>,
}

enum Frame {
    Mapping { path: String, key: Option<String> },
    Sequence { path: String, next: usize },
}

impl Positions {
    /// The positions of every document of `text`, in order. A text the YAML
    /// parser refuses yields what was read before the error (serde_norway
    /// reports the error itself).
    pub fn of_documents(text: &str) -> Vec<Positions> {
        let mut docs = Vec::new();
        let mut current = Positions::default();
        let mut stack: Vec<Frame> = Vec::new();
        for event in Parser::new_from_str(text) {
            let Ok((event, span)) = event else { break };
            let pos = Pos {
                line: span.start.line(),
                column: span.start.col() + 1,
            };
            match event {
                Event::DocumentStart(_) => {
                    current = Positions::default();
                    stack.clear();
                }
                Event::DocumentEnd => docs.push(std::mem::take(&mut current)),
                Event::Scalar(value, ..) => {
                    if let Some(path) = current.enter(&mut stack, pos, Some(&value)) {
                        current.nodes.insert(path.clone(), pos);
                        current.scalars.insert(path, value.into_owned());
                    }
                }
                Event::Alias(_) => {
                    if let Some(path) = current.enter(&mut stack, pos, None) {
                        current.nodes.insert(path, pos);
                    }
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let path = current.enter(&mut stack, pos, None).unwrap_or_default();
                    current.nodes.insert(path.clone(), pos);
                    stack.push(match event {
                        Event::MappingStart(..) => Frame::Mapping { path, key: None },
                        _ => Frame::Sequence { path, next: 0 },
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        docs
    }

    /// A node starts at `pos`: its path, or `None` if it is a mapping key
    /// (recorded as such; `scalar` is its text).
    fn enter(&mut self, stack: &mut [Frame], pos: Pos, scalar: Option<&str>) -> Option<String> {
        match stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Sequence { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
            Some(Frame::Mapping { path, key }) => match key.take() {
                Some(k) => Some(join(path, &k)),
                None => {
                    // A complex (non-scalar) key gets a placeholder name.
                    let k = scalar.unwrap_or("?").to_owned();
                    self.keys.insert(join(path, &k), pos);
                    *key = Some(k);
                    None
                }
            },
        }
    }

    /// Where the node at `path` starts.
    pub fn node(&self, path: &str) -> Option<Pos> {
        self.nodes.get(path).copied()
    }

    /// Where the key of the mapping member at `path` is (`rules[0].tools`),
    /// else where the node is.
    pub fn key(&self, path: &str) -> Option<Pos> {
        self.keys.get(path).copied().or_else(|| self.node(path))
    }

    /// The text of the scalar at `path`.
    pub fn scalar(&self, path: &str) -> Option<&str> {
        self.scalars.get(path).map(String::as_str)
    }

    /// How many items the sequence at `path` has.
    pub fn len(&self, path: &str) -> usize {
        (0..)
            .take_while(|i| self.nodes.contains_key(&format!("{path}[{i}]")))
            .count()
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} column {}", self.line, self.column)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths_like_serde_norway() {
        let text = "default: deny\nrules:\n- name: a\n  methods: [ping, \"tools/call\"]\n  callers:\n  - spiffe://x/a\n  - spiffe://x/b\n";
        let docs = Positions::of_documents(text);
        assert_eq!(docs.len(), 1);
        let p = &docs[0];
        let at = |line, column| Some(Pos { line, column });
        assert_eq!(p.node("rules[0]"), at(3, 3));
        assert_eq!(p.node("rules[0].methods[1]"), at(4, 19));
        assert_eq!(p.key("rules[0].methods"), at(4, 3));
        assert_eq!(p.node("rules[0].callers[1]"), at(7, 5));
        assert_eq!(p.len("rules[0].callers"), 2);
        assert_eq!(p.len("rules"), 1);
        assert_eq!(p.scalar("rules[0].callers[1]"), Some("spiffe://x/b"));
        assert_eq!(p.node("nope"), None);
    }

    #[test]
    fn several_documents() {
        let docs = Positions::of_documents("a: 1\n---\nkind: X\nspec:\n  b: [1]\n");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].node("spec.b[0]"), Some(Pos { line: 5, column: 7 }));
    }
}
