"""Search the store with a photo's embedding: ranking (:mod:`.rank`) apart from its report (:mod:`.report`)."""
from .rank import MIN_QUERY_HEIGHT, Sighting, check_query_crop, search_tracks
from .report import format_table, write_results

__all__ = ["MIN_QUERY_HEIGHT", "Sighting", "check_query_crop", "format_table", "search_tracks", "write_results"]
