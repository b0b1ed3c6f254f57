#!/usr/bin/env bash
# The reference for the render benchmark: a plain, sequential shell script calling the same
# espeak-ng and ffmpeg commands the pipeline calls, on the same inputs. The benchmark
# (crates/video/benches/render.rs) prepares DIR: params ("W H FPS LANG RATE"),
# segments/NNN.txt (narration) and segments/NNN.rgba (the slide, drawn by our renderer:
# a shell cannot draw text), and passes the encoder arguments in VIDEO_ARGS.
set -euo pipefail
dir=$1
cd "$dir"
read -r W H FPS LANG RATE < params
: > videos.txt
: > wavs.txt
cum=0
prev=0
for txt in segments/*.txt; do
  base=${txt%.txt}
  espeak-ng -v "$LANG" -s "$RATE" -b 1 -w "$base.wav" -f "$txt"
  samples=$(ffprobe -v error -select_streams a:0 -show_entries stream=duration_ts -of csv=p=0 "$base.wav")
  rate=$(ffprobe -v error -select_streams a:0 -show_entries stream=sample_rate -of csv=p=0 "$base.wav")
  cum=$((cum + samples))
  frame=$(( (cum * FPS * 2 + rate) / (rate * 2) ))
  frames=$((frame - prev))
  prev=$frame
  # shellcheck disable=SC2086 # VIDEO_ARGS is a list of arguments
  ffmpeg -nostdin -hide_banner -loglevel error -y -f rawvideo -pix_fmt rgba \
    -video_size "${W}x${H}" -framerate "$FPS" -i "$base.rgba" \
    -vf "loop=loop=$((frames - 1)):size=1:start=0" -frames:v "$frames" \
    $VIDEO_ARGS -r "$FPS" -an -f mp4 "$base.mp4"
  echo "file '$PWD/$base.mp4'" >> videos.txt
  echo "file '$PWD/$base.wav'" >> wavs.txt
done
ffmpeg -nostdin -hide_banner -loglevel error -y -f concat -safe 0 -i videos.txt -c copy -f mp4 video.mp4
ffmpeg -nostdin -hide_banner -loglevel error -y -f concat -safe 0 -i wavs.txt -c:a aac -b:a 128k -f mp4 audio.m4a
ffmpeg -nostdin -hide_banner -loglevel error -y -i video.mp4 -i audio.m4a -map 0:v:0 -map 1:a:0 \
  -c copy -movflags +faststart -f mp4 final.mp4
