"""Pipeline settings: frozen dataclasses checked in ``__post_init__`` (:mod:`.schema`, the one source of
every default and range) and the strict cams.yaml loader (:mod:`.loader`)."""
from .checks import URL_SCHEMES, ConfigError, FieldError
from .loader import config_from_dict, config_to_dict, load_association, load_config
from .schema import (
    AssociationConfig,
    CameraConfig,
    DetectorConfig,
    EmbedderConfig,
    PipelineConfig,
    RetentionConfig,
    SearchConfig,
    StoreConfig,
    TrackerConfig,
    TransitRule,
    WebConfig,
)

__all__ = ["URL_SCHEMES", "AssociationConfig", "CameraConfig", "ConfigError", "DetectorConfig", "EmbedderConfig",
           "FieldError", "PipelineConfig", "RetentionConfig", "SearchConfig", "StoreConfig", "TrackerConfig",
           "TransitRule", "WebConfig",
           "config_from_dict", "config_to_dict", "load_association", "load_config"]
