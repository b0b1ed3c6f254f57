//! Bad job ids, bad list queries, unknown routes, wrong methods and missing keys all answer
//! in the JSON error shape.

use domain::JobId;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_bad_job_id_in_the_path_is_400_invalid_id_on_every_route() {
    let api = mem().await;
    for id in ["not-a-uuid", "%FF%FE", "1234"] {
        for (method, suffix) in [
            (reqwest::Method::GET, ""),
            (reqwest::Method::POST, "/cancel"),
            (reqwest::Method::GET, "/events"),
            (reqwest::Method::GET, "/artifact"),
            (reqwest::Method::GET, "/captions"),
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
