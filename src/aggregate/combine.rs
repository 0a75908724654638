//! Combining the parts' answers into the aggregation's one JSON answer. Pure: the answers
//! come in (already field-filtered, `Null` for a failed optional part) in part order.

use serde_json::{Map, Value};

use super::config::{Combine, Conflict};

/// Why the answers cannot be combined (502): the config promised what they break.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CombineError {
    /// `merge` with `conflict = "error"`: two parts answered the same field.
    Conflict { field: String, part: usize },
    /// `merge`: this part's answer is not a JSON object.
    NotObject { part: usize },
}

/// The combined answer of `answers` (one per part, in part order) named by `names`.
pub fn combine(
    combine: Combine,
    names: &[&str],
    answers: Vec<Value>,
) -> Result<Value, CombineError> {
    debug_assert_eq!(names.len(), answers.len());
    match combine {
        Combine::Object => Ok(Value::Object(
            names
                .iter()
                .map(|name| (*name).to_owned())
                .zip(answers)
                .collect(),
        )),
        Combine::Array => Ok(Value::Array(answers)),
        Combine::Merge(conflict) => merge(conflict, answers),
    }
}

/// A shallow merge of object answers; a failed optional part (`null`) adds nothing.
fn merge(conflict: Conflict, answers: Vec<Value>) -> Result<Value, CombineError> {
    let mut merged = Map::new();
    for (part, answer) in answers.into_iter().enumerate() {
        let fields = match answer {
            Value::Object(fields) => fields,
            Value::Null => continue,
            _ => return Err(CombineError::NotObject { part }),
        };
        for (field, value) in fields {
            if !merged.contains_key(&field) {
                merged.insert(field, value);
                continue;
            }
            match conflict {
                Conflict::First => {}
                Conflict::Last => {
                    merged.insert(field, value);
                }
                Conflict::Error => return Err(CombineError::Conflict { field, part }),
            }
        }
    }
    Ok(Value::Object(merged))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_combine_as_configured() {
        let names = ["a", "b", "c"];
        let answers = || {
            vec![
                json!({"x": 1, "y": 1}),
                Value::Null,
                json!({"y": 2, "z": 3}),
            ]
        };
        let table: &[(Combine, Result<Value, CombineError>)] = &[
            (
                Combine::Object,
                Ok(json!({"a": {"x": 1, "y": 1}, "b": null, "c": {"y": 2, "z": 3}})),
            ),
            (
                Combine::Array,
                Ok(json!([{"x": 1, "y": 1}, null, {"y": 2, "z": 3}])),
            ),
            (
                Combine::Merge(Conflict::First),
                Ok(json!({"x": 1, "y": 1, "z": 3})),
            ),
            (
                Combine::Merge(Conflict::Last),
                Ok(json!({"x": 1, "y": 2, "z": 3})),
            ),
            (
                Combine::Merge(Conflict::Error),
                Err(CombineError::Conflict {
                    field: "y".to_owned(),
                    part: 2,
                }),
            ),
        ];
        for (how, want) in table {
            assert_eq!(&combine(*how, &names, answers()), want, "{how:?}");
        }
    }

    #[test]
    fn merge_refuses_an_answer_that_is_not_an_object() {
        let answers = vec![json!({"x": 1}), json!([1])];
        assert_eq!(
            combine(Combine::Merge(Conflict::Last), &["a", "b"], answers),
            Err(CombineError::NotObject { part: 1 })
        );
    }
}
