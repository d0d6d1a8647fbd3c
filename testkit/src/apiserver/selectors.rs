//! Label selectors (the full set-based syntax: `=`, `==`, `!=`, `in`, `notin`, exists, `!`
//! does-not-exist, `>` and `<`) and field selectors (`=`, `==`, `!=` over the fields each
//! resource declares selectable, with `\` escapes), parsed and matched as apimachinery does.

use serde_json::Value;

use super::registry::ResourceDef;
use super::util;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Eq,
    NotEq,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    reqs: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Eq,
    DoubleEq,
    NotEq,
    Not,
    In,
    NotIn,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1
            }
            ')' => {
                out.push(Tok::Close);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            '>' => {
                out.push(Tok::Gt);
                i += 1
            }
            '<' => {
                out.push(Tok::Lt);
                i += 1
            }
            '=' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Tok::DoubleEq);
                    i += 2;
                } else {
                    out.push(Tok::Eq);
                    i += 1;
                }
            }
            '!' => {
                if chars.get(i + 1) == Some(&'=') {
                    out.push(Tok::NotEq);
                    i += 2;
                } else {
                    out.push(Tok::Not);
                    i += 1;
                }
            }
            _ => {
                let start = i;
                while i < chars.len() && !" \t\n\r(),=!<>".contains(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                out.push(match word.as_str() {
                    "in" => Tok::In,
                    "notin" => Tok::NotIn,
                    _ => Tok::Ident(word),
                });
            }
        }
    }
    Ok(out)
}

fn valid_label_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix {
        if p.is_empty() || p.len() > 253 || !p.split('.').all(valid_dns_label) {
            return false;
        }
    }
    valid_label_value(name) && !name.is_empty()
}

