//! Liquid's `for` block, with limits.
//!
//! The `liquid` crate has no hooks for limits: its `for` collects a range
//! into a vector before the first iteration (`(1..2000000000)` asks for
//! tens of gigabytes and aborts the process) and runs nested loops without
//! bound. This is the stdlib's `for` (liquid-lib 0.26, MIT), taking every
//! iteration from a budget kept in the render's registers: a range is
//! counted against it before it is built, and each iteration checks the
//! render's time. A template over budget fails with an error, and so its
//! record fails alone (`TEMPLATE_ERROR`). Output size is capped by the
//! writer (see `template.rs`).

use std::io::Write;
use std::time::{Duration, Instant};

use liquid_core::model::{KString, KStringRef, Object, Scalar, Value, ValueCow, ValueView};
use liquid_core::parser::{BlockElement, TryMatchToken};
use liquid_core::runtime::{Interrupt, InterruptRegister, StackFrame};
use liquid_core::{
    BlockReflection, Error, Expression, Language, ParseBlock, Renderable, Result, Runtime, TagBlock, TagTokenIter, Template,
};

/// Most loop iterations in one render, over all loops (nested ones count
/// each inner iteration).
pub const MAX_ITERATIONS: u64 = 100_000;
/// Longest time one render may take.
pub const MAX_RENDER_TIME: Duration = Duration::from_secs(1);

/// What one render has used; a fresh one per render (registers are per render).
#[derive(Default)]
struct Budget {
    iterations: u64,
    started: Option<Instant>,
}

/// Counts `n` iterations (or one, with `n == 1`, per loop step) against the budget.
fn charge(runtime: &dyn Runtime, n: u64) -> Result<()> {
    let mut b = runtime.registers().get_mut::<Budget>();
    let started = *b.started.get_or_insert_with(Instant::now);
    b.iterations = b.iterations.saturating_add(n);
    if b.iterations > MAX_ITERATIONS {
        return Err(Error::with_msg(format!("the template's loops run more than {MAX_ITERATIONS} iterations for this row")));
    }
    if started.elapsed() > MAX_RENDER_TIME {
        return Err(Error::with_msg(format!("the template ran longer than {} s for this row", MAX_RENDER_TIME.as_secs())));
    }
    Ok(())
}

#[derive(Copy, Clone, Debug, Default)]
pub struct ForBlock;

impl BlockReflection for ForBlock {
    fn start_tag(&self) -> &str {
        "for"
    }
    fn end_tag(&self) -> &str {
        "endfor"
    }
    fn description(&self) -> &str {
        "a loop, within retl's limits"
    }
}

enum Source {
    Array(Expression),
    Counted(Expression, Expression),
}

struct For {
    var_name: KString,
    source: Source,
    item_template: Template,
    else_template: Option<Template>,
    limit: Option<Expression>,
    offset: Option<Expression>,
    reversed: bool,
}

impl std::fmt::Debug for For {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "for {}", self.var_name)
    }
}

impl ParseBlock for ForBlock {
    fn parse(&self, mut arguments: TagTokenIter<'_>, mut tokens: TagBlock<'_, '_>, options: &Language) -> Result<Box<dyn Renderable>> {
        let var_name = arguments.expect_next("Identifier expected.")?.expect_identifier().into_result()?;
        arguments.expect_next("\"in\" expected.")?.expect_str("in").into_result_custom_msg("\"in\" expected.")?;
        let source = match arguments.expect_next("Array or range expected.")?.expect_value() {
            TryMatchToken::Matches(array) => Source::Array(array),
            TryMatchToken::Fails(range) => match range.expect_range() {
                TryMatchToken::Matches((start, stop)) => Source::Counted(start, stop),
                TryMatchToken::Fails(range) => return range.raise_error().into_err(),
            },
        };
        let (mut limit, mut offset, mut reversed) = (None, None, false);
        while let Some(token) = arguments.next() {
            match token.as_str() {
                "limit" => limit = Some(attr(&mut arguments)?),
                "offset" => offset = Some(attr(&mut arguments)?),
                "reversed" => reversed = true,
                _ => return token.raise_custom_error("\"limit\", \"offset\" or \"reversed\" expected.").into_err(),
            }
        }
        arguments.expect_nothing()?;
        let mut items = Vec::new();
        let mut else_template = None;
        while let Some(element) = tokens.next()? {
            match element {
                BlockElement::Tag(mut tag) if tag.name() == "else" => {
                    tag.tokens().expect_nothing()?;
                    else_template = Some(Template::new(tokens.parse_all(options)?));
                    break;
                }
                BlockElement::Tag(tag) => items.push(tag.parse(&mut tokens, options)?),
                element => items.push(element.parse(&mut tokens, options)?),
            }
        }
        tokens.assert_empty();
        Ok(Box::new(For {
            var_name: KString::from_ref(var_name),
            source,
            item_template: Template::new(items),
            else_template,
            limit,
            offset,
            reversed,
        }))
    }

