//! The jobs API keeps the promises its README and `/openapi.json` make, through the real
//! router: the document validates as OpenAPI 3.1; every refusal is JSON
//! `{error, message, fields}` with the status the README gives and the path of the field at
//! fault, and stores nothing; the event stream ends with the terminal state and never repeats
//! itself. Request checks run on the in-memory repository, the event stream on Postgres
//! (its `NOTIFY` feed and heartbeats are what made events repeat).

use std::sync::Arc;
use std::time::Duration;

use domain::{
    AcquireOutcome, AcquireRequest, FinalOutcome, InstanceId, JobId, JobRepository, Percent,
    ProgressReport, Stage,
};
use futures_util::StreamExt;
use jobs_api::testing::{RecordingQueue, TestApi};
use serde_json::{Value, json};

const KEY: &str = "contract-api-key-0001";

/// The API over `repo`, with a queue that takes every task.
async fn serve(repo: Arc<dyn JobRepository>) -> TestApi {
    TestApi::start(repo, Arc::new(RecordingQueue::default()), &[KEY]).await
}

/// The API over the in-memory repository.
async fn mem() -> TestApi {
    serve(Arc::new(repo_mem::MemRepository::new())).await
}

/// The requests the checks below send.
trait Calls {
    fn post_json(&self, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder;
    fn get(&self, path: &str) -> reqwest::RequestBuilder;
    async fn stored(&self) -> usize;
}

impl Calls for TestApi {
    fn post_json(&self, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}/v1/jobs", self.base))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(KEY)
    }

    async fn stored(&self) -> usize {
        self.repo
            .list(&domain::ListQuery::new(None, 500).unwrap())
            .await
            .unwrap()
            .jobs
            .len()
    }
}

fn board() -> Value {
    json!({"version": 1, "title": "Contract",
           "frame": {"width": 640, "height": 360, "fps": 25},
           "segments": [
               {"narration": "One.", "slide": {"heading": "1"}},
               {"narration": "Two.", "slide": {"heading": "2"}},
               {"narration": "Three.", "slide": {"heading": "3"}}]})
}

/// An error answer, checked for the shape every error has: JSON with exactly `error`,
/// `message` and `fields` (an array of `{field, reason}`). Returns the status and the body.
async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().await.unwrap();
    assert_eq!(content_type, "application/json", "{status}: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["error", "fields", "message"], "{text}");
    assert!(
        body["error"].is_string() && body["message"].is_string(),
        "{text}"
    );
    for field in body["fields"].as_array().unwrap() {
        assert!(
            field["field"].is_string() && field["reason"].is_string(),
            "{text}"
        );
    }
    (status, body)
}

/// The `field` of each entry of `fields`.
fn fields(body: &Value) -> Vec<String> {
    body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_owned())
        .collect()
}

// ---- the OpenAPI document ------------------------------------------------------------------

const OAS_3_1_SCHEMA: &str = include_str!("vendor/openapi-3.1/schema.json");

/// Everything wrong with `doc` as an OpenAPI 3.1 document: what the OpenAPI Initiative's
/// JSON Schema for 3.1 finds, then the rules of the specification that its schema cannot
/// express (its README says so), checked here: a path parameter is one of its path's
/// template expressions and each template expression is declared; (name, in) is unique in
/// an operation's parameters; operationIds are unique; every `$ref` resolves; and each JSON
/// Schema inside is a valid draft 2020-12 schema (the OpenAPI schema accepts any object).
fn openapi_problems(doc: &Value) -> Vec<String> {
    let schema: Value = serde_json::from_str(OAS_3_1_SCHEMA).unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let mut found: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("schema: {}: {e}", e.instance_path()))
        .collect();
    let mut operation_ids = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        let template: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        for (method, op) in item.as_object().into_iter().flatten() {
            let params: Vec<(&str, &str)> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap_or(""),
                        p["in"].as_str().unwrap_or(""),
                    )
                })
                .collect();
            for (i, p) in params.iter().enumerate() {
                if params[..i].contains(p) {
                    found.push(format!("{method} {path}: parameter {p:?} declared twice"));
                }
            }
            for (name, _) in params.iter().filter(|(_, at)| *at == "path") {
                if !template.contains(name) {
                    found.push(format!(
                        "{method} {path}: path parameter {name:?} is not in the path"
                    ));
                }
            }
            for name in &template {
                if !params.contains(&(name, "path")) {
                    found.push(format!("{method} {path}: {{{name}}} has no path parameter"));
                }
            }
            if let Some(id) = op["operationId"].as_str() {
                if operation_ids.contains(&id) {
                    found.push(format!("operationId {id:?} is used twice"));
                }
                operation_ids.push(id);
            }
        }
    }
    let mut refs = Vec::new();
    collect_refs(doc, &mut refs);
    for r in refs {
        let resolved = r.strip_prefix('#').and_then(|pointer| doc.pointer(pointer));
        if resolved.is_none() {
            found.push(format!("$ref {r:?} does not resolve in the document"));
        }
    }
    for (name, schema) in doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
    {
        if !jsonschema::meta::is_valid(schema) {
            found.push(format!(
                "components.schemas.{name} is not a valid JSON Schema"
            ));
        }
    }
    found
}

