"""reports: summary.json (:mod:`.summary`), the terminal tables (:mod:`.table`), raw-sample
files and downloads (:mod:`.export`, Parquet in :mod:`.parquet`).

Import the submodule you need: each loads only its own libraries (rich, pyarrow), which keeps
them off the start-up path of the service and of ``clientswarm run``.
"""
