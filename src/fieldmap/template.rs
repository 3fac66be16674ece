//! Liquid templates in field mappings (the template language Hightouch and
//! Census users already write), through the `liquid` crate.
//!
//! A template runs within limits, so that no row can abort the process or
//! hold up a sync: loops take at most [`MAX_ITERATIONS`] iterations and
//! [`MAX_RENDER_TIME`] per render (see `liquid_for.rs`, since the crate has
//! no hooks for either), filters and `capture` build values of at most
//! 1 MiB (see `liquid_bounds.rs`), and the output stops at
//! [`MAX_OUTPUT_BYTES`]. A render past a limit is an error: that record
//! fails with `TEMPLATE_ERROR`.

use liquid::model::{Object, Value as LiquidValue};
use serde_json::Value;

use super::liquid_for::{ForBlock, NoTableRow};
pub use super::liquid_for::{MAX_ITERATIONS, MAX_RENDER_TIME};
use crate::record::Row;

/// Most bytes one render may write.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;

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
    // The stdlib with `for` replaced by one within limits (registering a
    // block under a name replaces the stdlib's).
    let builder = liquid::ParserBuilder::with_stdlib().block(ForBlock).block(NoTableRow);
    let parser = super::liquid_bounds::register(builder).build().map_err(|e| e.to_string())?;
    // liquid-core 0.26 panics on an integer literal past i64 (`(1..99999999999999999999)`,
    // found by fuzzing): a template that cannot be parsed is an error, not a crash.
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parser.parse(source)))
        .map_err(|_| "the template cannot be parsed: a number in it is out of range (at most 9223372036854775807)".to_string())?;
    parsed.map(|inner| Template { inner }).map_err(|e| one_line(&e.to_string()))
}

impl Template {
    /// Renders with the row as `row` and, inside an array, the element as `item`.
    pub fn render(&self, row: &Row, item: Option<&Value>) -> Result<String, String> {
        let mut globals = Object::new();
        // JSON held in text columns is parsed, as paths (`from: attrs.company`)
        // parse it: `{{ row.attrs.company }}` reads the same value.
        let row: serde_json::Map<String, Value> = row.iter().map(|(k, v)| (k.clone(), super::value::json_container(v.clone()))).collect();
        globals.insert("row".into(), to_liquid(&Value::Object(row))?);
        if let Some(item) = item {
            globals.insert("item".into(), to_liquid(item)?);
        }
        let mut out = Capped::new(MAX_OUTPUT_BYTES);
        match self.inner.render_to(&mut out, &globals) {
            _ if out.over => Err(format!("the template's output is larger than {MAX_OUTPUT_BYTES} bytes for this row")),
            Err(e) => Err(one_line(&e.to_string())),
            Ok(()) => String::from_utf8(out.bytes).map_err(|_| "the template's output is not UTF-8 text".to_string()),
        }
    }
}

/// A buffer that refuses to grow past its limit.
pub(super) struct Capped {
    pub(super) bytes: Vec<u8>,
    pub(super) over: bool,
    max: usize,
}

impl Capped {
    pub(super) fn new(max: usize) -> Capped {
        Capped { bytes: Vec::new(), over: false, max }
    }
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.max {
            self.over = true;
            return Err(std::io::Error::other("output limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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

    #[test]
    fn a_number_past_i64_is_an_error_not_a_panic() {
        // Found by the templates fuzz target (fuzz/seeds/templates/huge_literal).
        let e = parse("{% for i in (1..1111111111111111111140000) %}x{% endfor %}").err().unwrap_or_default();
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn runaway_templates_fail_and_ordinary_loops_work() {
        let row = json!({"n": 3, "tags": ["a", "b"], "big": "x".repeat(500)}).as_object().unwrap().clone();
        let ok =
            parse("{% for t in row.tags %}{{ forloop.index }}{{ t }}{% endfor %}|{% for i in (1..row.n) reversed %}{{ i }}{% endfor %}")
                .unwrap();
        assert_eq!(ok.render(&row, None).unwrap(), "1a2b|321");
        let started = std::time::Instant::now();
        // A loaded machine may reach the time limit first; any limit will do.
        for (source, says) in [
            ("{% for i in (1..2000000000) %}x{% endfor %}", "iterations"),
            ("{% for i in (1..40000) %}{% for j in (1..40000) %}{% endfor %}{% endfor %}", "iterations"),
            ("{% for i in (1..90000) %}{{ row.big }}{% endfor %}", "larger than"),
        ] {
            let err = parse(source).unwrap().render(&row, None).unwrap_err();
            assert!(err.contains(says) || err.contains("longer than"), "{source}: {err}");
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(parse("{% tablerow i in (1..3) %}{{ i }}{% endtablerow %}").unwrap_err().contains("tablerow"));
        // Values that grow without a loop: each filter and capture is bounded.
        let doubling = format!("{{% assign s = row.big %}}{}{{{{ s | size }}}}", "{% assign s = s | append: s %}".repeat(40));
        let capture = "{% capture c %}{% for i in (1..5000) %}{{ row.big }}{% endfor %}{% endcapture %}{{ c | size }}";
        let replace = "{% capture r %}{% for i in (1..1500) %}{{ row.big }}{% endfor %}{% endcapture %}{{ row.big | replace: 'x', r }}";
        for source in [doubling.as_str(), capture, replace] {
            let result = parse(source).unwrap().render(&row, None).map(|ok| ok.len());
            let err = result.expect_err(source);
            assert!(err.contains("larger than") || err.contains("limit"), "{source}: {err}");
        }
        let ordinary =
            parse("{{ row.tags | join: ', ' }} {{ 'a-b' | replace: '-', '+' | upcase }} {% capture c %}{{ row.n }}{% endcapture %}{{ c }}")
                .unwrap();
        assert_eq!(ordinary.render(&row, None).unwrap(), "a, b A+B 3");
    }
}
