"""The names of the evidence methods, importable without loading torch (the CLI's choices).

`tools.evidence.heatmaps.CAM_METHODS` maps each heatmap name to its implementation; a test
holds the two lists equal.
"""

HEATMAP_METHODS = (
    "contribution",
    "legrad",
    "gradcam",
    "gradcam++",
    "hirescam",
    "layercam",
    "eigencam",
    "scorecam",
)
"""Heatmap methods, the model-specific default first among those a tower supports."""

ALTERNATIVES = ("hirescam", "gradcam", "layercam", "legrad")
"""What "explain #N with another method" picks, in order, skipping the one used."""
