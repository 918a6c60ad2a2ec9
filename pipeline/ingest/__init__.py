"""Camera ingestion: source objects (:mod:`.sources`: video files, image folders, URLs, webcams) read
by one thread per camera (:mod:`.reader`) into bounded queues, batched across cameras."""
from .frames import read_frames, source_readable
from .reader import CameraReader, MultiCameraReader, camera_state
from .sources import (
    DEFAULT_FOLDER_FPS,
    ImageFolderSource,
    IngestError,
    LiveSource,
    ReaderStats,
    VideoFileSource,
    list_images,
    make_source,
    seek_frame,
)

__all__ = ["DEFAULT_FOLDER_FPS", "CameraReader", "camera_state", "ImageFolderSource", "IngestError", "LiveSource",
           "MultiCameraReader", "ReaderStats", "VideoFileSource", "list_images", "make_source",
           "read_frames", "seek_frame", "source_readable"]
