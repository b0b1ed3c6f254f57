//! A create's body: every refusal JSON `{error, message, fields}` with the status the README
//! gives and the path of the field at fault, storing nothing.

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn a_body_that_is_not_json_is_400_invalid_json_with_a_fields_key() {
    let api = mem().await;
    for body in [
        "not json",
        "",
        "{\"storyboard\": {",
        "{\"storyboard\": 1} trailing",
    ] {
        let (status, e) = error_of(api.post_json(body).send().await.unwrap()).await;
        assert_eq!(
            (status, e["error"].as_str()),
            (400, Some("invalid_json")),
            "{body:?}: {e}"
        );
        assert_eq!(e["fields"], json!([]), "{body:?}");
    }
    // Not UTF-8.
    let (status, e) = error_of(api.post_json(vec![b'{', 0xff, b'}']).send().await.unwrap()).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (400, Some("invalid_json")),
        "{e}"
    );
    assert_eq!(api.stored().await, 0);
}

#[tokio::test]
async fn json_that_is_not_a_create_request_is_422_naming_the_body_key() {
    let api = mem().await;
    for (body, field) in [
        (json!({}), "storyboard"),
        (json!({"storyboard": board(), "priority": 1}), "priority"),
        (json!({"storyboard": "text"}), "storyboard"),
        (json!({"storyboard": null}), "storyboard"),
        (json!([board()]), "$"),
        (json!(5), "$"),
    ] {
        let (status, e) = error_of(api.post_json(body.to_string()).send().await.unwrap()).await;
        assert_eq!(
            (status, e["error"].as_str()),
            (422, Some("invalid_request")),
            "{body}: {e}"
        );
        assert_eq!(fields(&e), [field], "{body}: {e}");
    }
    // A storyboard posted without its wrapper: its first key is named as unknown.
    let (status, e) = error_of(api.post_json(board().to_string()).send().await.unwrap()).await;
    assert_eq!((status, fields(&e)), (422, vec!["frame".to_owned()]), "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("{\"storyboard\""),
        "{e}"
    );
    assert_eq!(api.stored().await, 0);
}

#[tokio::test]
async fn wrong_types_missing_and_unknown_fields_name_their_path_in_the_storyboard() {
    let api = mem().await;
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut b = board();
        edit(&mut b);
        json!({ "storyboard": b }).to_string()
    };
    let cases: Vec<(String, &str)> = vec![
        (
            with(&|b| b["frame"]["width"] = json!("1280")),
            "frame.width",
        ),
        (with(&|b| b["frame"]["width"] = json!(-2)), "frame.width"),
        (
            with(&|b| b["frame"]["width"] = json!(1280.5)),
            "frame.width",
        ),
        (with(&|b| b["segments"] = json!(null)), "segments"),
        (with(&|b| b["segments"] = json!({"0": {}})), "segments"),
        (
            with(&|b| b["segments"][2]["slide"] = json!("Three")),
            "segments[2].slide",
        ),
        (
            with(&|b| b["segments"][1]["slide"]["bullets"] = json!(["a", 7])),
            "segments[1].slide.bullets[1]",
        ),
        (
            with(&|b| b["voice"] = json!({"language": ["en"]})),
            "voice.language",
        ),
        (with(&|b| b["version"] = json!("1")), "version"),
        // Missing: the field itself, not its parent (`frame`'s and `voice`'s fields have
        // defaults; a segment's slide does not).
        (
            with(&|b| {
                b["segments"][1]["slide"]
                    .as_object_mut()
                    .unwrap()
                    .remove("heading");
            }),
            "segments[1].slide.heading",
        ),
        (
            with(&|b| {
                b["segments"][2].as_object_mut().unwrap().remove("slide");
            }),
            "segments[2].slide",
        ),
        (
            with(&|b| {
                b.as_object_mut().unwrap().remove("title");
            }),
            "title",
        ),
        // Unknown: the unknown field's own path.
        (with(&|b| b["frame"]["depth"] = json!(8)), "frame.depth"),
        (
            with(&|b| b["segments"][0]["slide"]["colour"] = json!("red")),
            "segments[0].slide.colour",
        ),
        (with(&|b| b["subtitle"] = json!("x")), "subtitle"),
    ];
    for (body, field) in cases {
        let (status, e) = error_of(api.post_json(body.clone()).send().await.unwrap()).await;
        assert_eq!(
            (status, e["error"].as_str()),
            (422, Some("invalid_storyboard")),
            "{body}: {e}"
        );
        assert_eq!(fields(&e), [field], "{body}: {e}");
        let message = e["message"].as_str().unwrap();
        assert!(
            message.contains(field),
            "the message names the field too: {message}"
        );
    }
    // Values out of their limits: every one, each with its path.
    let body = with(&|b| {
        b["title"] = json!("");
        b["frame"]["width"] = json!(1281);
        b["segments"][2]["slide"]["heading"] = json!(" ");
    });
    let (status, e) = error_of(api.post_json(body).send().await.unwrap()).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (422, Some("invalid_storyboard")),
        "{e}"
    );
    assert_eq!(
        fields(&e),
        ["title", "frame.width", "segments[2].slide.heading"],
        "{e}"
    );
    assert_eq!(api.stored().await, 0, "nothing was stored");

    // The same storyboard, well-formed, is taken.
    let ok = api
        .post_json(json!({ "storyboard": board() }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 201);
}

