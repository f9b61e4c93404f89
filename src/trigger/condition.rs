//! Conditions on an event's `data`: a dotted field path (`cart.total`), an
//! operator and a value. A rule starts only when all of its conditions hold.

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    Exists,
}

/// One condition: `{ field = "total", op = "gte", value = 1000 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub field: String,
    pub op: Op,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl Condition {
    /// What is wrong with it, if anything, as (field suffix, message).
    pub fn check(&self) -> Option<(&'static str, String)> {
        if self.field.is_empty() || self.field.split('.').any(str::is_empty) {
            return Some(("field", format!("{:?} is not a field path (write `total` or `cart.total`)", self.field)));
        }
        match (self.op, &self.value) {
            (Op::Exists, _) => None,
            (_, None) => Some(("value", format!("op `{}` needs a value", self.op_name()))),
            (Op::In, Some(Value::Array(_))) => None,
            (Op::In, Some(_)) => Some(("value", "op `in` needs a list of values".into())),
            (Op::Gt | Op::Gte | Op::Lt | Op::Lte, Some(v)) if !v.is_number() && !v.is_string() => {
                Some(("value", format!("op `{}` compares numbers or strings", self.op_name())))
            }
            _ => None,
        }
    }

    fn op_name(&self) -> &'static str {
        match self.op {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Gt => "gt",
            Op::Gte => "gte",
            Op::Lt => "lt",
            Op::Lte => "lte",
            Op::In => "in",
            Op::Exists => "exists",
        }
    }

    /// Whether it holds for `data`. A missing field holds only for `ne`.
    pub fn holds(&self, data: &Value) -> bool {
        let found = lookup(data, &self.field);
        let Some(v) = found else { return self.op == Op::Ne };
        let want = self.value.as_ref();
        match self.op {
            Op::Exists => !v.is_null(),
            Op::Eq => want.is_some_and(|w| same(v, w)),
            Op::Ne => want.is_none_or(|w| !same(v, w)),
            Op::In => want.and_then(Value::as_array).is_some_and(|l| l.iter().any(|w| same(v, w))),
            Op::Gt | Op::Gte | Op::Lt | Op::Lte => {
                let Some(ord) = want.and_then(|w| compare(v, w)) else { return false };
                match self.op {
                    Op::Gt => ord.is_gt(),
                    Op::Gte => ord.is_ge(),
                    Op::Lt => ord.is_lt(),
                    _ => ord.is_le(),
                }
            }
        }
    }
}

/// The value at a dotted path (`cart.total`; a list index is a number: `items.0.sku`).
pub fn lookup<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(data, |v, part| match v {
        Value::Object(m) => m.get(part),
        Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// Numbers compare by value (1000 equals 1000.0, and "1000" given as a
/// string in the event); everything else as JSON.
fn same(a: &Value, b: &Value) -> bool {
    match (number(a), number(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (number(a), number(b)) {
        (Some(x), Some(y)) => x.partial_cmp(&y),
        _ => match (a, b) {
            (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn c(field: &str, op: Op, value: Option<Value>) -> Condition {
        Condition { field: field.into(), op, value }
    }

    #[test]
    fn ops_on_dotted_paths() {
        let d = json!({"total": 1500, "cart": {"items": [{"sku": "A"}], "currency": "RUB"}, "n": "7"});
        assert!(c("total", Op::Gte, Some(json!(1000))).holds(&d));
        assert!(!c("total", Op::Lt, Some(json!(1000))).holds(&d));
        assert!(c("total", Op::Eq, Some(json!(1500.0))).holds(&d));
        assert!(c("cart.currency", Op::In, Some(json!(["RUB", "USD"]))).holds(&d));
        assert!(c("cart.items.0.sku", Op::Eq, Some(json!("A"))).holds(&d));
        assert!(c("cart.currency", Op::Ne, Some(json!("EUR"))).holds(&d));
        assert!(c("n", Op::Gt, Some(json!(5))).holds(&d));
        assert!(c("cart", Op::Exists, None).holds(&d));
        assert!(!c("missing", Op::Exists, None).holds(&d));
        assert!(!c("missing", Op::Eq, Some(json!(1))).holds(&d));
        assert!(c("missing", Op::Ne, Some(json!(1))).holds(&d));
    }

    #[test]
    fn checks_name_what_is_wrong() {
        assert_eq!(c("total", Op::Gt, None).check().map(|e| e.0), Some("value"));
        assert_eq!(c("a..b", Op::Exists, None).check().map(|e| e.0), Some("field"));
        assert_eq!(c("x", Op::In, Some(json!(1))).check().map(|e| e.0), Some("value"));
        assert_eq!(c("x", Op::Exists, None).check(), None);
    }
}
