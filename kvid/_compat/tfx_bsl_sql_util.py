"""Stand-in for ``tfx_bsl.arrow.sql_util``, removed in tfx-bsl 1.21.

TFDV 1.16.1 (the newest release) imports this module at import time, and TFX imports TFDV,
so without it ``from tfx import v1`` fails. Only TFDV's SQL-based slicing
(``StatsOptions(experimental_slice_sqls=...)``) ever calls it; kvid does not use that, and a
call gets a clear error instead of wrong statistics. scripts/install.sh copies this file to
``tfx_bsl/arrow/sql_util.py`` in the environment so Beam worker processes import it too.
"""


class RecordBatchSQLSliceQuery:
    def __init__(self, sql, arrow_schema):
        raise NotImplementedError(
            "SQL slicing (tfx_bsl.arrow.sql_util) was removed in tfx-bsl 1.21 and is not "
            "available in kvid's stack; slice with StatsOptions.experimental_slice_functions."
        )
