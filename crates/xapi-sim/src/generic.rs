//! Schema-driven implicit messages: getters, setters, map/set editors, get_all*, get_by_*, create/destroy.
//!
//! The message name (from [`Ctx::method`]) selects the behaviour; params arrive coerced by the dispatcher.

use serde_json::Map;
use xapi_types::schema::{ClassSpec, FieldSpec, MessageSpec, ParamSpec, Qualifier, Type};
use xapi_types::{Ref, Value, XapiError};

use crate::db::{Db, Record};
use crate::rpc::{method_unknown, wire_class, Ctx};

static WHERE_PARAMS: [ParamSpec; 2] = [
    ParamSpec {
        name: "session_id",
        ty: Type::Ref("session"),
        required: true,
    },
    ParamSpec {
        name: "expr",
        ty: Type::String,
        required: true,
    },
];

/// The (undeclared but real) `get_all_records_where(expr)` message of a class.
pub fn get_all_records_where_spec(class: &ClassSpec) -> MessageSpec {
    let result = class
        .message("get_all_records")
        .map(|m| m.result)
        .unwrap_or(Type::Any);
    MessageSpec {
        name: "get_all_records_where",
        params: &WHERE_PARAMS,
        result,
        errors: &[],
        implicit: true,
        is_async: false,
        removed: false,
    }
}

/// Handler used for every message without a registered one.
pub fn generic_handler(ctx: &Ctx, params: Vec<Value>) -> Result<Value, XapiError> {
    let (cname, mname) = ctx
        .method
        .split_once('.')
        .ok_or_else(|| method_unknown(&ctx.method))?;
    let class = wire_class(cname).ok_or_else(|| method_unknown(&ctx.method))?;
    let implicit = class.message(mname).is_none_or(|m| m.implicit);
    let mut p = params.into_iter();
    let mut next = || p.next().unwrap_or(Value::Null);
    let pool = &ctx.pool;
    match mname {
        "get_all" => Ok(pool.read(|db| {
            Value::Array(
                db.all(class.name)
                    .map(|(r, _)| r.0.clone().into())
                    .collect(),
            )
        })),
        "get_all_records" => Ok(pool.read(|db| all_records(db, class.name, |_| true))),
        "get_all_records_where" => {
            let expr = parse_expr(next().as_str().unwrap_or_default())?;
            Ok(pool.read(|db| all_records(db, class.name, |rec| expr.eval(rec))))
        }
        "get_record" => {
            let r = as_ref(&next());
            pool.read(|db| {
                db.record(class.name, &r)
                    .map(|rec| Value::Object(rec.clone()))
            })
        }
        "get_by_uuid" => {
            let u = next().as_str().unwrap_or_default().to_owned();
            pool.read(|db| db.find_by_uuid(class.name, &u))
                .map(|r| Value::String(r.0))
                .ok_or_else(|| XapiError::new("UUID_INVALID", [class.name.to_owned(), u]))
        }
        "get_by_name_label" => {
            let l = next();
            Ok(Value::Array(
                pool.read(|db| db.find(class.name, |rec| rec.get("name_label") == Some(&l)))
                    .into_iter()
                    .map(|r| Value::String(r.0))
                    .collect(),
            ))
        }
        "create" if implicit => {
            let v = next();
            create(ctx, class, v)
        }
        "destroy" if implicit => {
            let r = as_ref(&next());
            pool.write(|db| db.destroy(class.name, &r))
                .map(|_| Value::from(""))
        }
        _ => {
            let (op, field) = split_field_op(class, mname).ok_or_else(|| {
                if implicit {
                    method_unknown(&ctx.method)
                } else {
                    XapiError::new("NOT_IMPLEMENTED", [ctx.method.clone()])
                }
            })?;
            let r = as_ref(&next());
            let a = next();
            let b = next();
            field_op(ctx, class, field, op, &r, a, b)
        }
    }
}

fn as_ref(v: &Value) -> Ref {
    Ref::from(v.as_str().unwrap_or_default())
}

