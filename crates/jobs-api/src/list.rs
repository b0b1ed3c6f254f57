//! `GET /v1/jobs`: jobs newest first, a page at a time, behind an opaque cursor.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::{JobStatus, ListCursor, ListQuery};

use crate::ApiState;
use crate::error::{ApiError, ApiErrorBody};
use crate::views::{JobList, JobView};

/// The parameters `GET /v1/jobs` takes.
pub(crate) const LIST_PARAMS: &str = "status, limit and cursor";

/// The page size when `limit` is left out.
pub(crate) const DEFAULT_LIMIT: u32 = 50;

/// `GET /v1/jobs`'s query, read pair by pair so that each refusal names its parameter:
/// an unknown one, one given twice, or a value that does not parse. An empty value
/// (`?status=`) is the same as leaving the parameter out, as forms send it.
pub(crate) fn list_query(pairs: &[(String, String)]) -> Result<ListQuery, ApiError> {
    let mut problems: Vec<(String, String)> = Vec::new();
    let (mut status, mut limit, mut after) = (None, DEFAULT_LIMIT, None);
    for (i, (name, value)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(earlier, _)| earlier == name) {
            problems.push((name.clone(), "given more than once".into()));
            continue;
        }
        match name.as_str() {
            "status" | "limit" | "cursor" if value.is_empty() => {}
            "status" => match value.parse::<JobStatus>() {
                Ok(s) => status = Some(s),
                Err(e) => problems.push((name.clone(), e.reason)),
            },
            "limit" => match value.parse::<u32>() {
                Ok(n) => limit = n,
                Err(_) => problems.push((
                    name.clone(),
                    format!(
                        "{value:?} is not a whole number from 1 to {}",
                        ListQuery::MAX_LIMIT
                    ),
                )),
            },
            "cursor" => match decode_cursor(value) {
                Some(c) => after = Some(c),
                None => problems.push((
                    name.clone(),
                    "not a cursor this API gave out: pass a page's next_cursor as it is".into(),
                )),
            },
            _ => problems.push((
                name.clone(),
                format!("unknown parameter; this route takes {LIST_PARAMS}"),
            )),
        }
    }
    let query = match ListQuery::new(status, limit) {
        Ok(query) => Some(query.after(after)),
        Err(e) => {
            problems.push((e.field.into(), e.reason));
            None
        }
    };
    match (query, problems.is_empty()) {
        (Some(query), true) => Ok(query),
        _ => {
            let message = problems
                .iter()
                .map(|(field, reason)| format!("{field}: {reason}"))
                .collect::<Vec<_>>()
                .join("; ");
            Err(problems.into_iter().fold(
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message),
                |error, (field, reason)| error.field(field, reason),
            ))
        }
    }
}

pub(crate) fn encode_cursor(c: &ListCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{}", c.created_at.to_rfc3339(), c.id))
}

pub(crate) fn decode_cursor(text: &str) -> Option<ListCursor> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (at, id) = text.split_once('|')?;
    Some(ListCursor {
        created_at: chrono::DateTime::parse_from_rfc3339(at)
            .ok()?
            .with_timezone(&chrono::Utc),
        id: id.parse().ok()?,
    })
}

/// Jobs, newest first, a page at a time.
#[utoipa::path(get, path = "/v1/jobs",
    params(
        ("status" = Option<String>, Query, description = "only jobs with this status: `queued`, `running`, `succeeded`, `failed` or `canceled`"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "page size, 1–500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "a previous page's `next_cursor`, as it was given")),
    responses((status = 200, description = "a page of jobs, newest first", body = JobList),
        (status = 400, description = "a query parameter is unknown, given twice or not valid (`invalid_query`; each named in `fields`). An empty value is the same as leaving the parameter out", body = ApiErrorBody),
        (status = 401, description = "no valid API key (`unauthorized`): send `Authorization: Bearer <key>`", body = ApiErrorBody), (status = 503, description = "the job store is unavailable (`unavailable`); try again", body = ApiErrorBody)),
    security(("api_key" = [])))]
pub(crate) async fn list_jobs(
    State(state): State<ApiState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let Query(pairs) = query.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "the query string is not a URL-encoded form",
        )
    })?;
    let query = list_query(&pairs)?;
    let page = state
        .repo
        .list(&query)
        .await
        .map_err(|e| ApiError::storage(&e))?;
    Ok(Json(JobList {
        jobs: page.jobs.iter().map(JobView::from).collect(),
        next_cursor: page.next.as_ref().map(encode_cursor),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::JobId;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = ListCursor {
            created_at: chrono::Utc::now(),
            id: JobId::new(),
        };
        let back = decode_cursor(&encode_cursor(&c)).unwrap();
        assert_eq!(back.id, c.id);
        assert_eq!(
            back.created_at.timestamp_micros(),
            c.created_at.timestamp_micros()
        );
        assert!(decode_cursor("!!!").is_none());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("x|y")).is_none());
    }
}
