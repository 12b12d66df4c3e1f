//! How error messages name a key: `gateway.fqdn`, `peer[pbx].port`,
//! `dial_plan[secured].routes[1].target`, `hosts."pbx.example.com"`.
//!
//! An entry of `[[peer]]` or `[[dial_plan]]` is named by its `name` when that name is simple and
//! unique in the file (what an operator searches for), else by its 0-based index in the file.

/// A key as TOML would write it: bare when it can be, else quoted.
pub(crate) fn segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// `parent.key` (or just `key` at the root).
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        segment(key)
    } else {
        format!("{parent}.{}", segment(key))
    }
}

/// The label inside `[...]` of each element of an array whose elements may have a `name`:
/// the name when it is simple (letters, digits, `.`, `_`, `-`, not all digits) and unique among
/// the elements, else the index.
pub(crate) fn element_labels(names: &[Option<&str>]) -> Vec<String> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| match name {
            Some(n)
                if is_simple_name(n)
                    && !n.chars().all(|c| c.is_ascii_digit())
                    && names.iter().filter(|m| *m == name).count() == 1 =>
            {
                (*n).to_owned()
            }
            _ => i.to_string(),
        })
        .collect()
}

/// `parent[label]`.
pub(crate) fn element(parent: &str, label: &str) -> String {
    format!("{parent}[{label}]")
}

/// A name an operator can type on a command line without quoting: ASCII letters, digits, `.`,
/// `_`, `-`, starting with a letter or digit, at most 64 characters.
pub(crate) fn is_simple_name(name: &str) -> bool {
    name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_written_as_toml_would() {
        assert_eq!(join("", "gateway"), "gateway");
        assert_eq!(join("gateway", "fqdn"), "gateway.fqdn");
        assert_eq!(
            join("hosts", "pbx.example.com"),
            "hosts.\"pbx.example.com\""
        );
        assert_eq!(join("hosts", ""), "hosts.\"\"");
    }

    #[test]
    fn elements_are_named_when_the_name_is_simple_and_unique() {
        let labels = element_labels(&[
            Some("pbx"),
            Some("a b"),
            Some("gw"),
            Some("gw"),
            None,
            Some("7"),
        ]);
        assert_eq!(labels, ["pbx", "1", "2", "3", "4", "5"]);
    }
}
