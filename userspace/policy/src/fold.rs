//! A small, conservative constant-folding evaluator over `sqlparser`
//! expressions.
//!
//! Used for two questions:
//! * does a `WHERE` predicate restrict rows at all? (`WHERE true`,
//!   `WHERE 1=1`, `WHERE x OR 'a'='a'`, `WHERE id = id` do not);
//! * what string does an argument evaluate to? (`'ro' || 'le'`,
//!   `E'\x72ole'`, `'role'::text`), for `set_config` and functions that
//!   execute a query string.
//!
//! Everything the evaluator does not understand is [`Val::Unknown`]; it
//! never claims a value it cannot prove. Reading a literal's value is noted
//! in `lit`, because the analysis cache shares analyses between texts that
//! differ only in literal values: an analysis that depends on one must not
//! be cached.

use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    InTarget, SelectItem, SetExpr, UnaryOperator, Value,
};

/// A folded value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Bool(bool),
    Int(i128),
    Str(String),
    Null,
    Unknown,
}

/// The text of a string literal value of any quoting style, when it is certain: a standard
/// `'..'` string holding a backslash means one thing with `standard_conforming_strings` on and
/// another with it off (the backslash escapes), so its text is not a constant for judging.
pub(crate) fn string_value(v: &Value) -> Option<&str> {
    match v {
        Value::SingleQuotedString(s) if s.contains('\\') => None,
        Value::SingleQuotedString(s)
        | Value::EscapedStringLiteral(s)
        | Value::UnicodeStringLiteral(s)
        | Value::NationalStringLiteral(s)
        | Value::TripleSingleQuotedString(s)
        | Value::TripleDoubleQuotedString(s)
        | Value::DoubleQuotedString(s) => Some(s),
        Value::DollarQuotedString(d) => Some(&d.value),
        _ => None,
    }
}

fn str_to_bool(s: &str) -> Option<bool> {
    // PostgreSQL boolin: leading/trailing whitespace ignored, case-insensitive
    // unique prefixes of true/false/yes/no, on/off, 1/0.
    let t = s.trim().to_ascii_lowercase();
    if t.is_empty() {
        return None;
    }
    let pre = |w: &str, min: usize| t.len() >= min && w.starts_with(t.as_str());
    if pre("true", 1) || pre("yes", 1) || t == "on" || t == "1" {
        Some(true)
    } else if pre("false", 1) || pre("no", 1) || pre("off", 2) || t == "0" {
        Some(false)
    } else {
        None
    }
}

/// Truth value of a folded value used as a predicate (`WHERE 1` counts as
/// true, as MySQL runs it; PostgreSQL rejects it anyway).
pub(crate) fn truth(v: &Val) -> Option<bool> {
    match v {
        Val::Bool(b) => Some(*b),
        Val::Int(i) => Some(*i != 0),
        Val::Str(s) => str_to_bool(s),
        Val::Null => Some(false),
        Val::Unknown => None,
    }
}

/// Whether the expression refers to no column, function or subquery whose
/// value could vary (without reading literal values).
fn deterministic(e: &Expr) -> bool {
    match e {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) | Expr::Value(_) => true,
        Expr::Nested(x) | Expr::UnaryOp { expr: x, .. } | Expr::Cast { expr: x, .. } => {
            deterministic(x)
        }
        Expr::BinaryOp { left, right, .. } => deterministic(left) && deterministic(right),
        _ => false,
    }
}

fn has_literal(e: &Expr) -> bool {
    match e {
        Expr::Value(_) => true,
        Expr::Nested(x) | Expr::UnaryOp { expr: x, .. } | Expr::Cast { expr: x, .. } => {
            has_literal(x)
        }
        Expr::BinaryOp { left, right, .. } => has_literal(left) || has_literal(right),
        _ => false,
    }
}

fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Nested(x) => strip(x),
        _ => e,
    }
}

