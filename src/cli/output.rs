//! Output formats shared by every command: aligned tables for people, JSON for programs.
//! Formatting only; commands decide what to print.

use std::str::FromStr;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    #[default]
    Table,
    Json,
}

impl FromStr for Output {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Output::Table),
            "json" => Ok(Output::Json),
            other => Err(format!(
                "unknown output format {other:?}: expected table or json"
            )),
        }
    }
}

/// Prints `value` as pretty JSON.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints rows under headers, columns padded to their widest cell.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths.get(i).copied().unwrap_or(0)))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Prints one record as `key: value` lines (table) or JSON.
pub fn print_record<T: Serialize>(output: Output, value: &T) -> anyhow::Result<()> {
    match output {
        Output::Json => print_json(value),
        Output::Table => {
            let json = serde_json::to_value(value)?;
            if let serde_json::Value::Object(map) = json {
                let width = map.keys().map(String::len).max().unwrap_or(0);
                for (key, value) in map {
                    let text = match value {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Null => "-".to_owned(),
                        other => other.to_string(),
                    };
                    println!("{key:<width$}  {text}");
                }
            }
            Ok(())
        }
    }
}
