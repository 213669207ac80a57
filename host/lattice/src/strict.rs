//! Deserializers that refuse a mapping with a repeated key.
//!
//! YAML says keys are unique, but serde's maps and `serde_json::Value` keep the last of two
//! equal keys without a word: `{instances: 1, instances: 9}` would quietly run nine. A
//! manifest is the one place a user states what must run, so a repeated key is an error that
//! names it. Struct fields are already checked by serde ("duplicate field").

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A JSON value, refusing repeated keys at any depth.
pub fn value<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    deserializer.deserialize_any(StrictValue)
}

/// A map of strings, refusing repeated keys.
pub fn string_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    deserializer.deserialize_map(StringMap)
}

/// Like [`string_map`], for an optional field.
pub fn optional_string_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    struct Optional;
    impl<'de> Visitor<'de> for Optional {
        type Value = Option<BTreeMap<String, String>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of strings or nothing")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            string_map(d).map(Some)
        }
    }
    deserializer.deserialize_option(Optional)
}

fn repeated<E: de::Error>(key: &str) -> E {
    E::custom(format!(
        "duplicate key `{key}`: each key may appear once in a mapping"
    ))
}

struct StringMap;

impl<'de> Visitor<'de> for StringMap {
    type Value = BTreeMap<String, String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((key, value)) = map.next_entry::<String, String>()? {
            if out.contains_key(&key) {
                return Err(repeated(&key));
            }
            out.insert(key, value);
        }
        Ok(out)
    }
}

struct StrictValue;

impl<'de> de::DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictValue)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // NaN and infinities have no JSON form: null, as serde_json does.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictValue)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // No capacity from the size hint: it is the input's word, not a measured size.
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(repeated(&key));
            }
            let value = map.next_value_seed(StrictValue)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Holder {
        #[serde(deserialize_with = "value")]
        v: Value,
    }

    #[test]
    fn repeated_keys_are_refused_at_any_depth() {
        let err = serde_json::from_str::<Holder>(r#"{"v":{"a":{"b":1,"b":2}}}"#).unwrap_err();
        assert!(err.to_string().contains("duplicate key `b`"), "{err}");
        let err = serde_yaml_ng::from_str::<Holder>("v: {a: 1, a: 2}").unwrap_err();
        assert!(err.to_string().contains("duplicate key `a`"), "{err}");
    }

    #[test]
    fn values_read_as_serde_json_reads_them() {
        let text = r#"{"v":{"a":[1,-2,3.5,"x",true,null,{"b":{}}]}}"#;
        let strict = serde_json::from_str::<Holder>(text).unwrap().v;
        let plain: Value = serde_json::from_str::<Value>(text).unwrap()["v"].clone();
        assert_eq!(strict, plain);
    }
}