/// `a` and `b` are the same deterministic, non-constant expression
/// (`id = id`, `t.a + 1 = t.a + 1`).
fn same_term(a: &Expr, b: &Expr, lit: &mut bool) -> bool {
    if !(deterministic(a) && deterministic(b)) {
        return false;
    }
    if has_literal(a) || has_literal(b) {
        // Equality depends on literal values.
        *lit = true;
    }
    strip(a) == strip(b)
}

fn cmp(a: &Val, b: &Val) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        (Val::Int(x), Val::Str(s)) => s.trim().parse::<i128>().ok().map(|y| x.cmp(&y)),
        (Val::Str(s), Val::Int(y)) => s.trim().parse::<i128>().ok().map(|x| x.cmp(y)),
        (Val::Bool(x), Val::Str(s)) => str_to_bool(s).map(|y| x.cmp(&y)),
        (Val::Str(s), Val::Bool(y)) => str_to_bool(s).map(|x| x.cmp(y)),
        _ => None,
    }
}

fn like(s: &[char], p: &[char]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some(('%', rest)) => (0..=s.len()).any(|i| like(&s[i..], rest)),
        Some(('_', rest)) => !s.is_empty() && like(&s[1..], rest),
        Some(('\\', rest)) if !rest.is_empty() => {
            !s.is_empty() && s[0] == rest[0] && like(&s[1..], &rest[1..])
        }
        Some((c, rest)) => !s.is_empty() && s[0] == *c && like(&s[1..], rest),
    }
}

fn three_and(a: &Val, b: &Val) -> Val {
    match (truth_opt(a), truth_opt(b)) {
        (Some(Some(false)), _) | (_, Some(Some(false))) => Val::Bool(false),
        (Some(Some(true)), Some(Some(true))) => Val::Bool(true),
        (Some(_), Some(_)) => Val::Null,
        _ => Val::Unknown,
    }
}

fn three_or(a: &Val, b: &Val) -> Val {
    match (truth_opt(a), truth_opt(b)) {
        (Some(Some(true)), _) | (_, Some(Some(true))) => Val::Bool(true),
        (Some(Some(false)), Some(Some(false))) => Val::Bool(false),
        (Some(_), Some(_)) => Val::Null,
        _ => Val::Unknown,
    }
}

/// `None`: unknown; `Some(None)`: SQL NULL; `Some(Some(b))`: known boolean.
fn truth_opt(v: &Val) -> Option<Option<bool>> {
    match v {
        Val::Null => Some(None),
        Val::Unknown => None,
        other => truth(other).map(Some),
    }
}

/// `a OR b` where one side is the negation of the other (`x OR NOT x`,
/// `x IS NULL OR x IS NOT NULL`): true for every row (up to NULLs).
fn complementary(a: &Expr, b: &Expr, lit: &mut bool) -> bool {
    let (a, b) = (strip(a), strip(b));
    match (a, b) {
        (Expr::IsNull(x), Expr::IsNotNull(y)) | (Expr::IsNotNull(x), Expr::IsNull(y)) => {
            same_term(x, y, lit)
        }
        (
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr: x,
            },
            y,
        )
        | (
            y,
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr: x,
            },
        ) => {
            let hl = has_literal(x) || has_literal(y);
            if hl {
                *lit = true;
            }
            strip(x) == y
        }
        _ => false,
    }
}

fn cast_to(v: Val, dt: &DataType) -> Val {
    match dt {
        DataType::Bool | DataType::Boolean => match v {
            Val::Null => Val::Null,
            ref other => truth(other).map_or(Val::Unknown, Val::Bool),
        },
        DataType::Int(_)
        | DataType::Integer(_)
        | DataType::BigInt(_)
        | DataType::SmallInt(_)
        | DataType::Int2(_)
        | DataType::Int4(_)
        | DataType::Int8(_) => match v {
            Val::Int(_) | Val::Null => v,
            Val::Bool(b) => Val::Int(i128::from(b)),
            Val::Str(s) => s.trim().parse().map_or(Val::Unknown, Val::Int),
            Val::Unknown => Val::Unknown,
        },
        DataType::Text
        | DataType::Varchar(_)
        | DataType::CharacterVarying(_)
        | DataType::String(_) => match v {
            Val::Int(i) => Val::Str(i.to_string()),
            Val::Bool(b) => Val::Str(if b { "true" } else { "false" }.to_owned()),
            other => other,
        },
        DataType::Custom(name, _)
            if name.to_string().eq_ignore_ascii_case("regconfig")
                || name.to_string().eq_ignore_ascii_case("name") =>
        {
            v
        }
        _ => Val::Unknown,
    }
}

