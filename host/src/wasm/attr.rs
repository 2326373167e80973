//! Attributes as the pipeline holds them between the transforms and the record's encoding.

use std::sync::Arc;

use super::Value;

/// An attribute's key as the pipeline holds it: a batch annotation's key is one string for every flow of the batch.
pub type AttrKey = Arc<str>;

/// An attribute's value as the pipeline holds it until it is encoded: the transform contract's `value`, its strings
/// shared. A batch annotation's column serves every flow without a copy, and a structured body of the attributes
/// holds the same values a second time for the price of a reference count.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(Arc<str>),
    Int(i64),
    Float(f64),
    Boolean(bool),
    StrList(Arc<[Arc<str>]>),
}

impl AttrValue {
    pub fn str(s: &str) -> Self {
        AttrValue::Str(s.into())
    }
}

impl From<Value> for AttrValue {
    fn from(v: Value) -> Self {
        match v {
            Value::Str(s) => AttrValue::Str(s.into()),
            Value::Int(i) => AttrValue::Int(i),
            Value::Float(f) => AttrValue::Float(f),
            Value::Boolean(b) => AttrValue::Boolean(b),
            Value::StrList(list) => AttrValue::StrList(list.into_iter().map(Arc::from).collect()),
        }
    }
}

/// An attribute as the pipeline holds it.
pub type Attr = (AttrKey, AttrValue);
