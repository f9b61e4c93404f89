//! Message templates: text with `{{ variables }}` from an event's `data`,
//! rendered whole or not at all (a missing variable is an error naming it).
//!
//! The syntax is minijinja's (Jinja2): `{{ name }}`, `{{ name | default("друг") }}`,
//! `{% if total > 1000 %}...{% endif %}`. Undefined is strict: a variable the
//! data lacks fails the render wherever it is read (printed, filtered, tested
//! in a condition) unless `default` gives it a value. Nothing is HTML-escaped
//! (it is SMS). A source is at most [`MAX_SOURCE_CHARS`] characters, and a
//! render runs on a fuel and recursion budget and may make at most
//! [`MAX_OUTPUT_CHARS`] characters, so a rule cannot hang the ingest.
//!
//! Filters in the recipient's locale (see [`super::format`]): `money`
//! (`{{ total | money }}`, `{{ total | money("USD") }}`), `date`, `time`,
//! `datetime` (of an RFC 3339 string or unix seconds, in the recipient's
//! zone; `date("short")` → `05.12`) and `plural`
//! (`{{ n }} {{ n | plural("товар", "товара", "товаров") }}`).

use super::format::{self, Locale, Moment};
use chrono::Utc;
use minijinja::value::{Rest, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior, Value as JValue};
use serde_json::Value;

/// Longest template source accepted, in characters.
pub const MAX_SOURCE_CHARS: usize = 2000;
/// Longest text a render may make, in characters.
pub const MAX_OUTPUT_CHARS: usize = 10_000;
/// Instructions one render may run.
const FUEL: u64 = 100_000;
const RECURSION_LIMIT: usize = 32;
/// Context keys the filters read the render's locale and zone from.
const LOCALE_KEY: &str = "__smsgw_locale";
const TZ_KEY: &str = "__smsgw_tz";

/// A template that compiled: parsed once, rendered per event from its own
/// environment (which holds just it).
#[derive(Clone)]
pub struct Template {
    source: String,
    variables: Vec<String>,
    paths: Vec<String>,
    env: std::sync::Arc<Environment<'static>>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template").field("source", &self.source).finish()
    }
}

/// The name a template has in its own environment.
const NAME: &str = "t";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template does not parse (or is too long); says where and why.
    #[error("{0}")]
    Syntax(String),
    /// Rendering needed a variable the event's data does not have.
    #[error("variable `{0}` is missing from the event's data")]
    Missing(String),
    /// Rendering failed otherwise (a filter given the wrong kind of value).
    #[error("{0}")]
    Render(String),
}

/// An environment with the settings and filters every template renders with.
fn env() -> Environment<'static> {
    {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        env.set_keep_trailing_newline(true);
        env.add_filter("money", money);
        env.add_filter("date", |s: &State, v: JValue, f: Option<String>| moment(s, v, f, Moment::Date));
        env.add_filter("time", |s: &State, v: JValue, f: Option<String>| moment(s, v, f, Moment::Time));
        env.add_filter("datetime", |s: &State, v: JValue, f: Option<String>| moment(s, v, f, Moment::DateTime));
        env.add_filter("plural", plural);
        env
    }
}

fn locale(state: &State) -> Locale {
    Locale::parse(state.lookup(LOCALE_KEY).as_ref().and_then(|v| v.as_str()).unwrap_or("ru"))
}

fn invalid(msg: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg)
}

/// Strict undefined reaches a filter as a value: it fails here, so the
/// render names the missing variable.
fn defined(v: &JValue) -> Result<(), Error> {
    if v.is_undefined() { Err(Error::from(ErrorKind::UndefinedError)) } else { Ok(()) }
}

/// A number, or a string that holds one.
fn number(v: &JValue, filter: &str) -> Result<f64, Error> {
    defined(v)?;
    if v.kind() == ValueKind::Number {
        return f64::try_from(v.clone()).map_err(|_| invalid(format!("{filter} needs a number, got {v}")));
    }
    v.as_str()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|n| n.is_finite())
        .ok_or_else(|| invalid(format!("{filter} needs a number, got {:?}", v.to_string())))
}

fn money(state: &State, v: JValue, currency: Option<String>) -> Result<String, Error> {
    let amount = number(&v, "money")?;
    Ok(format::money(amount, currency.as_deref().unwrap_or("RUB"), locale(state)))
}

fn moment(state: &State, v: JValue, fmt: Option<String>, what: Moment) -> Result<String, Error> {
    let name = match what {
        Moment::Date => "date",
        Moment::Time => "time",
        Moment::DateTime => "datetime",
    };
    defined(&v)?;
    let at = if v.kind() == ValueKind::Number {
        f64::try_from(v.clone()).ok().and_then(format::from_unix)
    } else {
        v.as_str().and_then(format::parse_moment)
    };
    let at = at.ok_or_else(|| invalid(format!("{name} needs an RFC 3339 time or unix seconds, got {v}")))?;
    let short = match fmt.as_deref() {
        None | Some("long") => false,
        Some("short") => true,
        Some(other) => return Err(invalid(format!("{name} format {other:?} is not `short` or `long`"))),
    };
    let tz = state
        .lookup(TZ_KEY)
        .as_ref()
        .and_then(|v| v.as_str().and_then(|s| s.parse::<chrono_tz::Tz>().ok()))
        .unwrap_or(chrono_tz::UTC);
    Ok(format::moment(at, Utc::now(), tz, what, short, locale(state)))
}