/// Folds `e` to a constant when it provably is one.
pub(crate) fn eval(e: &Expr, lit: &mut bool) -> Val {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Boolean(b) => Val::Bool(*b),
            Value::Null => Val::Null,
            Value::Number(n, _) => {
                *lit = true;
                n.parse::<i128>().map_or(Val::Unknown, Val::Int)
            }
            other => match string_value(other) {
                Some(s) => {
                    *lit = true;
                    Val::Str(s.to_owned())
                }
                None => Val::Unknown,
            },
        },
        Expr::Nested(x) => eval(x, lit),
        Expr::Cast {
            expr,
            data_type,
            kind: CastKind::Cast | CastKind::DoubleColon | CastKind::TryCast | CastKind::SafeCast,
            ..
        } => cast_to(eval(expr, lit), data_type),
        Expr::TypedString(ts) => match string_value(&ts.value.value) {
            Some(s) => {
                *lit = true;
                cast_to(Val::Str(s.to_owned()), &ts.data_type)
            }
            None => Val::Unknown,
        },
        Expr::UnaryOp { op, expr } => match (op, eval(expr, lit)) {
            (UnaryOperator::Not | UnaryOperator::BangNot, v) => match truth_opt(&v) {
                Some(Some(b)) => Val::Bool(!b),
                Some(None) => Val::Null,
                None => Val::Unknown,
            },
            (UnaryOperator::Minus, Val::Int(i)) => Val::Int(-i),
            (UnaryOperator::Plus, v @ Val::Int(_)) => v,
            _ => Val::Unknown,
        },
        Expr::IsTrue(x) => {
            let t = truth_opt(&eval(x, lit));
            Val::Bool(t == Some(Some(true))).known_if(t.is_some())
        }
        Expr::IsNotTrue(x) => {
            let t = truth_opt(&eval(x, lit));
            Val::Bool(t != Some(Some(true))).known_if(t.is_some())
        }
        Expr::IsFalse(x) => {
            let t = truth_opt(&eval(x, lit));
            Val::Bool(t == Some(Some(false))).known_if(t.is_some())
        }
        Expr::IsNotFalse(x) => {
            let t = truth_opt(&eval(x, lit));
            Val::Bool(t != Some(Some(false))).known_if(t.is_some())
        }
        Expr::IsNull(x) => match eval(x, lit) {
            Val::Unknown => Val::Unknown,
            v => Val::Bool(v == Val::Null),
        },
        Expr::IsNotNull(x) => match eval(x, lit) {
            Val::Unknown => Val::Unknown,
            v => Val::Bool(v != Val::Null),
        },
        Expr::IsNotDistinctFrom(a, b) | Expr::IsDistinctFrom(a, b) => {
            let neg = matches!(e, Expr::IsDistinctFrom(..));
            if same_term(a, b, lit) {
                return Val::Bool(!neg);
            }
            match (eval(a, lit), eval(b, lit)) {
                (Val::Unknown, _) | (_, Val::Unknown) => Val::Unknown,
                (x, y) => Val::Bool((x == y) != neg),
            }
        }
        Expr::BinaryOp { left, op, right } => binop(left, op, right, lit),
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => {
            let v = eval(expr, lit);
            if v == Val::Unknown {
                return Val::Unknown;
            }
            let (l, h) = (eval(low, lit), eval(high, lit));
            match (cmp(&v, &l), cmp(&v, &h)) {
                (Some(a), Some(b)) => Val::Bool((a.is_ge() && b.is_le()) != *negated),
                _ => Val::Unknown,
            }
        }
        Expr::In {
            expr,
            target: InTarget::List(list),
            negated,
            ..
        } => {
            let v = eval(expr, lit);
            if v == Val::Unknown {
                // `x IN (x, ..)`
                if !*negated && list.iter().any(|i| same_term(expr, i, lit)) {
                    return Val::Bool(true);
                }
                return Val::Unknown;
            }
            let mut any = false;
            for i in list {
                match cmp(&v, &eval(i, lit)) {
                    Some(o) if o.is_eq() => any = true,
                    Some(_) => {}
                    None => return Val::Unknown,
                }
            }
            Val::Bool(any != *negated)
        }
        Expr::Like {
            negated,
            expr,
            pattern,
            any: false,
            escape_char: None,
        }
        | Expr::ILike {
            negated,
            expr,
            pattern,
            any: false,
            escape_char: None,
        } => {
            let ci = matches!(e, Expr::ILike { .. });
            match (eval(expr, lit), eval(pattern, lit)) {
                (Val::Str(s), Val::Str(p)) => {
                    let (s, p) = if ci {
                        (s.to_lowercase(), p.to_lowercase())
                    } else {
                        (s, p)
                    };
                    let s: Vec<char> = s.chars().collect();
                    let p: Vec<char> = p.chars().collect();
                    Val::Bool(like(&s, &p) != *negated)
                }
                (Val::Null, _) | (_, Val::Null) => Val::Null,
                _ => Val::Unknown,
            }
        }
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            let op = operand.as_ref().map(|o| eval(o, lit));
            for c in conditions {
                let hit = match &op {
                    Some(o) => cmp(o, &eval(&c.condition, lit)).map(std::cmp::Ordering::is_eq),
                    None => truth_opt(&eval(&c.condition, lit)).map(|t| t == Some(true)),
                };
                match hit {
                    Some(true) => return eval(&c.result, lit),
                    Some(false) => {}
                    None => return Val::Unknown,
                }
            }
            else_result.as_ref().map_or(Val::Null, |x| eval(x, lit))
        }
        Expr::Function(f) => function(f, lit),
        Expr::Subquery(q) => {
            // `(SELECT <const>)` without FROM, WHERE, grouping or limits.
            if q.with.is_some() || q.limit_clause.is_some() || q.fetch.is_some() {
                return Val::Unknown;
            }
            if let SetExpr::Select(s) = q.body.as_ref() {
                if s.from.is_empty()
                    && s.selection.is_none()
                    && s.having.is_none()
                    && s.projection.len() == 1
                {
                    if let SelectItem::UnnamedExpr(x) | SelectItem::ExprWithAlias { expr: x, .. } =
                        &s.projection[0]
                    {
                        return eval(x, lit);
                    }
                }
            }
            Val::Unknown
        }
        Expr::Exists { subquery, negated } => {
            // EXISTS of a FROM-less, WHERE-less SELECT is always true.
            if let SetExpr::Select(s) = subquery.body.as_ref() {
                if subquery.with.is_none()
                    && subquery.limit_clause.is_none()
                    && subquery.fetch.is_none()
                    && s.from.is_empty()
                    && s.selection.is_none()
                    && s.having.is_none()
                {
                    return Val::Bool(!*negated);
                }
            }
            Val::Unknown
        }
        _ => Val::Unknown,
    }
}

