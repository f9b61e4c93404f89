//! Message templates: text with `{{ variables }}` from an event's `data`
//! (Jinja syntax through minijinja), rendered whole or not at all: a
//! variable the data lacks is an error naming it, never a half-filled SMS.
//! `{{ name | default("друг") }}` gives a default. Filters format for the
//! recipient's locale (`ru` first, `en`; another locale reads as `ru`):
//! `money` (`1 234,50 ₽`, whole amounts without kopecks), `date`, `time`,
//! `datetime` in the recipient's zone (`5 декабря`, `14:30`,
//! `5 декабря в 14:30`; the year only when it is not this year; `date("short")`
//! gives `05.12`), and `plural` (`{{ n }} {{ n | plural("товар", "товара", "товаров") }}`).
//! Nothing is HTML-escaped (it is SMS); a render is bounded by fuel, so no
//! template can hang the ingest.

use chrono::{DateTime, Datelike, Utc};
use minijinja::value::Value as JValue;
use minijinja::{Environment, ErrorKind, State, UndefinedBehavior};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Longest template source.
pub const MAX_SOURCE: usize = 2_000;
/// Instructions one render may spend.
const FUEL: u64 = 50_000;
const LOCALE: &str = "__locale";
const ZONE: &str = "__tz";

/// A template that compiled.
#[derive(Clone)]
pub struct Template {
    source: String,
    env: Arc<Environment<'static>>,
    variables: Vec<String>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template").field("source", &self.source).finish()
    }
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

/// A minijinja error as one line: what, and where (line of the template).
fn describe(e: &minijinja::Error) -> String {
    let what = e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string());
    match e.line() {
        Some(line) => format!("{what} (line {line})"),
        None => what,
    }
}

impl Template {
    pub fn compile(source: &str) -> Result<Template, TemplateError> {
        if source.len() > MAX_SOURCE {
            return Err(TemplateError::Syntax(format!("{} bytes; a template may have {MAX_SOURCE}", source.len())));
        }
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_fuel(Some(FUEL));
        env.add_filter("money", money);
        env.add_filter("date", date);
        env.add_filter("time", time);
        env.add_filter("datetime", datetime);
        env.add_filter("plural", plural);
        env.add_template_owned("t", source.to_string()).map_err(|e| {
            TemplateError::Syntax(format!("{} (line {})", e.detail().unwrap_or("syntax error"), e.line().unwrap_or(1)))
        })?;
        let mut variables: Vec<String> =
            env.get_template("t").map(|t| t.undeclared_variables(true).into_iter().collect()).unwrap_or_default();
        variables.sort();
        Ok(Template { source: source.to_string(), env: Arc::new(env), variables })
    }

    /// The text for `data`, in `locale` (`ru`, `en`), dates in `tz`.
    pub fn render(&self, data: &Value, locale: &str, tz: chrono_tz::Tz) -> Result<String, TemplateError> {
        let tmpl = self.env.get_template("t").map_err(|e| TemplateError::Render(describe(&e)))?;
        let ctx = minijinja::context! {
            __locale => locale,
            __tz => tz.name(),
            ..JValue::from_serialize(data)
        };
        tmpl.render(ctx).map_err(|e| match e.kind() {
            ErrorKind::UndefinedError => match self.missing(data) {
                Some(name) => TemplateError::Missing(name),
                None => TemplateError::Render(describe(&e)),
            },
            _ => TemplateError::Render(describe(&e)),
        })
    }

    /// The first variable (dotted for nested ones) the template reads that
    /// `data` does not have.
    fn missing(&self, data: &Value) -> Option<String> {
        self.variables.iter().find(|v| v.split('.').try_fold(data, |d, k| d.get(k)).is_none()).cloned()
    }

    /// The variables the template reads (`name`, `cart.total`).
    pub fn variables(&self) -> &[String] {
        &self.variables
    }

    /// The top-level variable names the template reads.
    pub fn top_variables(&self) -> BTreeSet<String> {
        self.variables.iter().map(|v| v.split('.').next().unwrap_or(v).to_string()).collect()
    }

    pub fn source(&self) -> &str {
        &self.source
    }
}

fn locale(state: &State) -> String {
    state.lookup(LOCALE).and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| "ru".into())
}

fn english(state: &State) -> bool {
    locale(state).to_ascii_lowercase().starts_with("en")
}

fn zone(state: &State) -> chrono_tz::Tz {
    state.lookup(ZONE).and_then(|v| v.as_str().and_then(|s| s.parse().ok())).unwrap_or(chrono_tz::UTC)
}

