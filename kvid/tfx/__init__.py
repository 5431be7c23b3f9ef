"""TFX integration: VideoExampleGen, the Trainer module (run_fn), the pipeline and its config."""