trait KnownIf {
    fn known_if(self, known: bool) -> Val;
}

impl KnownIf for Val {
    fn known_if(self, known: bool) -> Val {
        if known {
            self
        } else {
            Val::Unknown
        }
    }
}

fn plain_args(f: &sqlparser::ast::Function) -> Option<Vec<&Expr>> {
    let FunctionArguments::List(l) = &f.args else {
        return None;
    };
    l.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => Some(x),
            _ => None,
        })
        .collect()
}

fn function(f: &sqlparser::ast::Function, lit: &mut bool) -> Val {
    let name = f
        .name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.to_ascii_lowercase())
        .unwrap_or_default();
    let Some(args) = plain_args(f) else {
        return Val::Unknown;
    };
    match name.as_str() {
        "coalesce" => {
            for a in args {
                match eval(a, lit) {
                    Val::Null => {}
                    v => return v,
                }
            }
            Val::Null
        }
        "lower" | "upper" | "btrim" | "trim" if args.len() == 1 => match eval(args[0], lit) {
            Val::Str(s) => Val::Str(match name.as_str() {
                "lower" => s.to_lowercase(),
                "upper" => s.to_uppercase(),
                _ => s.trim_matches(' ').to_owned(),
            }),
            _ => Val::Unknown,
        },
        "concat" => {
            let mut out = String::new();
            for a in args {
                match eval(a, lit) {
                    Val::Str(s) => out.push_str(&s),
                    Val::Int(i) => out.push_str(&i.to_string()),
                    Val::Null => {}
                    _ => return Val::Unknown,
                }
            }
            Val::Str(out)
        }
        _ => Val::Unknown,
    }
}

