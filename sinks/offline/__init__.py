"""The offline store in Parquet: one path and column set, the point-in-time join, and its Dask driver."""