fn all_records(db: &Db, class: &str, mut keep: impl FnMut(&Record) -> bool) -> Value {
    let mut out = Map::new();
    for (r, rec) in db.all(class) {
        if keep(rec) {
            out.insert(r.0.clone(), Value::Object(rec.clone()));
        }
    }
    Value::Object(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldOp {
    Get,
    Set,
    AddTo,
    RemoveFrom,
    Add,
    Remove,
}

fn split_field_op(class: &ClassSpec, m: &str) -> Option<(FieldOp, &'static FieldSpec)> {
    const PREFIXES: &[(&str, FieldOp)] = &[
        ("get_", FieldOp::Get),
        ("set_", FieldOp::Set),
        ("add_to_", FieldOp::AddTo),
        ("remove_from_", FieldOp::RemoveFrom),
        ("add_", FieldOp::Add),
        ("remove_", FieldOp::Remove),
    ];
    PREFIXES.iter().find_map(|(p, op)| {
        let f = class.field(m.strip_prefix(p)?)?;
        let ok = match op {
            FieldOp::Get | FieldOp::Set => true,
            FieldOp::AddTo | FieldOp::RemoveFrom => matches!(f.ty, Type::Map(..)),
            FieldOp::Add | FieldOp::Remove => matches!(f.ty, Type::Set(_)),
        };
        ok.then_some((*op, f))
    })
}

fn field_op(
    ctx: &Ctx,
    class: &ClassSpec,
    field: &'static FieldSpec,
    op: FieldOp,
    r: &Ref,
    a: Value,
    b: Value,
) -> Result<Value, XapiError> {
    let pool = &ctx.pool;
    let table = class.name;
    if op == FieldOp::Get {
        return pool.read(|db| db.field(table, r, field.name).cloned());
    }
    pool.write(|db| {
        let uuid = db
            .record(table, r)?
            .get("uuid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let cur = db.field(table, r, field.name)?.clone();
        let newv = match op {
            FieldOp::Set => a,
            FieldOp::AddTo => {
                let key = key_string(&a);
                let mut m = cur.as_object().cloned().unwrap_or_default();
                if m.contains_key(&key) {
                    return Err(XapiError::new(
                        "MAP_DUPLICATE_KEY",
                        [table, field.name, uuid.as_str(), key.as_str()],
                    ));
                }
                m.insert(key, b);
                Value::Object(m)
            }
            FieldOp::RemoveFrom => {
                let mut m = cur.as_object().cloned().unwrap_or_default();
                m.remove(&key_string(&a));
                Value::Object(m)
            }
            FieldOp::Add => {
                let mut s = cur.as_array().cloned().unwrap_or_default();
                if !s.contains(&a) {
                    s.push(a);
                }
                Value::Array(s)
            }
            FieldOp::Remove => {
                let mut s = cur.as_array().cloned().unwrap_or_default();
                s.retain(|x| *x != a);
                Value::Array(s)
            }
            FieldOp::Get => cur,
        };
        db.set_field(table, r, field.name, newv)?;
        Ok(Value::from(""))
    })
}

fn key_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Generated constructor: takes the RW and RO/constructor fields; fields without a datamodel default are
/// required (`INTERNAL_ERROR [Dispatcher_FieldNotFound("<field>")]` otherwise, as XAPI).
fn create(ctx: &Ctx, class: &ClassSpec, v: Value) -> Result<Value, XapiError> {
    let Value::Object(mut given) = v else {
        return Err(XapiError::new("FIELD_TYPE_ERROR", ["args"]));
    };
    let mut rec = Record::new();
    for f in class
        .fields
        .iter()
        .filter(|f| f.qualifier != Qualifier::RoRuntime && f.name != "uuid")
    {
        match given.remove(f.name) {
            Some(v) => {
                rec.insert(f.name.to_owned(), v);
            }
            None if f.default.is_none() => {
                return Err(XapiError::internal(format!(
                    "Dispatcher_FieldNotFound(\"{}\")",
                    f.name
                )));
            }
            None => {}
        }
    }
    ctx.pool
        .write(|db| db.insert(class.name, rec))
        .map(|r| Value::String(r.0))
}

/// A parsed `get_all_records_where` expression (XAPI's `Db_filter` language).
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    True,
    False,
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Eq(Operand, Operand),
    Neq(Operand, Operand),
}

/// A comparison operand: `field "name"` (or `field/name`) or a string literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Field(String),
    Literal(String),
}

impl Operand {
    fn value(&self, rec: &Record) -> String {
        match self {
            Operand::Literal(s) => s.clone(),
            Operand::Field(f) => match rec.get(f) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                Some(other) => other.to_string(),
                None => String::new(),
            },
        }
    }
}