fn collect_refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => collect_refs(item, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_openapi_document_validates_as_openapi_3_1() {
    let api = mem().await;
    let doc: Value = api
        .client
        .get(format!("{}/openapi.json", api.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    let found = openapi_problems(&doc);
    assert!(
        found.is_empty(),
        "not a valid OpenAPI 3.1 document:\n{}",
        found.join("\n")
    );

    // The check is a real one: each defect this document has had, put back, is refused —
    // the list's query parameters declared `in: path` (as utoipa wrote them: required),
    // a schema that is no JSON Schema, a dangling reference.
    let mut in_path = doc.clone();
    for p in in_path["paths"]["/v1/jobs"]["get"]["parameters"]
        .as_array_mut()
        .unwrap()
    {
        p["in"] = json!("path");
        p["required"] = json!(true);
    }
    let found = openapi_problems(&in_path);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found[0].contains("\"status\" is not in the path"),
        "{found:?}"
    );
    let mut bad_schema = doc.clone();
    bad_schema["components"]["schemas"]["JobView"]["type"] = json!("record");
    assert!(!openapi_problems(&bad_schema).is_empty());
    let mut dangling = doc.clone();
    dangling["paths"]["/v1/jobs/{id}"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"]["$ref"] = json!("#/components/schemas/Nothing");
    assert!(!openapi_problems(&dangling).is_empty());
    let mut no_info = doc.clone();
    no_info.as_object_mut().unwrap().remove("info");
    assert!(openapi_problems(&no_info)[0].starts_with("schema:"));
}

#[tokio::test]
async fn every_operation_documents_its_errors_and_the_create_its_idempotency() {
    let api = mem().await;
    let doc: Value = api
        .get("/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let error_body = "#/components/schemas/ApiErrorBody";
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let responses = &op["responses"];
            let mut expected = vec!["401", "503"];
            if path.contains("{id}") {
                expected.extend(["400", "404"]);
            }
            for status in expected {
                assert_eq!(
                    responses[status]["content"]["application/json"]["schema"]["$ref"], error_body,
                    "{method} {path} does not document {status}"
                );
                assert!(
                    responses[status]["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty())
                );
            }
            assert!(
                !op["security"].as_array().unwrap().is_empty(),
                "{method} {path}"
            );
        }
    }
    assert_eq!(operations, 6);

    let list = &doc["paths"]["/v1/jobs"]["get"]["parameters"];
    for name in ["status", "limit", "cursor"] {
        let p = list
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap();
        assert_eq!(
            (p["in"].as_str(), p["required"].as_bool()),
            (Some("query"), Some(false)),
            "{name}"
        );
    }

    let create = &doc["paths"]["/v1/jobs"]["post"];
    let header = create["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .unwrap();
    assert_eq!(header["in"], "header");
    for status in ["400", "413", "415", "422"] {
        assert_eq!(
            create["responses"][status]["content"]["application/json"]["schema"]["$ref"],
            error_body,
            "create {status}"
        );
    }
    let refused = create["responses"]["422"]["description"].as_str().unwrap();
    for code in [
        "invalid_request",
        "invalid_storyboard",
        "idempotency_key_reused",
    ] {
        assert!(refused.contains(code), "{refused}");
    }
    assert!(create["requestBody"]["content"]["application/json"].is_object());

    let error = &doc["components"]["schemas"]["ApiErrorBody"];
    let mut required: Vec<&str> = error["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort_unstable();
    assert_eq!(required, ["error", "fields", "message"]);
    let events = doc["paths"]["/v1/jobs/{id}/events"]["get"]["description"]
        .as_str()
        .unwrap();
    assert!(
        events.contains("event: done") && events.contains("never"),
        "{events}"
    );
}

// ---- bodies ----------------------------------------------------------------------------------

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
        // Missing: the field itself, not its parent.
        (
            with(&|b| {
                b["frame"].as_object_mut().unwrap().remove("height");
            }),
            "frame.height",
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

// ---- paths, queries, routes ----------------------------------------------------------------

#[tokio::test]
async fn a_bad_job_id_in_the_path_is_400_invalid_id_on_every_route() {
    let api = mem().await;
    for id in ["not-a-uuid", "%FF%FE", "1234"] {
        for (method, suffix) in [
            (reqwest::Method::GET, ""),
            (reqwest::Method::POST, "/cancel"),
            (reqwest::Method::GET, "/events"),
            (reqwest::Method::GET, "/artifact"),
        ] {
            let r = api
                .client
                .request(method.clone(), format!("{}/v1/jobs/{id}{suffix}", api.base))
                .bearer_auth(KEY)
                .send()
                .await
                .unwrap();
            let (status, e) = error_of(r).await;
            assert_eq!(
                (status, e["error"].as_str()),
                (400, Some("invalid_id")),
                "{method} {id}{suffix}"
            );
            assert_eq!(fields(&e), ["id"]);
        }
    }
    let (status, e) = error_of(
        api.get(&format!("/v1/jobs/{}", JobId::new()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, e["error"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn a_bad_list_query_is_400_invalid_query_naming_each_parameter() {
    let api = mem().await;
    for (query, named) in [
        ("status=done", vec!["status"]),
        ("limit=0", vec!["limit"]),
        ("limit=501", vec!["limit"]),
        ("limit=ten", vec!["limit"]),
        ("limit=-1", vec!["limit"]),
        ("cursor=zzz", vec!["cursor"]),
        ("color=red", vec!["color"]),
        ("color", vec!["color"]),
        ("limit=5&limit=6", vec!["limit"]),
        (
            "status=done&limit=ten&page=2",
            vec!["status", "limit", "page"],
        ),
    ] {
        let (status, e) =
            error_of(api.get(&format!("/v1/jobs?{query}")).send().await.unwrap()).await;
        assert_eq!(
            (status, e["error"].as_str()),
            (400, Some("invalid_query")),
            "{query}: {e}"
        );
        assert_eq!(fields(&e), named, "{query}: {e}");
    }
    // An empty value is the same as leaving the parameter out.
    let r = api
        .get("/v1/jobs?status=&limit=&cursor=")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = api
        .get("/v1/jobs?status=queued&limit=500")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn unknown_routes_wrong_methods_and_missing_keys_answer_json() {
    let api = mem().await;
    let (status, e) = error_of(api.get("/v1/films").send().await.unwrap()).await;
    assert_eq!((status, e["error"].as_str()), (404, Some("not_found")));

    let r = api
        .client
        .delete(format!("{}/v1/jobs", api.base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    let allow = r.headers()["allow"].to_str().unwrap().to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let (status, e) = error_of(r).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (405, Some("method_not_allowed"))
    );

    for key in [None, Some("not-the-key-not-the-key")] {
        let mut r = api.client.get(format!("{}/v1/jobs", api.base));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let (status, e) = error_of(r.send().await.unwrap()).await;
        assert_eq!(
            (status, e["error"].as_str(), e["fields"].clone()),
            (401, Some("unauthorized"), json!([]))
        );
    }
}

// ---- the event stream ------------------------------------------------------------------------

/// Server-sent events read off a response, whole events at a time however the bytes are cut.
struct Events {
    body: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>,
    >,
    buffer: Vec<u8>,
}

impl Events {
    async fn open(api: &TestApi, id: &str) -> Self {
        let r = api
            .get(&format!("/v1/jobs/{id}/events"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        Self {
            body: Box::pin(r.bytes_stream()),
            buffer: Vec::new(),
        }
    }

    /// The next event's name and data; `None` once the stream ended.
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8(block).unwrap();
                let (mut name, mut data) = (String::new(), String::new());
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((name, serde_json::from_str(&data).unwrap()));
            }
            // A guard against a hang, not a measure of speed.
            let chunk = tokio::time::timeout(Duration::from_secs(30), self.body.next())
                .await
                .expect("no event within 30 s")?;
            self.buffer.extend_from_slice(&chunk.unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_ends_with_the_terminal_state_and_never_repeats_an_event() {
    let db = test_pg::fresh_database().await.unwrap();
    repo_pg::migrate(&db.pool).await.unwrap();
    let repo = Arc::new(repo_pg::PgRepository::new(db.pool.clone()));
    let api = serve(repo.clone()).await;
    let created: Value = api
        .post_json(json!({ "storyboard": board() }).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id_text = created["id"].as_str().unwrap().to_owned();
    let id: JobId = id_text.parse().unwrap();
    let mut events = Events::open(&api, &id_text).await;
    let mut seen = vec![events.next().await.unwrap()];

    let AcquireOutcome::Acquired { lease, .. } = repo
        .acquire(&AcquireRequest {
            job_id: id,
            holder: InstanceId::new("contract-worker").unwrap(),
            ttl: Duration::from_secs(60),
            max_attempts: 5,
            session: None,
        })
        .await
        .unwrap()
    else {
        panic!("not acquired")
    };
    seen.push(events.next().await.unwrap());

    // Heartbeats change `updated_at` and nothing a client sees; a notification then makes
    // the stream read the job again. That read is no news: no event.
    for _ in 0..3 {
        repo.heartbeat(&lease, Duration::from_secs(60))
            .await
            .unwrap();
        sqlx::query("SELECT pg_notify('video_job_update', $1)")
            .bind(&id_text)
            .execute(&db.pool)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    repo.report_progress(
        &lease,
        &ProgressReport {
            stage: Stage::Compose,
            percent: Percent::new(90).unwrap(),
            segment: None,
            message: Some("compose: started".into()),
        },
    )
    .await
    .unwrap();
    seen.push(events.next().await.unwrap());
    repo.finalize(
        &lease,
        &FinalOutcome::Succeeded {
            artifact_key: format!("video-jobs/{id}/final.mp4"),
        },
    )
    .await
    .unwrap();
    while let Some(event) = events.next().await {
        seen.push(event);
    }

    let summary: Vec<(String, String, Value, u64)> = seen
        .iter()
        .map(|(name, job)| {
            (
                name.clone(),
                job["status"].as_str().unwrap().to_owned(),
                job["stage"].clone(),
                job["percent"].as_u64().unwrap(),
            )
        })
        .collect();
    let progress = |status: &str, stage: Value, percent: u64| {
        ("progress".to_owned(), status.to_owned(), stage, percent)
    };
    assert_eq!(
        summary,
        vec![
            progress("queued", Value::Null, 0),
            progress("running", Value::Null, 0),
            progress("running", json!("compose"), 90),
            ("done".to_owned(), "succeeded".to_owned(), Value::Null, 100),
        ],
        "one event per visible change, and `done` without the stale stage: {seen:#?}"
    );
    let done = &seen[3].1;
    assert_eq!(
        (
            &done["message"],
            &done["segment_index"],
            &done["artifact_url"]
        ),
        (
            &Value::Null,
            &Value::Null,
            &json!(format!("/v1/jobs/{id}/artifact"))
        ),
        "{done}"
    );
    // What GET answers is what `done` said.
    let now: Value = api
        .get(&format!("/v1/jobs/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&now["status"], &now["stage"]),
        (&json!("succeeded"), &Value::Null)
    );

    // A stream opened on the finished job sends `done` alone.
    let mut again = Events::open(&api, &id_text).await;
    let (name, job) = again.next().await.unwrap();
    assert_eq!(
        (name.as_str(), &job["status"]),
        ("done", &json!("succeeded"))
    );
    assert!(again.next().await.is_none());
}
