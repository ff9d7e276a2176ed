"""The metadata stage: VoxCeleb clip metadata (CSV or txt annotations) to one clean clips table.

Modules, one job each: ``config`` (settings), ``records`` (row types and reject codes),
``csv_format`` / ``txt_format`` (readers), ``identities`` (test split lists), ``checks``
(per-row validation and de-duplication), ``tables`` (Parquet output), ``build`` (ties them).
"""
