//! Printing results: JSON (2-space indent, like xo-cli) for scripts, readable tables on a terminal.

use std::io::{IsTerminal, Write};

use serde_json::{Map, Value};

/// How to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Pretty JSON.
    Json,
    /// Tables / plain text.
    Table,
}

impl Format {
    /// `--json` wins, then `--table`, else tables on a terminal and JSON otherwise.
    pub fn choose(json: bool, table: bool) -> Format {
        if json {
            Format::Json
        } else if table || std::io::stdout().is_terminal() {
            Format::Table
        } else {
            Format::Json
        }
    }
}

/// Writes to stdout, ignoring a closed pipe (`xo-cli … | head`).
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

/// Renders a value in a format (with a final newline).
pub fn render(v: &Value, format: Format) -> String {
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
            s.push('\n');
            s
        }
        Format::Table => render_table(v),
    }
}

const MAX_CELL: usize = 48;

fn cell(v: &Value) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let s = s.replace(['\n', '\t'], " ");
    if s.chars().count() > MAX_CELL {
        let mut t: String = s.chars().take(MAX_CELL - 1).collect();
        t.push('…');
        t
    } else {
        s
    }
}

/// Columns first when present, in this order.
const PRIORITY: &[&str] = &[
    "id",
    "name",
    "name_label",
    "email",
    "type",
    "power_state",
    "permission",
    "status",
];

fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(widths[i] - c.chars().count()));
            }
        }
        let mut s = s.trim_end().to_owned();
        s.push('\n');
        s
    };
    let mut out = line(header);
    out.push_str(&line(
        &widths.iter().map(|w| "─".repeat(*w)).collect::<Vec<_>>(),
    ));
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

fn objects_table(rows: &[&Map<String, Value>], key: Option<&[String]>) -> String {
    let mut cols: Vec<String> = Vec::new();
    for p in PRIORITY {
        if rows.iter().any(|r| r.contains_key(*p)) {
            cols.push((*p).to_owned());
        }
    }
    for r in rows {
        for k in r.keys() {
            if !cols.contains(k) {
                cols.push(k.clone());
            }
        }
    }
    let mut header = Vec::new();
    if key.is_some() {
        header.push("key".to_owned());
    }
    header.extend(cols.iter().cloned());
    let body: Vec<Vec<String>> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut line = Vec::new();
            if let Some(keys) = key {
                line.push(keys[i].clone());
            }
            line.extend(cols.iter().map(|c| r.get(c).map(cell).unwrap_or_default()));
            line
        })
        .collect();
    table(&header, &body)
}

fn render_table(v: &Value) -> String {
    match v {
        Value::Array(items) if items.is_empty() => "(empty)\n".into(),
        Value::Array(items) if items.iter().all(Value::is_object) => {
            let rows: Vec<&Map<String, Value>> =
                items.iter().filter_map(Value::as_object).collect();
            objects_table(&rows, None)
        }
        Value::Array(items) => items.iter().map(|i| format!("{}\n", cell(i))).collect(),
        Value::Object(m) if m.is_empty() => "(empty)\n".into(),
        Value::Object(m) if m.values().all(Value::is_object) && m.len() > 1 => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let rows: Vec<&Map<String, Value>> = m.values().filter_map(Value::as_object).collect();
            objects_table(&rows, Some(&keys))
        }
        Value::Object(m) => {
            let rows: Vec<Vec<String>> = m.iter().map(|(k, v)| vec![k.clone(), cell(v)]).collect();
            table(&["property".into(), "value".into()], &rows)
        }
        Value::String(s) => format!("{s}\n"),
        other => format!("{other}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_is_pretty() {
        assert_eq!(
            render(&json!({"a": [1]}), Format::Json),
            "{\n  \"a\": [\n    1\n  ]\n}\n"
        );
        assert_eq!(render(&json!(true), Format::Json), "true\n");
    }

    #[test]
    fn tables() {
        let t = render(
            &json!([{"name_label": "web", "id": "1", "extra": {"x": 1}}, {"id": "22", "name_label": "db"}]),
            Format::Table,
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "id  name_label  extra");
        assert!(lines[1].starts_with("──"));
        assert_eq!(lines[2], "1   web         {\"x\":1}");
        assert_eq!(lines[3], "22  db");
        let t = render(&json!({"id": "u", "email": "a@b"}), Format::Table);
        assert!(t.contains("email     a@b"), "{t}");
        assert_eq!(render(&json!("text"), Format::Table), "text\n");
        assert_eq!(render(&json!([]), Format::Table), "(empty)\n");
        let long = "x".repeat(100);
        assert!(render(&json!([long]), Format::Table)
            .trim_end()
            .ends_with('…'));
        let t = render(
            &json!({"a": {"type": "VM"}, "b": {"type": "host"}}),
            Format::Table,
        );
        assert!(t.starts_with("key  type"), "{t}");
    }
}