fn binop(left: &Expr, op: &BinaryOperator, right: &Expr, lit: &mut bool) -> Val {
    use BinaryOperator as B;
    match op {
        B::And => {
            let l = eval(left, lit);
            if truth_opt(&l) == Some(Some(false)) {
                return Val::Bool(false);
            }
            three_and(&l, &eval(right, lit))
        }
        B::Or => {
            let l = eval(left, lit);
            if truth_opt(&l) == Some(Some(true)) {
                return Val::Bool(true);
            }
            let r = eval(right, lit);
            if truth_opt(&r) == Some(Some(true)) || complementary(left, right, lit) {
                return Val::Bool(true);
            }
            three_or(&l, &r)
        }
        B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq | B::Spaceship => {
            let (l, r) = (eval(left, lit), eval(right, lit));
            if l == Val::Unknown || r == Val::Unknown {
                // Tautology on one term: `id = id`, `x >= x`.
                if matches!(op, B::Eq | B::LtEq | B::GtEq | B::Spaceship)
                    && l == Val::Unknown
                    && r == Val::Unknown
                    && same_term(left, right, lit)
                {
                    return Val::Bool(true);
                }
                return Val::Unknown;
            }
            if l == Val::Null || r == Val::Null {
                return if *op == B::Spaceship {
                    Val::Bool(l == r)
                } else {
                    Val::Null
                };
            }
            let Some(o) = cmp(&l, &r) else {
                return Val::Unknown;
            };
            Val::Bool(match op {
                B::Eq | B::Spaceship => o.is_eq(),
                B::NotEq => o.is_ne(),
                B::Lt => o.is_lt(),
                B::LtEq => o.is_le(),
                B::Gt => o.is_gt(),
                _ => o.is_ge(),
            })
        }
        B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo => {
            match (eval(left, lit), eval(right, lit)) {
                (Val::Int(a), Val::Int(b)) => match op {
                    B::Plus => a.checked_add(b),
                    B::Minus => a.checked_sub(b),
                    B::Multiply => a.checked_mul(b),
                    B::Divide => a.checked_div(b),
                    _ => a.checked_rem(b),
                }
                .map_or(Val::Unknown, Val::Int),
                (Val::Null, _) | (_, Val::Null) => Val::Null,
                _ => Val::Unknown,
            }
        }
        B::StringConcat => match (eval(left, lit), eval(right, lit)) {
            (Val::Str(a), Val::Str(b)) => Val::Str(a + &b),
            (Val::Str(a), Val::Int(b)) => Val::Str(format!("{a}{b}")),
            (Val::Int(a), Val::Str(b)) => Val::Str(format!("{a}{b}")),
            (Val::Null, _) | (_, Val::Null) => Val::Null,
            _ => Val::Unknown,
        },
        _ => Val::Unknown,
    }
}

/// Whether a `WHERE` predicate provably selects every row (folds to TRUE,
/// or is a tautology on a column such as `id = id`).
pub(crate) fn always_true(e: &Expr, lit: &mut bool) -> bool {
    matches!(truth_opt(&eval(e, lit)), Some(Some(true)))
}

/// The constant string `e` evaluates to, if provable.
pub(crate) fn const_string(e: &Expr, lit: &mut bool) -> Option<String> {
    match eval(e, lit) {
        Val::Str(s) => Some(s),
        _ => None,
    }
}
