"""Camera frames -> person detection -> tracking -> re-ID embeddings -> cross-camera store."""
from .types import Detections, Frame

__all__ = ["Detections", "Frame"]
