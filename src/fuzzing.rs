//! Entry points of the fuzz targets (fuzz/, libFuzzer on nightly) and of
//! the short deterministic run of the same inputs in the test suite
//! (tests/fuzz_inputs.rs, on stable): whatever bytes they get, they return;
//! a panic, an abort or a run that does not end is the bug they look for.

use std::path::Path;

/// The first line of `data` and the rest (the rest empty without a newline).
fn split(data: &[u8]) -> Option<(&str, &str)> {
    let text = std::str::from_utf8(data).ok()?;
    Some(text.split_once('\n').unwrap_or((text, "")))
}

fn row(json: &str) -> crate::record::Row {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(row)) => row,
        _ => serde_json::Map::new(),
    }
}

/// A field path (first line) read out of a row (the rest, as JSON).
pub fn field_paths(data: &[u8]) {
    let Some((from, rest)) = split(data) else { return };
    let row = row(rest);
    let columns: Vec<String> = row.keys().cloned().collect();
    if let Some(path) = crate::fieldmap::value::ValuePath::parse(from, &columns) {
        let _ = path.get_in_row(&row);
    }
    let _ = crate::fieldmap::value::ValuePath::within_element(from).get_in_object(&row);
}

/// A Liquid template (first line) rendered against a row (the rest, as JSON).
pub fn templates(data: &[u8]) {
    let Some((source, rest)) = split(data) else { return };
    if let Ok(t) = crate::fieldmap::template::parse(source) {
        let _ = t.render(&row(rest), None);
    }
}

/// Manifests read from a file's text, as `retl run -f` reads them.
pub fn manifests(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut m = crate::local::Manifests::default();
    let _ = m.add_text(text, Path::new("fuzz.yaml"), Path::new("."));
}
