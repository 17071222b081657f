"""Video files as items of the modalities the space already has, each with its time range:

- `frames`: frames sampled cheaply (key frames; the frames between two key frames only where the picture
  changed between them), small and upright;
- `scenes`: consecutive samples whose embeddings are nearly the same merged into one scene item, after the
  image tower has embedded them (so a static talk is a few items and a fast cut is many);
- `sound`: the audio track streamed in windows for the audio tower;
- `subtitles`: embedded subtitle streams and sidecar `.srt`/`.vtt` files as timed passages;
- `container`: opening a file, choosing its streams, its duration and what it says about itself.

`modalities.video` puts these together behind the modality registry. PyAV (FFmpeg) decodes everything.
"""
