#!/usr/bin/env bash
# The reference for the render benchmark: a hand-written shell script that makes the same
# film as the pipeline from the same slides and speech, encoding each picture once — a
# one-second clip of the still, repeated by stream copy, plus one clip of the frames left —
# and nothing it need not: one espeak-ng and one ffprobe per sentence (the pipeline speaks
# each sentence on its own, for exact caption times), one ffmpeg per picture
# (the raw frame read and converted once, split into both clips), one AAC encode, and one
# ffmpeg that joins every clip of the film by stream copy and muxes the audio.
#
# The benchmark (crates/video/benches/render.rs) prepares DIR: params ("W H FPS LANG RATE"),
# segments/NNN.txt (the narration, one sentence a line) and segments/NNN.rgba (the slide, drawn by our renderer: a
# shell cannot draw text), and passes the encoder arguments in VIDEO_ARGS. Frame counts
# follow the pipeline's cumulative rule, so both films have the same frames.
set -euo pipefail
dir=$1
cd "$dir"
read -r W H FPS LANG RATE < params
: > clips.txt
: > wavs.txt
cum=0
prev=0
for txt in segments/*.txt; do
  base=${txt%.txt}
  k=0
  while IFS= read -r sentence || [ -n "$sentence" ]; do
    printf '%s' "$sentence" > "$base-$k.txt"
    espeak-ng -v "$LANG" -s "$RATE" -b 1 -w "$base-$k.wav" -f "$base-$k.txt"
    # Sets sample_rate and duration_ts (samples).
    eval "$(ffprobe -v error -select_streams a:0 -show_entries stream=sample_rate,duration_ts \
      -of default=nw=1 "$base-$k.wav")"
    cum=$((cum + duration_ts))
    echo "file '$PWD/$base-$k.wav'" >> wavs.txt
    k=$((k + 1))
  done < "$txt"
  frame=$(( (cum * FPS * 2 + sample_rate) / (sample_rate * 2) ))
  frames=$((frame - prev))
  prev=$frame
  if ((frames < 1)); then frames=1; fi
  full=$((frames / FPS))
  rest=$((frames % FPS))
  outputs=()
  graph="[0:v]format=yuv420p,split=$(( (full > 0) + (rest > 0) ))"
  loops=""
  n=0
  for clip in "$FPS:$full:second" "$rest:$rest:rest"; do
    IFS=: read -r len use name <<< "$clip"
    ((use > 0)) || continue
    graph+="[s$n]"
    loops+=";[s$n]loop=loop=$((len - 1)):size=1:start=0[o$n]"
    # shellcheck disable=SC2206 # VIDEO_ARGS is a list of arguments
    outputs+=(-map "[o$n]" -frames:v "$len" $VIDEO_ARGS -r "$FPS" -an -f mp4 "$base-$name.mp4")
    n=$((n + 1))
  done
  ffmpeg -nostdin -hide_banner -loglevel error -y -f rawvideo -pix_fmt rgba \
    -video_size "${W}x${H}" -framerate "$FPS" -i "$base.rgba" \
    -filter_complex "$graph$loops" "${outputs[@]}"
  for ((i = 0; i < full; i++)); do echo "file '$PWD/$base-second.mp4'" >> clips.txt; done
  if ((rest > 0)); then echo "file '$PWD/$base-rest.mp4'" >> clips.txt; fi
done
ffmpeg -nostdin -hide_banner -loglevel error -y -f concat -safe 0 -i wavs.txt -c:a aac -b:a 128k -f mp4 audio.m4a
ffmpeg -nostdin -hide_banner -loglevel error -y -f concat -safe 0 -i clips.txt -i audio.m4a \
  -map 0:v:0 -map 1:a:0 -c copy -movflags +faststart -f mp4 final.mp4
