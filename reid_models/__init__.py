"""Person re-identification networks of five papers, their losses, datasets and metrics."""
from .checkpoint import load_model, save_checkpoint
from .output import ReIDOutput
from .registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model", "ReIDOutput", "load_model", "save_checkpoint"]
