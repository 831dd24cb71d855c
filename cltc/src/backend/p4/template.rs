//! Specialising a `p4src/` template: every line `// @clt:NAME` is replaced by
//! the generated block NAME, indented like the marker.

/// The marker that starts a generated block.
pub const MARKER: &str = "// @clt:";

/// Replaces every marker line of `template` with `block(name)`. Markers the
/// function does not know are kept, so a test can find them.
pub fn specialise(template: &str, block: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    for line in template.lines() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        match trimmed
            .strip_prefix(MARKER)
            .and_then(|name| block(name.trim()))
        {
            Some(text) => {
                for generated in text.lines() {
                    if generated.is_empty() {
                        out.push('\n');
                    } else {
                        out.push_str(indent);
                        out.push_str(generated);
                        out.push('\n');
                    }
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// The names of the markers in `template`, in order.
pub fn markers(template: &str) -> Vec<&str> {
    template
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix(MARKER))
        .map(str::trim)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_replaced_with_indentation() {
        let t = "a {\n    // @clt:body\n}\n";
        let out = specialise(t, &|n| (n == "body").then(|| "x;\n\ny;".to_string()));
        assert_eq!(out, "a {\n    x;\n\n    y;\n}\n");
    }

    #[test]
    fn unknown_markers_stay() {
        let t = "// @clt:nope\n";
        assert_eq!(specialise(t, &|_| None), t);
        assert_eq!(markers(t), vec!["nope"]);
    }
}