fn plural(state: &State, v: JValue, forms: Rest<String>) -> Result<String, Error> {
    let n = number(&v, "plural")?;
    if forms.is_empty() {
        return Err(invalid("plural needs its forms: plural(\"товар\", \"товара\", \"товаров\")".into()));
    }
    let forms: Vec<&str> = forms.iter().map(String::as_str).collect();
    Ok(format::plural(n.trunc() as i128, &forms, locale(state)).to_string())
}

/// 1-based line and column of byte `offset` in `source`.
fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(source.len());
    while !source.is_char_boundary(end) {
        end -= 1;
    }
    let before = &source[..end];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

fn syntax(source: &str, e: &Error) -> TemplateError {
    let what = e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string());
    match (e.range(), e.line()) {
        (Some(r), _) => {
            let (line, col) = line_col(source, r.start);
            TemplateError::Syntax(format!("line {line}, column {col}: {what}"))
        }
        (None, Some(line)) => TemplateError::Syntax(format!("line {line}: {what}")),
        (None, None) => TemplateError::Syntax(what),
    }
}

/// Whether the dotted `path` (`order.total`) resolves in `data`.
fn resolves(data: &Value, path: &str) -> bool {
    let mut v = data;
    for key in path.split('.') {
        match v.get(key) {
            Some(next) => v = next,
            None => return false,
        }
    }
    true
}

impl Template {
    pub fn compile(source: &str) -> Result<Template, TemplateError> {
        let chars = source.chars().count();
        if chars > MAX_SOURCE_CHARS {
            return Err(TemplateError::Syntax(format!(
                "the template is {chars} characters, more than {MAX_SOURCE_CHARS}"
            )));
        }
        let mut env = env();
        env.add_template_owned(NAME, source.to_string()).map_err(|e| syntax(source, &e))?;
        let t = env.get_template(NAME).map_err(|e| syntax(source, &e))?;
        let mut variables: Vec<String> = t.undeclared_variables(false).into_iter().collect();
        variables.sort();
        let mut paths: Vec<String> = t.undeclared_variables(true).into_iter().collect();
        paths.sort();
        Ok(Template { source: source.to_string(), variables, paths, env: std::sync::Arc::new(env) })
    }

    /// The text for `data`, in `locale` (`ru`, `en`; another → `ru`), dates in `tz`.
    pub fn render(&self, data: &Value, locale: &str, tz: chrono_tz::Tz) -> Result<String, TemplateError> {
        if !(data.is_object() || data.is_null()) {
            return Err(TemplateError::Render(format!("the data is {data}, not an object")));
        }
        let ctx = minijinja::context! {
            __smsgw_locale => locale,
            __smsgw_tz => tz.name(),
            ..JValue::from_serialize(data)
        };
        let t = self.env.get_template(NAME).map_err(|e| TemplateError::Render(e.to_string()))?;
        let out = t.render(ctx).map_err(|e| self.render_error(data, &e))?;
        let chars = out.chars().count();
        if chars > MAX_OUTPUT_CHARS {
            return Err(TemplateError::Render(format!("the text is {chars} characters, more than {MAX_OUTPUT_CHARS}")));
        }
        Ok(out)
    }

