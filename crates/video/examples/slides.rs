//! Draws every slide of a storyboard to PNG, as the film shows it once all its bullets are
//! in: a quick look at a storyboard's pictures without making the film.
//!
//! `cargo run -p video --example slides -- STORYBOARD.json OUT_DIR` writes
//! `OUT_DIR/slide-01.png`, …; a storyboard that does not validate is refused with its
//! field errors, as the API would. It says how long validation took (every slide laid out,
//! every formula typeset), the work the API does at submission.

use std::path::PathBuf;
use std::process::ExitCode;

use video::render::slide::{Reveal, SlideFrame, SlideRenderer};
use video::storyboard::Storyboard;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [storyboard, out] = args.as_slice() else {
        eprintln!("usage: slides STORYBOARD.json OUT_DIR");
        return ExitCode::from(2);
    };
    match run(storyboard, &PathBuf::from(out)) {
        Ok(n) => {
            println!("{n} slides written to {out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &str, out: &std::path::Path) -> Result<usize, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let started = std::time::Instant::now();
    let board = Storyboard::from_json(&json).map_err(|e| format!("{path}: {e}"))?;
    println!("validated in {:.0?}", started.elapsed());
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut renderer = SlideRenderer::new();
    let (width, height) = (board.frame.width, board.frame.height);
    for (index, segment) in board.segments.iter().enumerate() {
        let rgba = renderer.draw(&SlideFrame {
            title: &board.title,
            slide: &segment.slide,
            index,
            total: board.segments.len(),
            width,
            height,
            reveal: Reveal::all(),
        });
        let size = tiny_skia::IntSize::from_wh(width, height).ok_or("empty frame")?;
        let pixmap = tiny_skia::Pixmap::from_vec(rgba, size).ok_or("frame of the wrong size")?;
        let file = out.join(format!("slide-{:02}.png", index + 1));
        pixmap
            .save_png(&file)
            .map_err(|e| format!("{}: {e}", file.display()))?;
    }
    Ok(board.segments.len())
}