impl Expr {
    /// Evaluate against a record.
    pub fn eval(&self, rec: &Record) -> bool {
        match self {
            Expr::True => true,
            Expr::False => false,
            Expr::Not(e) => !e.eval(rec),
            Expr::And(a, b) => a.eval(rec) && b.eval(rec),
            Expr::Or(a, b) => a.eval(rec) || b.eval(rec),
            Expr::Eq(a, b) => a.value(rec) == b.value(rec),
            Expr::Neq(a, b) => a.value(rec) != b.value(rec),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Open,
    Close,
    Eq,
    Neq,
}

fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1
            }
            ')' => {
                out.push(Tok::Close);
                i += 1
            }
            '=' => {
                out.push(Tok::Eq);
                i += 1
            }
            '<' if cs.get(i + 1) == Some(&'>') => {
                out.push(Tok::Neq);
                i += 2
            }
            '"' => {
                let mut v = String::new();
                i += 1;
                loop {
                    match cs.get(i) {
                        None => return None,
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            v.push(*cs.get(i + 1)?);
                            i += 2
                        }
                        Some(c) => {
                            v.push(*c);
                            i += 1
                        }
                    }
                }
                out.push(Tok::Str(v));
            }
            _ => {
                let start = i;
                while i < cs.len()
                    && !cs[i].is_whitespace()
                    && !matches!(cs[i], '(' | ')' | '=' | '<' | '"')
                {
                    i += 1;
                }
                if start == i {
                    return None;
                }
                out.push(Tok::Word(cs[start..i].iter().collect()));
            }
        }
    }
    Some(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }
    fn or(&mut self) -> Option<Expr> {
        let mut e = self.and()?;
        while self.peek_word("or") {
            self.pos += 1;
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Some(e)
    }
    fn and(&mut self) -> Option<Expr> {
        let mut e = self.not()?;
        while self.peek_word("and") {
            self.pos += 1;
            e = Expr::And(Box::new(e), Box::new(self.not()?));
        }
        Some(e)
    }
    fn not(&mut self) -> Option<Expr> {
        if self.peek_word("not") {
            self.pos += 1;
            return Some(Expr::Not(Box::new(self.not()?)));
        }
        self.atom()
    }
    fn atom(&mut self) -> Option<Expr> {
        match self.toks.get(self.pos)? {
            Tok::Open => {
                self.pos += 1;
                let e = self.or()?;
                (self.toks.get(self.pos)? == &Tok::Close).then_some(())?;
                self.pos += 1;
                Some(e)
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("true") => {
                self.pos += 1;
                Some(Expr::True)
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("false") => {
                self.pos += 1;
                Some(Expr::False)
            }
            _ => {
                let a = self.operand()?;
                let op = self.toks.get(self.pos)?.clone();
                self.pos += 1;
                let b = self.operand()?;
                match op {
                    Tok::Eq => Some(Expr::Eq(a, b)),
                    Tok::Neq => Some(Expr::Neq(a, b)),
                    _ => None,
                }
            }
        }
    }
    fn operand(&mut self) -> Option<Operand> {
        let t = self.toks.get(self.pos)?.clone();
        self.pos += 1;
        match t {
            Tok::Str(s) => Some(Operand::Literal(s)),
            Tok::Word(w) if w == "field" => match self.toks.get(self.pos)?.clone() {
                Tok::Str(f) | Tok::Word(f) => {
                    self.pos += 1;
                    Some(Operand::Field(f))
                }
                _ => None,
            },
            Tok::Word(w) => w
                .strip_prefix("field/")
                .map(|f| Operand::Field(f.to_owned())),
            _ => None,
        }
    }
}

/// Parse a `Db_filter` expression (`field "name_label"="x" and not (field "is_a_template"="true")`, `true`).
/// Malformed → `INTERNAL_ERROR [..]` (XAPI surfaces the parser's exception).
pub fn parse_expr(s: &str) -> Result<Expr, XapiError> {
    let bad = || XapiError::internal(format!("Db_filter expression parse error: {s}"));
    let toks = tokenize(s).ok_or_else(bad)?;
    if toks.is_empty() {
        return Ok(Expr::True);
    }
    let mut p = Parser { toks, pos: 0 };
    let e = p.or().ok_or_else(bad)?;
    if p.pos != p.toks.len() {
        return Err(bad());
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r() -> Record {
        crate::db::rec([
            ("name_label", json!("a b")),
            ("is_a_template", json!(false)),
            ("VCPUs_max", json!(2)),
        ])
    }

    #[test]
    fn expressions() {
        assert!(parse_expr(r#"field "name_label"="a b""#)
            .unwrap()
            .eval(&r()));
        assert!(parse_expr(r#"field/name_label = "a b""#)
            .unwrap()
            .eval(&r()));
        assert!(
            parse_expr(r#"field "is_a_template"="false" and field "VCPUs_max"="2""#)
                .unwrap()
                .eval(&r())
        );
        assert!(parse_expr(r#"not (field "name_label"="x") or false"#)
            .unwrap()
            .eval(&r()));
        assert!(parse_expr("true").unwrap().eval(&r()));
        assert!(!parse_expr(r#"field "name_label"<>"a b""#)
            .unwrap()
            .eval(&r()));
    }

    #[test]
    fn bad_expressions() {
        for s in [
            r#"field "x""#,
            "(true",
            r#""unterminated"#,
            "true true",
            "field = ",
        ] {
            assert_eq!(parse_expr(s).unwrap_err().code, "INTERNAL_ERROR", "{s}");
        }
    }
}