fn valid_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A label value: at most 63 characters, alphanumerics with `-`, `_`, `.` inside.
pub fn valid_label_value(v: &str) -> bool {
    if v.is_empty() {
        return true;
    }
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && v.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let toks = lex(s)?;
        let mut reqs = Vec::new();
        let mut i = 0;
        let err = |m: &str| Err(format!("unable to parse requirement: {m}"));
        while i < toks.len() {
            let (key, negated) = match &toks[i] {
                Tok::Not => match toks.get(i + 1) {
                    Some(Tok::Ident(k)) => {
                        i += 2;
                        (k.clone(), true)
                    }
                    _ => return err("expected a key after '!'"),
                },
                Tok::Ident(k) => {
                    i += 1;
                    (k.clone(), false)
                }
                t => {
                    return Err(format!(
                        "found '{t:?}', expected: !, identifier, or 'end of string'"
                    ))
                }
            };
            if !valid_label_key(&key) {
                return Err(format!(
                    "unable to parse requirement: key: Invalid value: {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
                ));
            }
            if negated {
                reqs.push(Requirement {
                    key,
                    op: Op::DoesNotExist,
                    values: vec![],
                });
            } else {
                let op = match toks.get(i) {
                    None | Some(Tok::Comma) => None,
                    Some(Tok::Eq) | Some(Tok::DoubleEq) => Some(Op::Eq),
                    Some(Tok::NotEq) => Some(Op::NotEq),
                    Some(Tok::In) => Some(Op::In),
                    Some(Tok::NotIn) => Some(Op::NotIn),
                    Some(Tok::Gt) => Some(Op::Gt),
                    Some(Tok::Lt) => Some(Op::Lt),
                    Some(t) => {
                        return Err(format!(
                            "found '{t:?}', expected: in, notin, =, ==, !=, gt, lt"
                        ))
                    }
                };
                match op {
                    None => reqs.push(Requirement {
                        key,
                        op: Op::Exists,
                        values: vec![],
                    }),
                    Some(op @ (Op::In | Op::NotIn)) => {
                        i += 1;
                        if toks.get(i) != Some(&Tok::Open) {
                            return err("expected '(' after in/notin");
                        }
                        i += 1;
                        if toks.get(i) == Some(&Tok::Close) {
                            return err("for 'in', 'notin' operators, values set can't be empty");
                        }
                        let mut values = Vec::new();
                        loop {
                            match toks.get(i) {
                                Some(Tok::Ident(v)) => {
                                    values.push(v.clone());
                                    i += 1;
                                }
                                _ => values.push(String::new()),
                            }
                            match toks.get(i) {
                                Some(Tok::Comma) => i += 1,
                                Some(Tok::Close) => {
                                    i += 1;
                                    break;
                                }
                                _ => return err("expected ')' to close the set"),
                            }
                        }
                        values.dedup();
                        for v in &values {
                            if !valid_label_value(v) {
                                return Err(format!("unable to parse requirement: values[0][{key}]: Invalid value: {v:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
                            }
                        }
                        reqs.push(Requirement { key, op, values });
                    }
                    Some(op) => {
                        i += 1;
                        let value = match toks.get(i) {
                            Some(Tok::Ident(v)) => {
                                i += 1;
                                v.clone()
                            }
                            None | Some(Tok::Comma) => String::new(),
                            Some(t) => return Err(format!("found '{t:?}', expected: identifier")),
                        };
                        if matches!(op, Op::Gt | Op::Lt) && value.parse::<i64>().is_err() {
                            return Err(format!(
                                "unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer: {value:?}"
                            ));
                        }
                        if !matches!(op, Op::Gt | Op::Lt) && !valid_label_value(&value) {
                            return Err(format!("unable to parse requirement: values[0][{key}]: Invalid value: {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
                        }
                        reqs.push(Requirement {
                            key,
                            op,
                            values: vec![value],
                        });
                    }
                }
            }
            match toks.get(i) {
                None => break,
                Some(Tok::Comma) => i += 1,
                Some(t) => return Err(format!("found '{t:?}', expected: ',' or 'end of string'")),
            }
        }
        Ok(LabelSelector { reqs })
    }

    /// A selector from the `matchLabels`/`matchExpressions` of a `LabelSelector` object.
    pub fn from_object(sel: &Value) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in m {
                reqs.push(Requirement {
                    key: k.clone(),
                    op: Op::Eq,
                    values: vec![v.as_str().unwrap_or("").to_string()],
                });
            }
        }
        for e in sel
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = e["key"].as_str().unwrap_or("").to_string();
            let values: Vec<String> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            let op = match e["operator"].as_str().unwrap_or("") {
                "In" => Op::In,
                "NotIn" => Op::NotIn,
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                "Gt" => Op::Gt,
                "Lt" => Op::Lt,
                o => return Err(format!("{o:?} is not a valid label selector operator")),
            };
            reqs.push(Requirement { key, op, values });
        }
        Ok(LabelSelector { reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    pub fn matches_map(&self, labels: Option<&serde_json::Map<String, Value>>) -> bool {
        self.reqs.iter().all(|r| {
            let v = labels.and_then(|l| l.get(&r.key)).and_then(Value::as_str);
            match r.op {
                Op::Eq => v == Some(r.values[0].as_str()),
                Op::NotEq => v != Some(r.values[0].as_str()),
                Op::In => v.is_some_and(|v| r.values.iter().any(|x| x == v)),
                Op::NotIn => !v.is_some_and(|v| r.values.iter().any(|x| x == v)),
                Op::Exists => v.is_some(),
                Op::DoesNotExist => v.is_none(),
                Op::Gt | Op::Lt => {
                    let (Some(have), Ok(want)) = (
                        v.and_then(|v| v.parse::<i64>().ok()),
                        r.values[0].parse::<i64>(),
                    ) else {
                        return false;
                    };
                    if r.op == Op::Gt {
                        have > want
                    } else {
                        have < want
                    }
                }
            }
        })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.matches_map(util::labels(obj))
    }
}

/// A parsed field selector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut esc = false;
    for c in s.chars() {
        if esc {
            cur.push('\\');
            cur.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    if esc {
        cur.push('\\');
    }
    out.push(cur);
    out
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        if esc {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => {
                    return Err(format!(
                        "invalid field selector: invalid escape sequence: \\{c}"
                    ))
                }
            }
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else {
            out.push(c);
        }
    }
    if esc {
        return Err("invalid field selector: invalid trailing escape sequence".into());
    }
    Ok(out)
}

impl FieldSelector {
    pub fn parse(s: &str) -> Result<FieldSelector, String> {
        let mut terms = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector { terms });
        }
        for part in split_unescaped(s, ',') {
            if part.is_empty() {
                continue;
            }
            // Find the first unescaped operator.
            let chars: Vec<char> = part.chars().collect();
            let mut i = 0;
            let mut found = None;
            while i < chars.len() {
                match chars[i] {
                    '\\' => i += 2,
                    '!' if chars.get(i + 1) == Some(&'=') => {
                        found = Some((i, 2, true));
                        break;
                    }
                    '=' => {
                        let len = if chars.get(i + 1) == Some(&'=') { 2 } else { 1 };
                        found = Some((i, len, false));
                        break;
                    }
                    _ => i += 1,
                }
            }
            let Some((at, len, neg)) = found else {
                return Err(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                ));
            };
            let key: String = chars[..at].iter().collect();
            let val: String = chars[at + len..].iter().collect();
            terms.push((unescape(key.trim())?, neg, unescape(&val)?));
        }
        Ok(FieldSelector { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// `metadata.name` required by this selector, if any (an exact match).
    pub fn exact_name(&self) -> Option<&str> {
        self.terms
            .iter()
            .find(|(k, neg, _)| k == "metadata.name" && !neg)
            .map(|(_, _, v)| v.as_str())
    }

    /// Check the selector only names fields the resource supports.
    pub fn validate(&self, r: &ResourceDef) -> Result<(), String> {
        for (k, _, _) in &self.terms {
            if k != "metadata.name"
                && k != "metadata.namespace"
                && !r.field_labels.contains(&k.as_str())
            {
                return Err(format!("field label not supported: {k}"));
            }
        }
        Ok(())
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|(k, neg, want)| {
            let have = field_value(obj, k);
            (have == *want) != *neg
        })
    }
}

/// The value of a selectable field as the registries' `ToSelectableFields` produce it.
pub fn field_value(obj: &Value, field: &str) -> String {
    match field {
        "spec.hostNetwork" | "spec.unschedulable" => {
            let path: Vec<&str> = field.split('.').collect();
            util::value_at(obj, &path)
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string()
        }
        "source" => util::str_at(obj, &["source", "component"]).to_string(),
        "status.podIP" => util::str_at(obj, &["status", "podIP"]).to_string(),
        _ => {
            let path: Vec<&str> = field.split('.').collect();
            match util::value_at(obj, &path) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                _ => String::new(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "default", "labels": labels},
               "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    }

    #[test]
    fn set_based_label_selectors() {
        let p = pod(json!({"app": "web", "tier": "front", "rank": "5"}));
        for (sel, want) in [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app in (web, db)", true),
            ("app notin (web)", false),
            ("missing notin (x)", true),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
            ("rank>4", true),
            ("rank<4", false),
        ] {
            let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(&p), want, "{sel}");
        }
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("a b").is_err());
        assert!(LabelSelector::parse("rank>x").is_err());
    }

    #[test]
    fn field_selectors() {
        let p = pod(json!({}));
        for (sel, want) in [
            ("spec.nodeName=n1", true),
            ("spec.nodeName==n1", true),
            ("spec.nodeName!=n1", false),
            ("status.phase!=Failed,status.phase!=Succeeded", true),
            ("metadata.name=p,metadata.namespace=default", true),
            ("spec.nodeName=", false),
        ] {
            let s = FieldSelector::parse(sel).unwrap();
            assert_eq!(s.matches(&p), want, "{sel}");
        }
        let s = FieldSelector::parse(r"metadata.name=a\,b").unwrap();
        assert_eq!(s.exact_name(), Some("a,b"));
        let pods = super::super::registry::lookup("", "v1", "pods").unwrap();
        assert!(FieldSelector::parse("spec.bogus=1")
            .unwrap()
            .validate(pods)
            .is_err());
        assert!(FieldSelector::parse("spec.nodeName=x")
            .unwrap()
            .validate(pods)
            .is_ok());
    }
}
