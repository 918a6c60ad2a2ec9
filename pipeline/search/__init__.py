"""Search the store with a photo's embedding: ranking (:mod:`.rank`) apart from its report (:mod:`.report`)."""
from .rank import Sighting, search_tracks
from .report import format_table, write_results

__all__ = ["Sighting", "format_table", "search_tracks", "write_results"]