    fn reflection(&self) -> &dyn BlockReflection {
        self
    }
}

fn attr(arguments: &mut TagTokenIter<'_>) -> Result<Expression> {
    arguments.expect_next("\":\" expected.")?.expect_str(":").into_result_custom_msg("\":\" expected.")?;
    arguments.expect_next("Value expected.")?.expect_value().into_result()
}

fn whole_number(e: &Expression, runtime: &dyn Runtime) -> Result<i64> {
    let v = e.evaluate(runtime)?;
    v.as_scalar().and_then(|s| s.to_integer()).ok_or_else(|| Error::with_msg(format!("Expected whole number, found `{}`", v.type_name())))
}

impl Renderable for For {
    fn render_to(&self, writer: &mut dyn Write, runtime: &dyn Runtime) -> Result<()> {
        let array_value;
        let mut items: Vec<ValueCow<'_>> = match &self.source {
            Source::Counted(start, stop) => {
                let (start, stop) = (whole_number(start, runtime)?, whole_number(stop, runtime)?);
                let len = u64::try_from(i128::from(stop) - i128::from(start) + 1).unwrap_or(0);
                // Counted before the range is built: a huge range is refused, not allocated.
                charge(runtime, len)?;
                (start..=stop).map(|x| Value::scalar(x).into()).collect()
            }
            Source::Array(e) => {
                array_value = e.evaluate(runtime)?;
                let items: Vec<ValueCow<'_>> = if let Some(a) = array_value.as_array() {
                    a.values().map(ValueCow::Borrowed).collect()
                } else if let Some(o) = array_value.as_object() {
                    o.iter().map(|(k, v)| Value::Array(vec![Value::scalar(k.into_owned()), v.to_value()]).into()).collect()
                } else if array_value.is_state() || array_value.is_nil() {
                    Vec::new()
                } else {
                    return Err(Error::with_msg(format!("Expected array, found `{}`", array_value.type_name())));
                };
                charge(runtime, items.len() as u64)?;
                items
            }
        };
        let limit = self.limit.as_ref().map(|l| whole_number(l, runtime)).transpose()?;
        let offset = self.offset.as_ref().map(|o| whole_number(o, runtime)).transpose()?.unwrap_or(0).max(0) as usize;
        items.drain(0..offset.min(items.len()));
        if let Some(limit) = limit {
            items.truncate(limit.max(0) as usize);
        }
        if self.reversed {
            items.reverse();
        }
        if items.is_empty() {
            if let Some(t) = &self.else_template {
                t.render_to(writer, runtime)?;
            }
            return Ok(());
        }
        let len = items.len() as i64;
        let parent = runtime.try_get(&[Scalar::new("forloop")]).map(|p| p.to_value());
        for (i, v) in items.into_iter().enumerate() {
            charge(runtime, 0)?;
            let i = i as i64;
            let mut forloop = Object::new();
            for (k, n) in [("length", len), ("index0", i), ("index", i + 1), ("rindex0", len - i - 1), ("rindex", len - i)] {
                forloop.insert(k.into(), Value::scalar(n));
            }
            forloop.insert("first".into(), Value::scalar(i == 0));
            forloop.insert("last".into(), Value::scalar(i == len - 1));
            if let Some(p) = &parent {
                forloop.insert("parentloop".into(), p.clone());
            }
            let mut root = std::collections::HashMap::<KStringRef<'_>, &dyn ValueView>::new();
            root.insert("forloop".into(), &forloop);
            root.insert(self.var_name.as_ref(), &v);
            let scope = StackFrame::new(runtime, &root);
            self.item_template.render_to(writer, &scope)?;
            if let Some(Interrupt::Break) = scope.registers().get_mut::<InterruptRegister>().reset() {
                break;
            }
        }
        Ok(())
    }
}

/// `tablerow` builds HTML tables, which no field needs, and collects its
/// range the way the stdlib's `for` does: refused when the Mapping is read.
#[derive(Copy, Clone, Debug, Default)]
pub struct NoTableRow;

impl BlockReflection for NoTableRow {
    fn start_tag(&self) -> &str {
        "tablerow"
    }
    fn end_tag(&self) -> &str {
        "endtablerow"
    }
    fn description(&self) -> &str {
        "not supported in field templates"
    }
}

impl ParseBlock for NoTableRow {
    fn parse(&self, _: TagTokenIter<'_>, _: TagBlock<'_, '_>, _: &Language) -> Result<Box<dyn Renderable>> {
        Err(Error::with_msg("tablerow is not supported in field templates; use for"))
    }

    fn reflection(&self) -> &dyn BlockReflection {
        self
    }
}
