"""Sources: where images come from, one module per kind. `loading` picks the kind and reads
a source whole (planning); a job opens one blob through `kinds.open_blob`.

Empty on purpose: a layer job imports only what it reads with.
"""
