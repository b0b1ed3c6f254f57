//! A create's body, read step by step so each refusal names the field at fault.

use axum::http::{HeaderMap, StatusCode, header};
use video::storyboard::Storyboard;

use crate::decode;
use crate::error::{ApiError, FieldErrorView};
use crate::views::CreateJob;

/// A create's body must say it is JSON (`application/json`, or a `+json` type): 415
/// otherwise, so a form post (curl's `-d` without a header) gets a clear answer instead of
/// a guess.
pub(crate) fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    let json = essence.as_deref().is_some_and(|essence| {
        essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub == "json" || sub.ends_with("+json"))
    });
    if json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON, sent with Content-Type: application/json",
        )
        .field("Content-Type", "must be application/json"))
    }
}

/// A create's body, read in three steps, each refusal naming the field at fault: JSON at all
/// (400 `invalid_json`), the shape `{"storyboard": {…}}` (422 `invalid_request`), then the
/// storyboard — its types and fields, then its limits and whether every slide can be drawn
/// whole (422 `invalid_storyboard`, paths from the storyboard). Returns the storyboard as sent, which is what the job stores.
pub(crate) fn read_create(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not JSON: {e}"),
        )
    })?;
    let invalid_request = |field: &str, reason: &str| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            format!("the body must be {{\"storyboard\": {{…}}}}; {field}: {reason}"),
        )
        .field(field, reason)
    };
    let request: CreateJob =
        decode::from_value(&value).map_err(|p| invalid_request(&p.field, &p.reason))?;
    if !request.storyboard.is_object() {
        return Err(invalid_request(
            "storyboard",
            &format!("expected an object, got {}", json_kind(&request.storyboard)),
        ));
    }
    let invalid_storyboard = |fields: Vec<FieldErrorView>| {
        let message = fields
            .iter()
            .map(|f| format!("{}: {}", f.field, f.reason))
            .collect::<Vec<_>>()
            .join("; ");
        let mut error = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_storyboard",
            format!("invalid storyboard: {message}"),
        );
        error.1.fields = fields;
        error
    };
    let board: Storyboard = decode::from_value(&request.storyboard).map_err(|p| {
        invalid_storyboard(vec![FieldErrorView {
            field: p.field,
            reason: p.reason,
        }])
    })?;
    board.validate().map_err(|e| {
        invalid_storyboard(
            e.0.into_iter()
                .map(|f| FieldErrorView {
                    field: f.field,
                    reason: f.reason,
                })
                .collect(),
        )
    })?;
    Ok(request.storyboard)
}

/// What a JSON value is, for a message.
pub(crate) fn json_kind(value: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