fn bad(msg: String) -> minijinja::Error {
    minijinja::Error::new(ErrorKind::InvalidOperation, msg)
}

fn number(v: &JValue) -> Result<f64, minijinja::Error> {
    if v.is_undefined() {
        return Err(minijinja::Error::new(ErrorKind::UndefinedError, "a filter was given an undefined value"));
    }
    if let Some(s) = v.as_str() {
        return s.trim().replace(',', ".").parse().map_err(|_| bad(format!("{s:?} is not a number")));
    }
    f64::try_from(v.clone()).map_err(|_| bad(format!("{v} is not a number")))
}

/// Digits grouped by three with `sep`.
fn grouped(n: u64, sep: &str) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push_str(sep);
        }
        out.push(ch);
    }
    out
}

/// An amount: `1 234,50 ₽` (ru) or `₽1,234.50`-style with the currency's
/// sign or code (en); whole amounts without the fraction.
fn money(state: &State, value: JValue, currency: Option<String>) -> Result<String, minijinja::Error> {
    let amount = number(&value)?;
    let cents = (amount.abs() * 100.0).round() as u64;
    let (whole, frac) = (cents / 100, cents % 100);
    let code = currency.unwrap_or_else(|| "RUB".into()).to_ascii_uppercase();
    let sign = match code.as_str() {
        "RUB" => Some("₽"),
        "USD" => Some("$"),
        "EUR" => Some("€"),
        "GBP" => Some("£"),
        _ => None,
    };
    let minus = if amount < 0.0 && cents > 0 { "-" } else { "" };
    Ok(if english(state) {
        let n = if frac == 0 { grouped(whole, ",") } else { format!("{}.{frac:02}", grouped(whole, ",")) };
        match sign {
            Some(s) => format!("{minus}{s}{n}"),
            None => format!("{minus}{n} {code}"),
        }
    } else {
        let n = if frac == 0 { grouped(whole, " ") } else { format!("{},{frac:02}", grouped(whole, " ")) };
        format!("{minus}{n} {}", sign.unwrap_or(&code))
    })
}

/// An RFC 3339 time or unix seconds, in the recipient's zone.
fn instant(state: &State, value: &JValue) -> Result<DateTime<chrono_tz::Tz>, minijinja::Error> {
    if value.is_undefined() {
        return Err(minijinja::Error::new(ErrorKind::UndefinedError, "a filter was given an undefined value"));
    }
    let utc: DateTime<Utc> = if let Some(s) = value.as_str() {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .or_else(|_| {
                chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map(|d| d.and_hms_opt(12, 0, 0).unwrap_or_default().and_utc())
            })
            .map_err(|_| bad(format!("{s:?} is not a date (RFC 3339, or YYYY-MM-DD)")))?
    } else {
        let secs = number(value)?;
        DateTime::from_timestamp(secs as i64, 0).ok_or_else(|| bad(format!("{secs} is not a time")))?
    };
    Ok(utc.with_timezone(&zone(state)))
}

const RU_MONTHS: [&str; 12] = [
    "января",
    "февраля",
    "марта",
    "апреля",
    "мая",
    "июня",
    "июля",
    "августа",
    "сентября",
    "октября",
    "ноября",
    "декабря",
];
const EN_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn day(state: &State, t: &DateTime<chrono_tz::Tz>, format: Option<&str>) -> String {
    let this_year = Utc::now().with_timezone(&t.timezone()).year();
    let m = t.month0() as usize;
    match (format, english(state)) {
        (Some("short"), false) => format!("{:02}.{:02}", t.day(), t.month()),
        (Some("short"), true) => format!("{:02}/{:02}", t.month(), t.day()),
        (_, false) if t.year() == this_year => format!("{} {}", t.day(), RU_MONTHS[m]),
        (_, false) => format!("{} {} {}", t.day(), RU_MONTHS[m], t.year()),
        (_, true) if t.year() == this_year => format!("{} {}", EN_MONTHS[m], t.day()),
        (_, true) => format!("{} {}, {}", EN_MONTHS[m], t.day(), t.year()),
    }
}

fn date(state: &State, value: JValue, format: Option<String>) -> Result<String, minijinja::Error> {
    Ok(day(state, &instant(state, &value)?, format.as_deref()))
}

fn time(state: &State, value: JValue) -> Result<String, minijinja::Error> {
    Ok(instant(state, &value)?.format("%H:%M").to_string())
}