#[tokio::test]
async fn a_character_no_embedded_font_draws_is_422_naming_field_and_character() {
    let api = mem().await;
    let mut b = board();
    b["segments"][1]["slide"]["bullets"] = json!(["a test tube 🧪"]);
    let body = json!({ "storyboard": b }).to_string();
    let (status, e) = error_of(api.post_json(body).send().await.unwrap()).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (422, Some("invalid_storyboard")),
        "{e}"
    );
    assert_eq!(fields(&e), ["segments[1].slide.bullets[0]"], "{e}");
    assert_eq!(
        e["fields"][0]["reason"], "U+1F9EA 🧪 cannot be drawn with the embedded fonts",
        "{e}"
    );
    assert_eq!(api.stored().await, 0, "nothing was stored");
}

#[tokio::test]
async fn a_formula_that_does_not_parse_is_422_naming_the_field_and_nothing_is_stored() {
    let api = mem().await;
    let mut b = board();
    b["segments"][1]["slide"]["bullets"] = json!([r"$\frac{1}{2}$ is fine", r"$\frac{1$ is not"]);
    b["segments"][1]["slide"]["heading"] = json!(r"$\unknowncommand$");
    let body = json!({ "storyboard": b }).to_string();
    let (status, e) = error_of(api.post_json(body).send().await.unwrap()).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (422, Some("invalid_storyboard")),
        "{e}"
    );
    assert_eq!(
        fields(&e),
        ["segments[1].slide.heading", "segments[1].slide.bullets[1]"],
        "{e}"
    );
    assert_eq!(
        e["fields"][1]["reason"], r"the formula $\frac{1$ cannot be typeset: missing argument: den",
        "{e}"
    );
    assert_eq!(api.stored().await, 0, "nothing was stored");

    // Typeset formulas (and a price, which is no formula) are taken.
    b["segments"][1]["slide"]["heading"] = json!(r"Halves: $\frac{1}{2}$ for $5 each");
    b["segments"][1]["slide"]["bullets"] = json!([r"$$\sqrt{x^2 + 1}$$"]);
    let body = json!({ "storyboard": b }).to_string();
    let ok = api.post_json(body).send().await.unwrap();
    assert_eq!(ok.status().as_u16(), 201);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_in_the_json_error_shape() {
    let api = mem().await;
    let big = json!({"storyboard": {"pad": "x".repeat(2 << 20)}}).to_string();
    // On a client of its own: the server closes a connection whose body it refused to read.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/jobs", api.base))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    let (status, e) = error_of(response).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (413, Some("body_too_large")),
        "{e}"
    );
    assert_eq!(api.stored().await, 0);
}

#[tokio::test]
async fn a_body_not_declared_json_is_415_in_the_json_error_shape() {
    let api = mem().await;
    let body = json!({ "storyboard": board() }).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = api
            .client
            .post(format!("{}/v1/jobs", api.base))
            .bearer_auth(KEY)
            .body(body.clone());
        if let Some(t) = content_type {
            request = request.header("content-type", t);
        }
        let (status, e) = error_of(request.send().await.unwrap()).await;
        assert_eq!(
            (status, e["error"].as_str()),
            (415, Some("unsupported_media_type")),
            "{content_type:?}"
        );
        assert_eq!(fields(&e), ["Content-Type"]);
    }
    assert_eq!(api.stored().await, 0);
    for content_type in [
        "application/json; charset=utf-8",
        "application/merge-patch+json",
    ] {
        let r = api
            .client
            .post(format!("{}/v1/jobs", api.base))
            .bearer_auth(KEY)
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "{content_type}");
    }
}
