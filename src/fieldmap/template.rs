//! Liquid templates in field mappings (the template language Hightouch and
//! Census users already write), through the `liquid` crate.

use liquid::model::{Object, Value as LiquidValue};
use serde_json::Value;

use crate::warehouse::Row;

/// A parsed template.
pub struct Template {
    inner: liquid::Template,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Template")
    }
}

/// Parses a template; the error says what is wrong with it.
pub fn parse(source: &str) -> Result<Template, String> {
    let parser = liquid::ParserBuilder::with_stdlib().build().map_err(|e| e.to_string())?;
    parser.parse(source).map(|inner| Template { inner }).map_err(|e| one_line(&e.to_string()))
}

impl Template {
    /// Renders with the row as `row` and, inside an array, the element as `item`.
    pub fn render(&self, row: &Row, item: Option<&Value>) -> Result<String, String> {
        let mut globals = Object::new();
        globals.insert("row".into(), to_liquid(&Value::Object(row.clone()))?);
        if let Some(item) = item {
            globals.insert("item".into(), to_liquid(item)?);
        }
        self.inner.render(&globals).map_err(|e| one_line(&e.to_string()))
    }
}

fn to_liquid(v: &Value) -> Result<LiquidValue, String> {
    liquid::model::to_value(v).map_err(|e| e.to_string())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_row_and_item_and_reports_unknown_variables() {
        let row = json!({"first": "ada", "plan": null}).as_object().unwrap().clone();
        let t = parse("Hi {{ row.first | capitalize }} {{ item.sku }}").unwrap();
        assert_eq!(t.render(&row, Some(&json!({"sku": "A1"}))).unwrap(), "Hi Ada A1");
        let t = parse("{{ row.missing }}").unwrap();
        assert!(t.render(&row, None).is_err());
        assert!(parse("{{ row.first ").is_err());
    }
}