    /// A render's error as ours: an undefined value names the variable.
    fn render_error(&self, data: &Value, e: &Error) -> TemplateError {
        if e.kind() == ErrorKind::UndefinedError {
            let span = e.range().and_then(|r| self.source.get(r)).unwrap_or("");
            let missing: Vec<&String> = self.paths.iter().filter(|p| !resolves(data, p)).collect();
            let named = missing
                .iter()
                .filter(|p| span.contains(p.as_str()))
                .max_by_key(|p| p.len())
                .or_else(|| missing.first())
                .map(|p| p.to_string());
            return TemplateError::Missing(named.unwrap_or_else(|| span.trim().to_string()));
        }
        let what = e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string());
        match e.range() {
            Some(r) => {
                let (line, col) = line_col(&self.source, r.start);
                TemplateError::Render(format!("line {line}, column {col}: {what}"))
            }
            None => TemplateError::Render(what),
        }
    }

    /// The top-level variable names the template reads, sorted.
    pub fn variables(&self) -> &[String] {
        &self.variables
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;
    use serde_json::json;

    fn render(src: &str, data: Value) -> Result<String, TemplateError> {
        Template::compile(src)?.render(&data, "ru", chrono_tz::Europe::Moscow)
    }

    #[test]
    fn variables_and_money() {
        let t = "{{ name }}, ваша корзина на {{ total | money }} ждёт вас";
        assert_eq!(
            render(t, json!({"name": "Анна", "total": 1234.5})).unwrap(),
            "Анна, ваша корзина на 1\u{a0}234,50\u{a0}₽ ждёт вас"
        );
        assert_eq!(render("{{ t | money }}", json!({"t": "1500"})).unwrap(), "1\u{a0}500\u{a0}₽");
        assert_eq!(Template::compile(t).unwrap().variables(), ["name", "total"]);
        let en = Template::compile("{{ t | money }}").unwrap().render(&json!({"t": 1234.5}), "en", chrono_tz::UTC);
        assert_eq!(en.unwrap(), "₽1,234.50");
    }

    #[test]
    fn missing_variables_are_named() {
        assert_eq!(render("Привет, {{ name }}!", json!({})), Err(TemplateError::Missing("name".into())));
        assert_eq!(render("{{ total | money }}", json!({"name": "x"})), Err(TemplateError::Missing("total".into())));
        assert_eq!(render("{% if vip %}VIP{% endif %}", json!({})), Err(TemplateError::Missing("vip".into())));
        assert_eq!(render("{{ a }} {{ b }}", json!({"a": 1})), Err(TemplateError::Missing("b".into())));
    }

    #[test]
    fn defaults_fill_what_is_missing() {
        assert_eq!(render("Привет, {{ name | default(\"друг\") }}!", json!({})).unwrap(), "Привет, друг!");
        assert_eq!(
            render("Привет, {{ name | default(\"друг\") }}!", json!({"name": "Олег"})).unwrap(),
            "Привет, Олег!"
        );
    }

    #[test]
    fn no_html_escaping() {
        assert_eq!(render("{{ s }}", json!({"s": "<b>&\"'"})).unwrap(), "<b>&\"'");
    }

    #[test]
    fn plural_in_a_template() {
        let t = Template::compile("{{ n }} {{ n | plural(\"товар\", \"товара\", \"товаров\") }}").unwrap();
        let out: Vec<String> = [1, 2, 5, 11, 21, 111]
            .iter()
            .map(|n| t.render(&json!({ "n": n }), "ru", chrono_tz::UTC).unwrap())
            .collect();
        assert_eq!(out, ["1 товар", "2 товара", "5 товаров", "11 товаров", "21 товар", "111 товаров"]);
        let en = Template::compile("{{ n }} {{ n | plural(\"item\", \"items\") }}").unwrap();
        assert_eq!(en.render(&json!({"n": 1}), "en", chrono_tz::UTC).unwrap(), "1 item");
        assert_eq!(en.render(&json!({"n": 3}), "en", chrono_tz::UTC).unwrap(), "3 items");
    }

    #[test]
    fn dates_in_the_zone_and_across_the_year() {
        let year = Utc::now().with_timezone(&chrono_tz::Asia::Vladivostok).year();
        let this = format!("{year}-12-05T11:30:00Z");
        let next = format!("{}-12-05T11:30:00Z", year + 1);
        let vl = chrono_tz::Asia::Vladivostok; // UTC+10
        let r = |src: &str, at: &str| Template::compile(src).unwrap().render(&json!({ "at": at }), "ru", vl).unwrap();
        assert_eq!(r("{{ at | date }}", &this), "5 декабря");
        assert_eq!(r("{{ at | date }}", &next), format!("5 декабря {}", year + 1));
        assert_eq!(r("{{ at | time }}", &this), "21:30");
        assert_eq!(r("{{ at | datetime }}", &this), "5 декабря в 21:30");
        assert_eq!(r("{{ at | date(\"short\") }}", &this), "05.12");
        // Unix seconds, and a moment that is another day in the recipient's zone.
        let late = format!("{year}-12-05T20:00:00Z");
        assert_eq!(r("{{ at | date }}", &late), "6 декабря");
        let secs = chrono::DateTime::parse_from_rfc3339(&this).unwrap().timestamp();
        let t = Template::compile("{{ at | datetime }}").unwrap();
        assert_eq!(t.render(&json!({ "at": secs }), "en", vl).unwrap(), "December 5 at 21:30");
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let e = Template::compile("Привет,\n{{ name }\nпока").unwrap_err();
        let TemplateError::Syntax(msg) = e else { panic!("not a syntax error: {e:?}") };
        assert!(msg.starts_with("line 2, column "), "{msg}");
        let long = "x".repeat(MAX_SOURCE_CHARS + 1);
        assert!(matches!(Template::compile(&long), Err(TemplateError::Syntax(_))));
    }

    #[test]
    fn wrong_values_and_runaway_templates_fail_cleanly() {
        assert!(matches!(render("{{ t | money }}", json!({"t": "abc"})), Err(TemplateError::Render(_))));
        assert!(matches!(render("{{ t | date }}", json!({"t": "yesterday"})), Err(TemplateError::Render(_))));
        let spin = "{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}";
        assert!(matches!(render(spin, json!({})), Err(TemplateError::Render(_))));
    }
}