fn datetime(state: &State, value: JValue) -> Result<String, minijinja::Error> {
    let t = instant(state, &value)?;
    let word = if english(state) { "at" } else { "в" };
    Ok(format!("{} {word} {}", day(state, &t, None), t.format("%H:%M")))
}

/// The word for `n`: Russian takes three forms (1 товар, 2 товара, 5
/// товаров), English two (1 item, 2 items).
fn plural(value: JValue, one: String, few: String, many: Option<String>) -> Result<String, minijinja::Error> {
    let n = number(&value)?.abs().trunc() as u64;
    Ok(match many {
        None => {
            if n == 1 {
                one
            } else {
                few
            }
        }
        Some(many) => match (n % 10, n % 100) {
            (1, r) if r != 11 => one,
            (2..=4, r) if !(12..=14).contains(&r) => few,
            _ => many,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(src: &str, data: Value, locale: &str) -> Result<String, TemplateError> {
        Template::compile(src)?.render(&data, locale, chrono_tz::Europe::Moscow)
    }

    #[test]
    fn money_in_russian_and_english() {
        let t = "{{ a | money }}|{{ b | money }}|{{ c | money('USD') }}|{{ d | money('CHF') }}";
        let data = json!({"a": 1234.5, "b": "1500000", "c": 12.3, "d": 7});
        assert_eq!(render(t, data.clone(), "ru").unwrap(), "1 234,50 ₽|1 500 000 ₽|12,30 $|7 CHF");
        assert_eq!(render(t, data, "en").unwrap(), "₽1,234.50|₽1,500,000|$12.30|7 CHF");
    }

    #[test]
    fn dates_in_the_recipients_zone() {
        let year = Utc::now().year();
        let data = json!({"t": format!("{year}-12-05T11:30:00Z"), "later": format!("{}-03-01T09:00:00Z", year + 1)});
        assert_eq!(render("{{ t | date }}, {{ t | time }}", data.clone(), "ru").unwrap(), "5 декабря, 14:30");
        assert_eq!(render("{{ t | datetime }}", data.clone(), "ru").unwrap(), "5 декабря в 14:30");
        assert_eq!(render("{{ later | date }}", data.clone(), "ru").unwrap(), format!("1 марта {}", year + 1));
        assert_eq!(render("{{ t | date('short') }}", data.clone(), "ru").unwrap(), "05.12");
        assert_eq!(render("{{ t | datetime }}", data, "en").unwrap(), "December 5 at 14:30");
    }

    #[test]
    fn russian_plurals() {
        let t = "{{ n }} {{ n | plural('товар', 'товара', 'товаров') }}";
        for (n, want) in [
            (1, "товар"),
            (2, "товара"),
            (5, "товаров"),
            (11, "товаров"),
            (21, "товар"),
            (111, "товаров"),
            (22, "товара"),
            (14, "товаров"),
        ] {
            assert_eq!(render(t, json!({"n": n}), "ru").unwrap(), format!("{n} {want}"));
        }
        assert_eq!(render("{{ n | plural('item', 'items') }}", json!({"n": 1}), "en").unwrap(), "item");
    }

    #[test]
    fn a_missing_variable_is_named_even_inside_a_filter_and_defaults_work() {
        assert_eq!(render("Hi {{ name }}", json!({}), "ru"), Err(TemplateError::Missing("name".into())));
        assert_eq!(
            render("{{ total | money }}", json!({"name": "x"}), "ru"),
            Err(TemplateError::Missing("total".into()))
        );
        assert_eq!(
            render("{{ cart.total }}", json!({"cart": {}}), "ru"),
            Err(TemplateError::Missing("cart.total".into()))
        );
        assert_eq!(render("Hi {{ name | default('друг') }}", json!({}), "ru").unwrap(), "Hi друг");
        assert_eq!(render("<b>{{ s }}</b>", json!({"s": "a&b"}), "ru").unwrap(), "<b>a&b</b>", "no escaping");
    }

    #[test]
    fn syntax_errors_say_where_and_renders_are_bounded() {
        let e = Template::compile("line one\n{{ unclosed").unwrap_err();
        assert!(matches!(&e, TemplateError::Syntax(m) if m.contains("line 2")), "{e}");
        let e = render(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            json!({}),
            "ru",
        );
        assert!(matches!(e, Err(TemplateError::Render(_))), "{e:?}");
        assert!(Template::compile(&"x".repeat(MAX_SOURCE + 1)).is_err());
    }
}
