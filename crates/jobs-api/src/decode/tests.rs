//! The decoder's paths and reasons, for each kind of problem serde reports.

use super::*;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // only decoded
struct Outer {
    frame: Inner,
    #[serde(default)]
    items: Vec<Item>,
    note: Option<String>,
    mode: Option<Mode>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Inner {
    width: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Item {
    name: String,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Fast,
    Slow,
}

fn problem(value: serde_json::Value) -> FieldProblem {
    from_value::<Outer>(&value).unwrap_err()
}

#[test]
fn wrong_types_name_their_field() {
    let p = problem(json!({"frame": {"width": "1280"}}));
    assert_eq!(p.field, "frame.width");
    assert_eq!(p.reason, "expected u32, got string \"1280\"");
    let p = problem(json!({"frame": {"width": 1}, "items": null}));
    assert_eq!(
        (p.field.as_str(), p.reason.as_str()),
        ("items", "expected a sequence, got null")
    );
    let p = problem(
        json!({"frame": {"width": 1}, "items": [{"name": "a"}, {"name": "b"}, {"name": 3}]}),
    );
    assert_eq!(p.field, "items[2].name");
    let p = problem(json!({"frame": {"width": -4}}));
    assert_eq!(p.field, "frame.width", "{p:?}");
    let p = problem(json!({"frame": {"width": 1.5}}));
    assert_eq!(p.field, "frame.width", "{p:?}");
    let p = problem(json!({"frame": {"width": 5_000_000_000_u64}}));
    assert_eq!(p.field, "frame.width", "{p:?}");
    // A struct is an object, not serde's array of its fields in order.
    let p = problem(json!([{"width": 1}]));
    assert_eq!(
        (p.field.as_str(), p.reason.as_str()),
        ("$", "expected struct Outer, got an array")
    );
    let p = problem(json!({"frame": [1280]}));
    assert_eq!(p.field, "frame", "{p:?}");
}

#[test]
fn missing_and_unknown_fields_name_the_field_itself() {
    let p = problem(json!({"frame": {}}));
    assert_eq!(
        (p.field.as_str(), p.reason.as_str()),
        ("frame.width", "required, but missing")
    );
    let p = problem(json!({}));
    assert_eq!(p.field, "frame");
    let p = problem(json!({"frame": {"width": 2, "depth": 3}}));
    assert_eq!(p.field, "frame.depth");
    assert!(p.reason.contains("width"), "{p:?}");
    let p = problem(json!({"frame": {"width": 2}, "items": [{"name": "a", "slide": 1}]}));
    assert_eq!(p.field, "items[0].slide");
}

#[test]
fn options_and_enums_decode_and_fail_in_place() {
    let ok: Outer =
        from_value(&json!({"frame": {"width": 2}, "note": null, "mode": "fast"})).unwrap();
    assert_eq!((ok.note, ok.mode), (None, Some(Mode::Fast)));
    let p = problem(json!({"frame": {"width": 2}, "mode": "medium"}));
    assert_eq!(p.field, "mode", "{p:?}");
    let p = problem(json!({"frame": {"width": 2}, "note": 7}));
    assert_eq!(p.field, "note", "{p:?}");
}
