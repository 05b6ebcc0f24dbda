//! Human output: aligned tables and short values. `--json` output bypasses this entirely.

use std::fmt::Write;

/// Longest cell shown in a table (longer ones end in `…`).
const CELL_CHARS_MAX: usize = 60;

/// A table with a header row, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let clip = |s: &str| -> String {
        let one_line = s.replace(['\n', '\r'], " ");
        if one_line.chars().count() > CELL_CHARS_MAX {
            let mut cut: String = one_line.chars().take(CELL_CHARS_MAX - 1).collect();
            cut.push('…');
            cut
        } else {
            one_line
        }
    };
    let rows: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(|c| clip(c)).collect()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(cell.chars().count());
            let _ = write!(text, "{cell}{}  ", " ".repeat(pad));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in &rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// A JSON value as a cell: strings bare, null as `-`.
pub fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(s) if s.is_empty() => "-".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_long_cells_are_clipped() {
        let long = "x".repeat(100);
        let t = table(&["ID", "STATE"], &[vec!["a".into(), "completed".into()], vec!["bbbb".into(), long]]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "ID    STATE");
        assert_eq!(lines[1], "a     completed");
        assert!(lines[2].starts_with("bbbb  xxx") && lines[2].ends_with('…'));
        assert_eq!(lines[2].chars().count(), 6 + CELL_CHARS_MAX);
    }

    #[test]
    fn cells_of_json() {
        assert_eq!(cell(&serde_json::json!(null)), "-");
        assert_eq!(cell(&serde_json::json!("a")), "a");
        assert_eq!(cell(&serde_json::json!(3)), "3");
    }
}
