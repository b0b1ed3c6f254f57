//! Storyboard version 2 through the API: bad beats are 422 naming their path; a succeeded
//! job's captions are served beside its film as WebVTT, with the artifact route's 404 and
//! 409 shapes.

use std::sync::Arc;

use domain::{FinalOutcome, JobId, JobRepository};
use object_store::ObjectStore;
use serde_json::{Value, json};

use crate::helpers::*;

fn with_beats(beats: Value) -> String {
    let mut b = board();
    b["version"] = json!(2);
    b["segments"][1] = json!({
        "slide": {"heading": "2", "bullets": ["a", "b"]},
        "beats": beats
    });
    json!({ "storyboard": b }).to_string()
}

#[tokio::test]
async fn bad_beats_are_422_naming_the_beat_and_good_ones_are_taken() {
    let api = mem().await;
    let cases = [
        (
            with_beats(json!([
                {"narration": "One.", "show": "next_bullet"},
                {"narration": "Back.", "show": {"highlight": 1}},
                {"narration": "Two.", "show": "next_bullet"}
            ])),
            vec!["segments[1].beats[1].show"],
        ),
        (
            with_beats(json!([
                {"narration": "One.", "show": "next_bullet"},
                {"narration": "Two.", "show": "next_bullet"},
                {"narration": "", "show": "next_bullet"}
            ])),
            vec![
                "segments[1].beats[2].narration",
                "segments[1].beats[2].show",
            ],
        ),
        (
            with_beats(json!([{"narration": "One.", "show": "sideways"}])),
            vec!["segments[1].beats[0].show"],
        ),
        (
            with_beats(json!([{"narration": "One.", "shown": "next_bullet"}])),
            vec!["segments[1].beats[0].shown"],
        ),
        (
            with_beats(json!([{"narration": "One.", "show": "next_bullet"}])),
            vec!["segments[1].beats"],
        ),
    ];
    for (body, expected) in cases {
        let (status, e) = error_of(api.post_json(body.clone()).send().await.unwrap()).await;
        assert_eq!(
            (status, e["error"].as_str()),
            (422, Some("invalid_storyboard")),
            "{body}: {e}"
        );
        assert_eq!(fields(&e), expected, "{body}: {e}");
    }
    // Beats in a version 1 storyboard name the beats.
    let mut v1: Value = serde_json::from_str(&with_beats(json!([{"narration": "One."}]))).unwrap();
    v1["storyboard"]["version"] = json!(1);
    let (status, e) = error_of(api.post_json(v1.to_string()).send().await.unwrap()).await;
    assert_eq!(status, 422);
    assert_eq!(fields(&e), ["segments[1].beats"], "{e}");
    assert_eq!(api.stored().await, 0, "nothing was stored");

    let ok = with_beats(json!([
        {"narration": "Look."},
        {"narration": "One.", "show": "next_bullet"},
        {"narration": "Two.", "show": "next_bullet"},
        {"narration": "Again one.", "show": {"highlight": 0}}
    ]));
    let r = api.post_json(ok).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
}

#[tokio::test]
async fn a_succeeded_jobs_captions_are_served_as_webvtt_beside_its_film() {
    let repo = Arc::new(repo_mem::MemRepository::new());
    let api = serve(repo.clone()).await;
    let created: Value = api
        .post_json(json!({ "storyboard": board() }).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id: JobId = created["id"].as_str().unwrap().parse().unwrap();
    let captions = |id: JobId| api.get(&format!("/v1/jobs/{id}/captions"));

    let (status, e) = error_of(captions(id).send().await.unwrap()).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (409, Some("not_ready")),
        "{e}"
    );
    let (status, e) = error_of(captions(JobId::new()).send().await.unwrap()).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (404, Some("not_found")),
        "{e}"
    );

    let lease = lease(repo.as_ref(), id, "captions-worker").await;
    let artifact_key = format!("video-jobs/{id}/attempts/1/final.mp4");
    repo.finalize(
        &lease,
        &FinalOutcome::Succeeded {
            artifact_key: artifact_key.clone(),
        },
    )
    .await
    .unwrap();
    // Succeeded, but nothing published: the captions are missing, in the error shape.
    let (status, e) = error_of(captions(id).send().await.unwrap()).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (404, Some("captions_missing")),
        "{e}"
    );

    let vtt = "WEBVTT\n\n1\n00:00:00.000 --> 00:00:01.000\nOne.\n";
    let key = video::publish::captions_key(&artifact_key);
    assert_eq!(key, format!("video-jobs/{id}/attempts/1/captions.vtt"));
    api.artifacts
        .put(&object_store::path::Path::from(key), vtt.into())
        .await
        .unwrap();
    let r = captions(id).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "text/vtt; charset=utf-8");
    assert_eq!(
        r.headers()["content-disposition"],
        format!("attachment; filename=\"{id}.vtt\"").as_str()
    );
    assert_eq!(r.text().await.unwrap(), vtt);
}
