//! Prompt templates with `{field}` placeholders; `{{` and `}}` stand for literal braces.
//!
//! A template is parsed once ([`Template::parse`]) and rendered per input item
//! ([`Template::render`]) from a lookup of that item's fields.
//!
//! It must not know the input formats or the request body: it renders text from whatever lookup it
//! is given.

use std::borrow::Cow;

/// A parsed prompt template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Text copied as is (escapes already resolved).
    Literal(String),
    /// A `{name}` placeholder.
    Field(String),
}

/// A malformed template (the template as a whole, not one input line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{` with no closing `}`.
    #[error("unclosed `{{` at character {0} (write `{{{{` for a literal brace)")]
    Unclosed(usize),
    /// `}` with no opening `{`.
    #[error("unmatched `}}` at character {0} (write `}}}}` for a literal brace)")]
    Unmatched(usize),
    /// `{}`: a placeholder without a name.
    #[error("empty placeholder `{{}}` at character {0}")]
    Empty(usize),
    /// `{` inside a placeholder.
    #[error("`{{` inside a placeholder at character {0}")]
    Nested(usize),
}

/// A placeholder the item being rendered has no field for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPlaceholder(pub String);

impl Template {
    /// Parses `source`; character positions in errors are 1-based.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut chars = source.chars().enumerate().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, n)| n) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|&(_, n)| n) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(TemplateError::Unmatched(i + 1)),
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            None => return Err(TemplateError::Unclosed(i + 1)),
                            Some((_, '}')) => break,
                            Some((j, '{')) => return Err(TemplateError::Nested(j + 1)),
                            Some((_, ch)) => name.push(ch),
                        }
                    }
                    if name.is_empty() {
                        return Err(TemplateError::Empty(i + 1));
                    }
                    if !literal.is_empty() {
                        segments.push(Segment::Literal(std::mem::take(&mut literal)));
                    }
                    segments.push(Segment::Field(name));
                }
                _ => literal.push(c),
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Template { segments })
    }

    /// The placeholder names, in order of appearance (repeats included).
    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Field(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Renders the template, asking `lookup` for each placeholder's value; fails on the first
    /// placeholder `lookup` does not know.
    pub fn render<'a, F>(&self, mut lookup: F) -> Result<String, UnknownPlaceholder>
    where
        F: FnMut(&str) -> Option<Cow<'a, str>>,
    {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Field(name) => match lookup(name) {
                    Some(value) => out.push_str(&value),
                    None => return Err(UnknownPlaceholder(name.clone())),
                },
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, field: &str, value: &str) -> Result<String, UnknownPlaceholder> {
        let template = Template::parse(source).map_err(|e| UnknownPlaceholder(e.to_string()))?;
        template.render(|name| (name == field).then(|| Cow::Owned(value.to_owned())))
    }

    #[test]
    fn substitutes_and_escapes() {
        assert_eq!(
            render("About {line}: {{json}} }}", "line", "cats"),
            Ok("About cats: {json} }".to_owned())
        );
        assert_eq!(render("{x}{x}", "x", "ab"), Ok("abab".to_owned()));
        assert_eq!(render("", "x", "ab"), Ok(String::new()));
    }

    #[test]
    fn unknown_placeholder_is_named() {
        assert_eq!(
            render("a {topic} b", "line", "x"),
            Err(UnknownPlaceholder("topic".to_owned()))
        );
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(Template::parse("ab {x"), Err(TemplateError::Unclosed(4)));
        assert_eq!(Template::parse("ab } x"), Err(TemplateError::Unmatched(4)));
        assert_eq!(Template::parse("{}"), Err(TemplateError::Empty(1)));
        assert_eq!(Template::parse("{a{b}"), Err(TemplateError::Nested(3)));
    }

    #[test]
    fn lists_placeholders() {
        let t = Template::parse("{a} {{b}} {c}").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.placeholders().collect::<Vec<_>>(), vec!["a", "c"]);
    }
}
