//! Decoding a parsed JSON body into a typed request, naming the field that does not fit.
//!
//! `serde_json` reports a wrong type, a missing field or an unknown one as a message with a
//! line and column, and nothing a client can point at. Here the same `Deserialize` impls run
//! over the parsed [`Value`] through a deserializer that knows where it is, with an error
//! type that keeps *what* went wrong as data (serde hands `missing_field` and
//! `unknown_field` their field names), so the answer names the field —
//! `frame.width`, `segments[2].slide`, `segments[0].slide.colour` — without reading any
//! message text. Serde stops at the first problem, so one problem is reported per request;
//! the limits a storyboard is checked against afterwards are reported all at once.

use std::fmt;

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde_json::Value;

/// The first part of a body that does not fit the type it is decoded into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// Where, from the decoded value: `frame.width`, `segments[2].slide`; `$` for the value
    /// itself.
    pub field: String,
    /// What is wrong, for people.
    pub reason: String,
}

/// Decodes `value` as a `T`; the first problem names its field.
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, FieldProblem> {
    T::deserialize(At {
        value,
        path: Vec::new(),
    })
    .map_err(DecodeError::into_problem)
}

/// One step of a path: an object's key or an array's index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

fn render(path: &[Step]) -> String {
    if path.is_empty() {
        return "$".into();
    }
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// What went wrong, as serde told it.
#[derive(Debug)]
enum Kind {
    /// A required field is absent (its name: the path is the object's).
    Missing(&'static str),
    /// A field the type does not have (its name: the path is the object's).
    Unknown {
        field: String,
        expected: &'static [&'static str],
    },
    /// A value of the wrong type or out of range, described for people.
    Invalid(String),
}

/// The error of [`At`]: its kind and, once known, where it happened.
#[derive(Debug)]
struct DecodeError {
    kind: Kind,
    /// Set by the innermost value the error passes through on its way out.
    path: Option<Vec<Step>>,
}

impl DecodeError {
    fn new(kind: Kind) -> Self {
        Self { kind, path: None }
    }

    fn at(mut self, path: &[Step]) -> Self {
        if self.path.is_none() {
            self.path = Some(path.to_vec());
        }
        self
    }

    fn into_problem(self) -> FieldProblem {
        let mut path = self.path.unwrap_or_default();
        let reason = match self.kind {
            Kind::Missing(field) => {
                path.push(Step::Key(field.into()));
                "required, but missing".to_owned()
            }
            Kind::Unknown { field, expected } => {
                path.push(Step::Key(field));
                if expected.is_empty() {
                    "unknown field: this object has no fields".to_owned()
                } else {
                    format!("unknown field; expected one of: {}", expected.join(", "))
                }
            }
            Kind::Invalid(reason) => reason,
        };
        FieldProblem {
            field: render(&path),
            reason,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Missing(field) => write!(f, "missing field {field}"),
            Kind::Unknown { field, .. } => write!(f, "unknown field {field}"),
            Kind::Invalid(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for DecodeError {}

/// What a JSON value was, in JSON's words (serde's `Unexpected` speaks Rust's: "unit value",
/// "map", "sequence").
fn got(unexpected: &de::Unexpected<'_>) -> String {
    match unexpected {
        de::Unexpected::Unit | de::Unexpected::Option => "null".into(),
        de::Unexpected::Map => "an object".into(),
        de::Unexpected::Seq => "an array".into(),
        other => other.to_string(),
    }
}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::new(Kind::Invalid(msg.to_string()))
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::new(Kind::Invalid(format!(
            "expected {exp}, got {}",
            got(&unexp)
        )))
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::new(Kind::Invalid(format!(
            "expected {exp}, got {}",
            got(&unexp)
        )))
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        Self::new(Kind::Invalid(format!("expected {exp}, got {len} items")))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::new(Kind::Unknown {
            field: field.into(),
            expected,
        })
    }

    fn missing_field(field: &'static str) -> Self {
        Self::new(Kind::Missing(field))
    }
}

/// A value and where it is in the body.
struct At<'de> {
    value: &'de Value,
    path: Vec<Step>,
}

impl<'de> At<'de> {
    fn child(&self, step: Step, value: &'de Value) -> Self {
        let mut path = self.path.clone();
        path.push(step);
        Self { value, path }
    }
}

impl<'de> IntoDeserializer<'de, DecodeError> for At<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> de::Deserializer<'de> for At<'de> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        let result: Result<V::Value, DecodeError> = match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    // Without `arbitrary_precision` every other number is an f64.
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => {
                let mut seq = SeqDeserializer::new(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| self.child(Step::Index(i), item)),
                );
                visitor
                    .visit_seq(&mut seq)
                    .and_then(|out| seq.end().map(|()| out))
            }
            Value::Object(entries) => {
                let mut map =
                    MapDeserializer::new(entries.iter().map(|(key, item)| {
                        (key.as_str(), self.child(Step::Key(key.clone()), item))
                    }));
                visitor
                    .visit_map(&mut map)
                    .and_then(|out| map.end().map(|()| out))
            }
        };
        result.map_err(|e| e.at(&self.path))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        if self.value.is_null() {
            visitor
                .visit_none::<DecodeError>()
                .map_err(|e| e.at(&self.path))
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        // A unit variant is written as its name; others as a one-key object.
        let result: Result<V::Value, DecodeError> = match self.value {
            Value::String(name) => visitor.visit_enum(
                IntoDeserializer::<DecodeError>::into_deserializer(name.as_str()),
            ),
            Value::Object(entries) if entries.len() == 1 => {
                let map =
                    MapDeserializer::new(entries.iter().map(|(key, item)| {
                        (key.as_str(), self.child(Step::Key(key.clone()), item))
                    }));
                visitor.visit_enum(de::value::MapAccessDeserializer::new(map))
            }
            _ => return self.deserialize_any(visitor),
        };
        result.map_err(|e| e.at(&self.path))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        // Serde lets a struct be written as an array of its fields in order; a JSON API
        // that names its fields does not.
        if self.value.is_object() {
            return self.deserialize_any(visitor);
        }
        let unexpected = match self.value {
            Value::Null => de::Unexpected::Unit,
            Value::Bool(b) => de::Unexpected::Bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => de::Unexpected::Unsigned(u),
                (None, Some(i)) => de::Unexpected::Signed(i),
                _ => de::Unexpected::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => de::Unexpected::Str(s),
            Value::Array(_) | Value::Object(_) => de::Unexpected::Seq,
        };
        Err(de::Error::invalid_type(unexpected, &visitor))
            .map_err(|e: DecodeError| e.at(&self.path))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests;
