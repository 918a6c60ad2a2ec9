"""Data protection (issue 11): users and roles (:mod:`.users`), the hash-chained audit log
(:mod:`.audit`), manual identity corrections (:mod:`.corrections`), retention and erasure
(:mod:`.erasure`) and signed evidence exports (:mod:`.evidence`). The SQL lives in
:mod:`pipeline.store.governance`; this package holds the rules.

``db`` arguments are the store path (str | Path)."""
