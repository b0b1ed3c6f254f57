//! The `demo` command. (Its in-process queue is tested in `crates/queue`.)

use std::process::Command;

fn demo(args: &[&str], cwd: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_video-worker"))
        .arg("demo")
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

#[test]
fn demo_renders_a_storyboard_to_a_narrated_mp4_and_prints_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let board = serde_json::json!({
        "version": 1,
        "title": "Demo test",
        "frame": {"width": 640, "height": 360, "fps": 25},
        "segments": [
            {"narration": "First, a short sentence.", "slide": {"heading": "One"}},
            {"narration": "Then a second one.", "slide": {"heading": "Two", "bullets": ["a", "b"]}}
        ]
    });
    std::fs::write(dir.path().join("board.json"), board.to_string()).unwrap();
    let out = demo(
        &["--storyboard", "board.json", "--out", "films"],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        path.ends_with("/final.mp4") && path.contains("/films/"),
        "{path}"
    );
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            &path,
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&probe.stdout)
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["h264", "aac", "mov_text"]
    );
    assert!(stderr.contains("done in"), "{stderr}");
    let captions = std::path::Path::new(&path).with_file_name("captions.vtt");
    assert!(
        stderr.contains(&format!("captions: {}", captions.display())),
        "{stderr}"
    );
    let vtt = std::fs::read_to_string(&captions).unwrap();
    assert!(vtt.starts_with("WEBVTT\n"), "{vtt}");
    assert!(vtt.contains("First, a short sentence."), "{vtt}");
}

#[test]
fn demo_with_an_invalid_storyboard_names_the_field_and_renders_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"version":1,"title":"","segments":[]}"#,
    )
    .unwrap();
    let out = demo(&["--storyboard", "bad.json", "--out", "films"], dir.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("title") && stderr.contains("segments"),
        "{stderr}"
    );
    assert!(!dir.path().join("films").exists(), "nothing was written");
    let out = demo(&["--storyboard", "missing.json"], dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.json"));
}
