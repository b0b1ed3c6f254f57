"""Speaks many sentences with one load of a Piper voice (video-worker's batch driver).

The `piper` program loads its ONNX model at every run, about a second on 2 cores, and
its --output-dir mode names the files it writes by time, not by input. This driver loads
the voice once and writes each sentence to the file it is told to, so the worker can
check, cache and count each sentence as soon as it is spoken.

Run by the video crate (crates/video/src/tts/piper.rs, embedded in the binary) with the
Python of the virtual environment piper-tts is installed in:

    python3 -I -c "$(cat piper_batch.py)" MODEL LENGTH_SCALE

stdin: one JSON object a line (UTF-8), {"text": "...", "out": "/path/to/sentence.wav"}.
For each line, in order: speaks `text` as `piper --model MODEL --length-scale LENGTH_SCALE`
would (same library calls, same defaults), writes the WAV to `out` + ".part", renames it to
`out`, then prints the line's index (0, 1, ...) on stdout. The first failure ends the run
with a non-zero exit and the traceback on stderr; the worker then knows which sentence
failed: the one after the last index printed.
"""

import json
import os
import sys
import wave

from piper import PiperVoice, SynthesisConfig


def main() -> None:
    model, length_scale = sys.argv[1], float(sys.argv[2])
    voice = PiperVoice.load(model)
    config = SynthesisConfig(length_scale=length_scale)
    # Bytes: JSON is UTF-8 whatever the locale says.
    for index, line in enumerate(sys.stdin.buffer):
        item = json.loads(line)
        part = item["out"] + ".part"
        with wave.open(part, "wb") as wav:
            voice.synthesize_wav(item["text"], wav, syn_config=config)
        os.replace(part, item["out"])
        print(index, flush=True)


main()
