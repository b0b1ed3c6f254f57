//! `GET /openapi.json`: the OpenAPI document, generated from the handlers' annotations.

use axum::Json;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use crate::artifact::{__path_job_artifact, __path_job_captions};
use crate::create::__path_create_job;
use crate::error::{ApiErrorBody, FieldErrorView};
use crate::events::__path_job_events;
use crate::job::{__path_cancel_job, __path_get_job};
use crate::list::__path_list_jobs;
use crate::views::{CancelView, CreateJob, JobList, JobView};

#[derive(OpenApi)]
#[openapi(
    info(title = "video-worker jobs API", description = "Create narrated-video jobs from storyboards, follow their progress, cancel them and download the films and their captions."),
    paths(create_job, get_job, list_jobs, cancel_job, job_events, job_artifact, job_captions),
    components(schemas(JobView, CreateJob, JobList, CancelView, ApiErrorBody, FieldErrorView)),
    modifiers(&BearerAuth)
)]
pub(crate) struct ApiDoc;

pub(crate) struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document, generated from the handlers above.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

pub(crate) async fn openapi() -> Response {
    Json(openapi_document()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_describes_idempotent_creates() {
        let doc = serde_json::to_value(openapi_document()).unwrap();
        let create = &doc["paths"]["/v1/jobs"]["post"];
        let header = create["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "Idempotency-Key")
            .expect("the header is documented");
        assert_eq!(header["in"], "header");
        assert_eq!(header["required"], false);
        let replay = &create["responses"]["200"];
        assert!(
            replay["headers"]["Idempotent-Replayed"].is_object(),
            "{replay}"
        );
        let refused = create["responses"]["422"]["description"].as_str().unwrap();
        assert!(refused.contains("idempotency_key_reused"), "{refused}");
    }

    #[test]
    fn the_openapi_document_lists_every_route() {
        let doc = serde_json::to_value(openapi_document()).unwrap();
        for path in [
            "/v1/jobs",
            "/v1/jobs/{id}",
            "/v1/jobs/{id}/cancel",
            "/v1/jobs/{id}/events",
            "/v1/jobs/{id}/artifact",
            "/v1/jobs/{id}/captions",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
    }
}
