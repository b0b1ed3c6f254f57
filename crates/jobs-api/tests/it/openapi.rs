//! `/openapi.json` validates as OpenAPI 3.1 and documents every error and idempotency.

use serde_json::{Value, json};

use crate::helpers::*;

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
    assert_eq!(operations, 7);

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
