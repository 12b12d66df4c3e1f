//! From a byte offset in the file to what an operator needs: a line and column, or the key.

use std::ops::Range;

use toml_edit::{Item, TableLike, Value};

use crate::keys;

/// 1-based line and column (in characters) of byte `offset` of `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// `line L, column C` for byte `offset`.
pub(crate) fn position(text: &str, offset: usize) -> String {
    let (line, column) = line_column(text, offset);
    format!("line {line}, column {column}")
}

/// The key whose name or value covers `span` most tightly (for a table: its header), as an
/// error message names it.
pub(crate) fn key_at(doc: &toml_edit::Document<&str>, span: &Range<usize>) -> Option<String> {
    let mut found: Vec<(Range<usize>, String)> = Vec::new();
    walk_table(doc.as_table(), "", &mut found);
    found
        .into_iter()
        .filter(|(s, _)| {
            (s.start <= span.start && span.start < s.end)
                || (s.start == span.start && span.is_empty())
        })
        .min_by_key(|(s, _)| s.end - s.start)
        .map(|(_, path)| path)
}

fn walk_table(table: &dyn TableLike, path: &str, out: &mut Vec<(Range<usize>, String)>) {
    for (name, item) in table.iter() {
        let here = keys::join(path, name);
        if let Some(span) = table.get_key_value(name).and_then(|(k, _)| k.span()) {
            out.push((span, here.clone()));
        }
        walk_item(item, &here, out);
    }
}

fn walk_item(item: &Item, path: &str, out: &mut Vec<(Range<usize>, String)>) {
    match item {
        Item::None => {}
        Item::Value(v) => walk_value(v, path, out),
        Item::Table(t) => {
            if let Some(span) = t.span() {
                out.push((span, path.to_owned()));
            }
            walk_table(t, path, out);
        }
        Item::ArrayOfTables(a) => {
            let names: Vec<Option<&str>> = a
                .iter()
                .map(|t| t.get("name").and_then(Item::as_str))
                .collect();
            for (t, label) in a.iter().zip(keys::element_labels(&names)) {
                let here = keys::element(path, &label);
                if let Some(span) = t.span() {
                    out.push((span, here.clone()));
                }
                walk_table(t, &here, out);
            }
        }
    }
}

fn walk_value(value: &Value, path: &str, out: &mut Vec<(Range<usize>, String)>) {
    if let Some(span) = value.span() {
        out.push((span, path.to_owned()));
    }
    match value {
        Value::Array(a) => {
            let names: Vec<Option<&str>> = a
                .iter()
                .map(|v| {
                    v.as_inline_table()
                        .and_then(|t| t.get("name"))
                        .and_then(Value::as_str)
                })
                .collect();
            for (v, label) in a.iter().zip(keys::element_labels(&names)) {
                walk_value(v, &keys::element(path, &label), out);
            }
        }
        Value::InlineTable(t) => walk_table(t, path, out),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters_from_one() {
        let text = "a = 1\nbé = [\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, text.len()), (3, 1));
        // After the two-byte é: column 3 in characters.
        assert_eq!(line_column(text, 9), (2, 3));
        assert_eq!(line_column(text, 10_000), (3, 1));
    }

    #[test]
    fn the_tightest_key_wins() {
        let text = "[gateway]\nfqdn = \"x\"\n[[peer]]\nname = \"pbx\"\nport = 1\n\
                    [[peer]]\nport = 2\n[[dial_plan]]\nname = \"d\"\nroutes = [{ prefix = \"\", target = \"echo\" }]\n";
        let doc = toml_edit::Document::parse(text).unwrap();
        let at = |needle: &str| {
            let start = text.find(needle).unwrap();
            key_at(&doc, &(start..start + needle.len()))
        };
        assert_eq!(at("fqdn").as_deref(), Some("gateway.fqdn"));
        assert_eq!(at("\"x\"").as_deref(), Some("gateway.fqdn"));
        assert_eq!(at("port = 1").as_deref(), Some("peer[pbx].port"));
        assert_eq!(at("2\n").as_deref(), Some("peer[1].port"));
        assert_eq!(
            at("target").as_deref(),
            Some("dial_plan[d].routes[0].target")
        );
        assert_eq!(at("[gateway]").as_deref(), Some("gateway"));
    }
}
