//! Liquid filters and `capture`, with limits on the values they build.
//!
//! Without a loop, a template can still build values that grow
//! exponentially (`{% assign s = s | append: s %}` forty times, a `replace`
//! whose replacement is large, `capture` of a long loop), and the `liquid`
//! crate has no hook to stop an allocation. So every stdlib filter is
//! wrapped: before it runs, its input times its largest argument must stay
//! within [`MAX_WORK_BYTES`] (that bounds what `replace` or `join` can
//! build), and its result must stay within [`MAX_VALUE_BYTES`]; `capture`
//! stops at [`MAX_VALUE_BYTES`] too. Past a limit the render fails, and so
//! the record fails with `TEMPLATE_ERROR`.

use std::io::Write;

use liquid_core::model::{KString, Value, ValueView};
use liquid_core::parser::FilterArguments;
use liquid_core::{
    BlockReflection, Error, Expression, Filter, FilterReflection, Language, ParseBlock, ParseFilter, Renderable, Result, Runtime, TagBlock,
    TagTokenIter, Template,
};

/// Largest value a filter or `capture` may produce.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Largest input × (1 + largest argument) a filter may start on.
pub const MAX_WORK_BYTES: usize = 64 * 1024 * 1024;

/// The size of a value as text, roughly: what building it costs.
fn size(v: &dyn ValueView) -> usize {
    if let Some(a) = v.as_array() {
        a.values().map(|e| size(e) + 1).fold(0, usize::saturating_add)
    } else if let Some(o) = v.as_object() {
        o.iter().map(|(k, v)| k.len() + size(v) + 1).fold(0, usize::saturating_add)
    } else {
        v.to_kstr().len()
    }
}

/// A stdlib filter within the limits.
#[derive(Clone)]
pub struct Bounded<F>(pub F);

impl<F: ParseFilter + Clone + 'static> ParseFilter for Bounded<F> {
    fn parse(&self, arguments: FilterArguments<'_>) -> Result<Box<dyn Filter>> {
        // The arguments are kept to weigh them; the filter gets them as they came.
        let positional: Vec<Expression> = arguments.positional.collect();
        let keyword: Vec<(&str, Expression)> = arguments.keyword.collect();
        let mut args: Vec<Expression> = positional.clone();
        args.extend(keyword.iter().map(|(_, e)| e.clone()));
        let inner =
            self.0.parse(FilterArguments { positional: Box::new(positional.into_iter()), keyword: Box::new(keyword.into_iter()) })?;
        Ok(Box::new(BoundedFilter { name: KString::from_ref(self.0.reflection().name()), inner, args }))
    }

    fn reflection(&self) -> &dyn FilterReflection {
        self.0.reflection()
    }
}

struct BoundedFilter {
    name: KString,
    inner: Box<dyn Filter>,
    args: Vec<Expression>,
}

impl std::fmt::Debug for BoundedFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.name)
    }
}

impl std::fmt::Display for BoundedFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.inner, f)
    }
}

impl Filter for BoundedFilter {
    fn evaluate(&self, input: &dyn ValueView, runtime: &dyn Runtime) -> Result<Value> {
        let mut largest = 0;
        for a in &self.args {
            largest = largest.max(size(a.evaluate(runtime)?.as_view()));
        }
        if size(input).saturating_mul(largest.saturating_add(1)) > MAX_WORK_BYTES {
            return Err(Error::with_msg(format!("the filter {} would build a value larger than the template limit", self.name)));
        }
        let out = self.inner.evaluate(input, runtime)?;
        if size(&out) > MAX_VALUE_BYTES {
            return Err(Error::with_msg(format!("the filter {} built a value larger than {MAX_VALUE_BYTES} bytes", self.name)));
        }
        Ok(out)
    }
}

/// `capture`, stopping at [`MAX_VALUE_BYTES`].
#[derive(Copy, Clone, Debug, Default)]
pub struct CaptureBlock;

impl BlockReflection for CaptureBlock {
    fn start_tag(&self) -> &str {
        "capture"
    }
    fn end_tag(&self) -> &str {
        "endcapture"
    }
    fn description(&self) -> &str {
        "captures text into a variable, within retl's limits"
    }
}

impl ParseBlock for CaptureBlock {
    fn parse(&self, mut arguments: TagTokenIter<'_>, mut tokens: TagBlock<'_, '_>, options: &Language) -> Result<Box<dyn Renderable>> {
        let id: KString = arguments.expect_next("Identifier expected")?.expect_identifier().into_result()?.to_owned().into();
        arguments.expect_nothing()?;
        let template = Template::new(tokens.parse_all(options)?);
        tokens.assert_empty();
        Ok(Box::new(Capture { id, template }))
    }

    fn reflection(&self) -> &dyn BlockReflection {
        self
    }
}

struct Capture {
    id: KString,
    template: Template,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "capture {}", self.id)
    }
}

impl Renderable for Capture {
    fn render_to(&self, _: &mut dyn Write, runtime: &dyn Runtime) -> Result<()> {
        let mut out = super::template::Capped::new(MAX_VALUE_BYTES);
        match self.template.render_to(&mut out, runtime) {
            _ if out.over => return Err(Error::with_msg(format!("capture {} is larger than {MAX_VALUE_BYTES} bytes", self.id))),
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        let text = String::from_utf8(out.bytes).map_err(|_| Error::with_msg("captured text is not UTF-8"))?;
        runtime.set_global(self.id.clone(), Value::scalar(text));
        Ok(())
    }
}

/// Registers the bounded filters and `capture` over the stdlib's.
pub fn register(builder: liquid::ParserBuilder) -> liquid::ParserBuilder {
    use liquid_lib::stdlib as s;
    macro_rules! bounded {
        ($b:expr, $($f:ident),*) => { $b$(.filter(Bounded(s::$f)))* };
    }
    let b = builder.block(CaptureBlock);
    bounded!(
        b,
        Abs,
        Append,
        AtLeast,
        AtMost,
        Capitalize,
        Ceil,
        Compact,
        Concat,
        Date,
        Default,
        DividedBy,
        Downcase,
        Escape,
        EscapeOnce,
        First,
        Floor,
        Join,
        Last,
        Lstrip,
        Map,
        Minus,
        Modulo,
        NewlineToBr,
        Plus,
        Prepend,
        Remove,
        RemoveFirst,
        Replace,
        ReplaceFirst,
        Reverse,
        Round,
        Rstrip,
        Size,
        Slice,
        Sort,
        SortNatural,
        Split,
        Strip,
        StripHtml,
        StripNewlines,
        Times,
        Truncate,
        TruncateWords,
        Uniq,
        Upcase,
        UrlDecode,
        UrlEncode,
        Where
    )
}
