"""Data protection (issue 11): users and roles (:mod:`.users`), the hash-chained audit log
(:mod:`.audit`), manual identity corrections (:mod:`.corrections`), retention and erasure
(:mod:`.erasure`) and signed evidence exports (:mod:`.evidence`). The SQL lives in
:mod:`pipeline.store.governance`; this package holds the rules. ``db`` arguments are the store path.

For a front end (the web UI):

- log in with ``users.login(db, name, password, source)`` (audits ``login`` / ``login_failed``);
  check ``user.may(action)`` and ``user.sees(camera)`` before showing anything, and record
  ``audit.record(db, user.name, "view_identity", {"identity": g})``, ``"search"`` with
  ``audit.search_details(photo_bytes, filters, sightings)``, ``"logout"``.
- corrections, erasure and evidence take the acting user's name as ``actor`` and check it
  themselves (``users.authorize``: role and camera scope; AccessDenied, a UserError, otherwise).
- corrections and audit rows may be written while a run writes the store; ``forget`` and
  ``purge`` raise StoreBusyError (one line) while a run holds the store's writer lock.
- after ``forget`` / ``purge``, reopen readers and the search index: cached vectors are in memory.
"""
